"""onnxruntime sessions with CPU fall-back, and tiled, window-blended inference."""

import logging
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from scipy import ndimage

from siril_denoise import inference
from siril_denoise.errors import Cancelled, InputError, ModelError
from siril_denoise.inference import OnnxDenoiser, available_providers, measure_throughput, run_tiled

torch = pytest.importorskip("torch")
nn = torch.nn


from tiny_nets import PoolNet  # noqa: E402


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from siril_denoise.export import export_onnx

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "pool.onnx"
    export_onnx(PoolNet(2).eval(), path, channels=2, metadata={"method": "test"}, check=False)
    return path


def box3(batch):
    """A 'network' in numpy: 3×3 mean with zero padding (receptive-field radius 1)."""
    return ndimage.uniform_filter(batch, size=(1, 1, 3, 3), mode="constant").astype(np.float32)


# ---------------------------------------------------------------- providers

def test_available_providers_orders_gpus_and_ends_with_cpu(monkeypatch):
    offered = ["AzureExecutionProvider", "CPUExecutionProvider", "CoreMLExecutionProvider",
               "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: offered)
    assert available_providers() == ["CUDAExecutionProvider", "CoreMLExecutionProvider",
                                     "CPUExecutionProvider"]
    assert available_providers(use_gpu=False) == ["CPUExecutionProvider"]


# ---------------------------------------------------------------- OnnxDenoiser

def test_denoiser_exposes_metadata_and_matches_torch(model_path):
    d = OnnxDenoiser(model_path, use_gpu=False)
    assert d.providers == ["CPUExecutionProvider"]
    assert d.channels == 2 and d.multiple == 2 and d.metadata["method"] == "test"
    assert OnnxDenoiser(model_path.read_bytes(), use_gpu=False).channels == 2
    x = np.random.default_rng(0).standard_normal((2, 2, 20, 36), dtype=np.float32)
    y = d(x)
    assert y.shape == x.shape and y.dtype == np.float32
    with pytest.raises(InputError, match="2-channel"):
        d(x[:, :1])


class FailingGpuSession:
    """Wraps a real CPU session but claims to be CUDA and fails at run, like a driver/OOM error."""

    def __init__(self, real):
        self.real = real

    def get_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def run(self, *args, **kwargs):
        raise RuntimeError("CUDA error: out of memory")

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_gpu_failure_at_run_falls_back_to_cpu_with_same_numbers(model_path, monkeypatch, caplog):
    real_factory = inference.create_session
    opened = []

    def factory(model, providers):
        names = [p if isinstance(p, str) else p[0] for p in providers]
        opened.append(names)
        session = real_factory(model, ["CPUExecutionProvider"])
        return FailingGpuSession(session) if "CUDAExecutionProvider" in names else session

    monkeypatch.setattr(inference, "create_session", factory)
    x = np.random.default_rng(1).standard_normal((3, 2, 32, 48), dtype=np.float32)
    want = OnnxDenoiser(model_path, use_gpu=False)(x)

    d = OnnxDenoiser(model_path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert d.on_gpu
    with caplog.at_level(logging.WARNING, logger="siril_denoise.inference"):
        got = d(x)
    np.testing.assert_array_equal(got, want)
    assert d.providers == ["CPUExecutionProvider"] and d.fell_back
    assert opened[-1] == ["CPUExecutionProvider"]
    assert any("CUDAExecutionProvider" in r.message and "out of memory" in r.message
               for r in caplog.records if r.levelno == logging.WARNING)
    d(x)  # later batches stay on the CPU without another failure
    assert len(opened) == 3


def test_gpu_failure_at_load_falls_back_to_cpu(model_path, monkeypatch, caplog):
    real_factory = inference.create_session

    def factory(model, providers):
        if any((p if isinstance(p, str) else p[0]) != "CPUExecutionProvider" for p in providers):
            raise RuntimeError("DirectML device removed")
        return real_factory(model, providers)

    monkeypatch.setattr(inference, "create_session", factory)
    with caplog.at_level(logging.WARNING, logger="siril_denoise.inference"):
        d = OnnxDenoiser(model_path, providers=[("DmlExecutionProvider", {"device_id": 0})])
    assert d.providers == ["CPUExecutionProvider"] and d.fell_back
    assert "DmlExecutionProvider" in caplog.text and "device removed" in caplog.text


def test_corrupt_truncated_missing_and_foreign_models(model_path, tmp_path):
    data = model_path.read_bytes()
    with pytest.raises(ModelError, match="corrupt, truncated"):
        OnnxDenoiser(data[: len(data) // 2], use_gpu=False)
    with pytest.raises(ModelError, match="corrupt, truncated"):
        OnnxDenoiser(b"not a model at all", use_gpu=False)
    with pytest.raises(ModelError, match="not found"):
        OnnxDenoiser(tmp_path / "missing.onnx", use_gpu=False)
    foreign = tmp_path / "foreign.onnx"
    node = onnx.helper.make_node("Identity", ["input"], ["output"])
    info = lambda n: onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["N", 1, "H", "W"])  # noqa: E731
    graph = onnx.helper.make_graph([node], "g", [info("input")], [info("output")])
    foreign.write_bytes(onnx.helper.make_model(graph).SerializeToString())
    with pytest.raises(ModelError, match="not a siril-denoise model"):
        OnnxDenoiser(foreign, use_gpu=False)


def test_unavailable_gpu_provider_is_logged(model_path, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="siril_denoise.inference"):
        d = OnnxDenoiser(model_path, providers=["MIGraphXExecutionProvider"])  # not in this build
    assert d.providers == ["CPUExecutionProvider"]
    assert "MIGraphXExecutionProvider could not be used" in caplog.text


# ---------------------------------------------------------------- tiling

def test_tiled_equals_untiled_for_onnx_model(model_path):
    d = OnnxDenoiser(model_path, use_gpu=False)
    img = np.random.default_rng(2).standard_normal((2, 96, 130), dtype=np.float32)
    whole = d(img[None])[0]
    tiled = run_tiled(d, img, tile=32, overlap=24, batch=3, multiple=d.multiple)
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)
    # an odd-sized image: the tiler takes the model's multiple from the denoiser itself
    odd = img[:, :45, :67]
    padded = np.pad(odd, ((0, 0), (0, 1), (0, 1)), mode="reflect")
    np.testing.assert_allclose(run_tiled(d, odd, tile=32, overlap=24), d(padded[None])[0, :, :45, :67],
                               atol=1e-5, rtol=0)


def test_tiled_equals_untiled_for_numpy_function():
    img = np.random.default_rng(3).random((1, 200, 150), dtype=np.float32)
    tiled = run_tiled(box3, img, tile=64, overlap=8, batch=2)
    np.testing.assert_allclose(tiled, box3(img[None])[0], atol=1e-5, rtol=0)


def test_constant_offset_is_reproduced_exactly():
    img = np.random.default_rng(4).random((3, 70, 90), dtype=np.float32)
    out = run_tiled(lambda b: b + 0.25, img, tile=32, overlap=12, batch=5)
    np.testing.assert_allclose(out, img + 0.25, atol=1e-6)


def test_tile_dependent_bias_leaves_no_seam():
    """Each tile adds its own offset (like a net's edge bias): the blend must ramp, not step."""
    rng = np.random.default_rng(5)
    offsets = []

    def biased(batch):
        o = rng.uniform(-1, 1, size=(len(batch), 1, 1, 1)).astype(np.float32)
        offsets.extend(o.ravel())
        return batch + o

    out = run_tiled(biased, np.zeros((1, 300, 300), np.float32), tile=64, overlap=32, batch=4)
    spread = max(offsets) - min(offsets)
    steps = max(np.abs(np.diff(out, axis=1)).max(), np.abs(np.diff(out, axis=2)).max())
    assert spread > 1.0
    assert steps < 0.15 * spread  # hard stitching would step by up to the full spread


def test_small_and_odd_images_are_mirrored_and_cropped():
    def pool2(batch):
        assert batch.shape[2] % 16 == 0 and batch.shape[3] % 16 == 0
        return box3(batch)

    img = np.random.default_rng(6).random((1, 20, 41), dtype=np.float32)
    out = run_tiled(pool2, img, tile=256, multiple=16)
    padded = np.pad(img, ((0, 0), (0, 12), (0, 7)), mode="reflect")
    assert out.shape == img.shape
    np.testing.assert_allclose(out, box3(padded[None])[0, :, :20, :41], atol=1e-6)
    # larger than a tile but not a multiple of 16
    img = np.random.default_rng(7).random((1, 150, 99), dtype=np.float32)
    out = run_tiled(pool2, img, tile=64, overlap=16, multiple=16)
    padded = np.pad(img, ((0, 0), (0, 10), (0, 13)), mode="reflect")
    np.testing.assert_allclose(out, box3(padded[None])[0, :, :150, :99], atol=1e-5)


def test_too_small_image_says_its_size():
    with pytest.raises(InputError, match="40×5 pixels"):
        run_tiled(box3, np.zeros((1, 5, 40), np.float32), multiple=16)
    with pytest.raises(InputError):
        run_tiled(box3, np.zeros((5, 40), np.float32))


def test_wrong_output_shape_is_a_model_error():
    with pytest.raises(ModelError, match="shape"):
        run_tiled(lambda b: b[:, :, 1:], np.zeros((1, 40, 40), np.float32), tile=32, overlap=8)


def test_progress_and_cancel():
    img = np.zeros((1, 100, 100), np.float32)
    seen = []
    run_tiled(box3, img, tile=32, overlap=8, batch=4, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert seen[-1][1] == "denoising tile 16/16" and len(seen) == 4  # 4×4 tiles, 4 per batch

    calls = []
    polls = iter([False, False, True])
    with pytest.raises(Cancelled):
        run_tiled(lambda b: calls.append(1) or b, img, tile=32, overlap=8, batch=4,
                  should_cancel=lambda: next(polls))
    assert len(calls) == 2


def test_extra_memory_scales_with_tiles_not_image():
    img = np.random.default_rng(8).random((1, 1024, 1024), dtype=np.float32)  # 4 MiB
    tracemalloc.start()
    try:
        out = run_tiled(lambda b: b * 2, img, tile=64, overlap=16, batch=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(out, img * 2, rtol=1e-6)
    assert peak - out.nbytes < 1_000_000, peak  # well under one more copy of the image


def test_measure_throughput_counts_spatial_megapixels():
    import time

    def slow(batch):
        time.sleep(0.02)
        return batch

    mps = measure_throughput(slow, (2, 3, 100, 100), repeats=3)
    assert 0.6 < mps <= 1.0  # 0.02 Mpx per 0.02 s


@pytest.mark.skipif(not os.environ.get("SIRIL_DENOISE_SLOW"), reason="set SIRIL_DENOISE_SLOW=1")
def test_6000x4000_frame_within_1gb_peak_rss(model_path, tmp_path):
    """Runs in a fresh process without torch; prints the peak RSS it measured."""
    from siril_denoise.export import export_onnx

    path = tmp_path / "mono.onnx"
    export_onnx(PoolNet(1).eval(), path, channels=1, metadata={"method": "test"}, check=False)
    child = textwrap.dedent(f"""
        import resource, sys, numpy as np
        from siril_denoise.inference import OnnxDenoiser, run_tiled
        d = OnnxDenoiser({str(path)!r}, use_gpu=False)
        img = np.random.default_rng(0).random((1, 4000, 6000), dtype=np.float32)
        out = run_tiled(d, img, multiple=d.multiple)
        assert out.shape == img.shape and "torch" not in sys.modules
        # VmHWM: ru_maxrss of a forked child carries the parent's (pytest's) resident set
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")] if sys.platform == "linux" else []
        print(int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """)
    res = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
    peak_mb = float(res.stdout.strip().splitlines()[-1])
    print(f"peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 1024


def test_sessions_use_a_fixed_thread_count_that_the_environment_can_set(model_path, monkeypatch):
    """The CPU thread count does not depend on the machine's load; SIRIL_DENOISE_THREADS overrides it."""
    monkeypatch.delenv(inference.THREADS_ENV, raising=False)
    assert inference.inference_threads() >= 1
    monkeypatch.setenv(inference.THREADS_ENV, "1")
    assert inference.inference_threads() == 1
    seen = []
    real = ort.InferenceSession

    def spy(model, sess_options=None, providers=None):
        seen.append(sess_options.intra_op_num_threads)
        return real(model, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    one = OnnxDenoiser(model_path, use_gpu=False)
    monkeypatch.setenv(inference.THREADS_ENV, "2")
    two = OnnxDenoiser(model_path, use_gpu=False)
    assert seen == [1, 2]
    x = np.random.default_rng(3).standard_normal((2, one.channels, 64, 64), dtype=np.float32)
    np.testing.assert_array_equal(one(x), two(x))  # the same numbers with 1 or 2 threads
