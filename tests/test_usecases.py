"""The use-case layer, driven by an in-memory host and a quick fake engine."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from siril_denoise import usecases
from siril_denoise.errors import Cancelled, InputError, ModelError
from siril_denoise.io import ImageMeta
from siril_denoise.library import ModelLibrary
from siril_denoise.usecases import Options

sys.path.insert(0, str(Path(__file__).parent / "sirilpy_standin" / "fake_engine"))
sys.path.insert(0, str(Path(__file__).parent))
import fake_pipeline  # noqa: E402
from test_library import CAMERA, make_model  # noqa: E402

PACKAGE = Path(usecases.__file__).parent


@dataclass
class Frames:
    name: str
    selected: list[int]
    reference: int = 0
    homographies: list | None = None
    layout: tuple | None = None


class MemoryHost:
    """An image and a set of frames in memory; records what the layer asked for."""

    def __init__(self, tmp: Path, image=None, meta=None, frames=(), homographies=None, cancel_after=None):
        self.tmp, self.image, self.meta = tmp, image, meta or ImageMeta()
        self.frames = list(frames)
        self.info = Frames("light_", list(range(len(self.frames))), 0, homographies)
        self.logs: list[tuple[str, str]] = []
        self.written: dict = {}
        self.discarded: list = []
        self.prepared = 0
        self.cancel_after = cancel_after
        self.polls = 0

    # Feedback
    def log(self, message, level="info"):
        self.logs.append((level, message))

    def progress(self, fraction, message):
        assert 0.0 <= fraction <= 1.0

    def should_cancel(self):
        self.polls += 1
        return self.cancel_after is not None and self.polls > self.cancel_after

    def models_dir(self):
        return self.tmp / "models"

    def prepare_training(self, use_gpu):
        self.prepared += 1

    # ImageHost
    def read_image(self):
        return self.image, self.meta

    def write_image(self, data, note):
        self.written["image"] = (data, note)

    # FrameHost
    def sequence_info(self, *, need_regular=True):
        return self.info

    def frame_meta(self, info, index):
        return self.frames[index].ndim, dataclasses.replace(self.meta)

    def read_frame(self, info, index):
        return self.frames[index], dataclasses.replace(self.meta)

    def write_frame(self, info, index, data, prefix, history=None):
        path = self.tmp / f"{prefix}{info.name}{index + 1:05d}.fit"
        path.write_bytes(b"x")
        self.written[index] = (data, history)
        return path

    def discard_frames(self, paths):
        self.discarded += list(paths)

    def text(self):
        return "\n".join(m for _, m in self.logs)


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(usecases, "engine", lambda: fake_pipeline)
    return fake_pipeline


def _noisy(shape, seed=0):
    return np.random.default_rng(seed).normal(1000, 30, shape).clip(0, 65535).astype(np.uint16)


def _camera_meta(**changes):
    keys = {f.name for f in dataclasses.fields(ImageMeta)}
    return ImageMeta(**{**{k: v for k, v in CAMERA.items() if k in keys}, **changes})


# -- the host protocols --------------------------------------------------------


def test_the_memory_host_satisfies_the_protocols(tmp_path):
    host = MemoryHost(tmp_path)
    assert isinstance(host, usecases.ImageHost) and isinstance(host, usecases.FrameHost)

    class NoDiscard:
        def __getattr__(self, name):
            if name == "discard_frames":
                raise AttributeError(name)
            return getattr(host, name)

    assert not isinstance(NoDiscard(), usecases.FrameHost)


# -- Options -------------------------------------------------------------------


def test_overlap_default_is_a_quarter_tile_at_least_32():
    assert Options().tile_overlap() == 64
    assert Options(tile=512).tile_overlap() == 128
    assert Options(tile=64).tile_overlap() == 32
    assert Options(tile=512, overlap=16).tile_overlap() == 16


@pytest.mark.parametrize("changes", [dict(strength=1.5), dict(tile=16), dict(tile=64, overlap=32),
                                     dict(prefix=""), dict(prefix="a/b"), dict(steps=0), dict(time_limit=0.0)])
def test_options_out_of_range_are_refused(changes):
    with pytest.raises(InputError):
        Options(**changes).check()


# -- shared rules ---------------------------------------------------------------


@pytest.mark.parametrize("ndim, pattern, choice, expected", [
    (2, "RGGB", "auto", "RGGB"), (2, "rggb", "auto", "RGGB"), (3, "RGGB", "auto", None),
    (2, None, "auto", None), (2, "NONE", "auto", None), (2, "RGGB", "none", None),
    (2, None, "bggr", "BGGR"), (3, None, "GRBG", "GRBG"),
])
def test_cfa_mode(ndim, pattern, choice, expected):
    assert usecases.cfa_mode(ndim, ImageMeta(bayer_pattern=pattern), choice) == expected


def test_cfa_mode_logs_a_pattern_that_is_no_2x2_bayer(tmp_path):
    host = MemoryHost(tmp_path)
    assert usecases.cfa_mode(2, ImageMeta(bayer_pattern="GBRGRBGBRGRB"), "auto", host) is None
    assert "not a 2x2 pattern" in host.text()
    with pytest.raises(InputError, match="Unknown Bayer pattern"):
        usecases.cfa_mode(2, None, "XYZW")


def test_channels_for():
    assert usecases.channels_for(2, "RGGB") == 4
    assert usecases.channels_for(2, None) == 1
    assert usecases.channels_for(3, None) == 3
    assert usecases.channels_for(3, None, planes=2) == 2


def test_check_frames_and_sizes():
    usecases.check_frames(1, "zsn2n")
    with pytest.raises(InputError, match="at least 2 frames.*'seq' has 1 selected.*zsn2n"):
        usecases.check_frames(1, "n2n", "seq")
    usecases.check_frames(2, "n2n")
    with pytest.raises(InputError, match="b.fit is 8x9 but a.fit is 8x8.*same size"):
        usecases.check_same_size((8, 9), (8, 8), "b.fit", "a.fit")


# -- picking the denoiser -------------------------------------------------------------


def _library_with(tmp_path, **model):
    lib = ModelLibrary(tmp_path / "models")
    lib.add(make_model(tmp_path / "m.onnx", **model), name="mycam", meta=CAMERA)
    return lib


def test_auto_takes_the_fitting_model(tmp_path):
    _library_with(tmp_path)
    host = MemoryHost(tmp_path)
    d = usecases.pick_denoiser(host, Options(), 2, _camera_meta(), "RGGB")
    assert (d.method, d.label) == ("model", "mycam") and d.model.name == "mycam.onnx"
    assert "Using library model mycam" in host.text()


def test_auto_without_a_fitting_model_falls_back_or_refuses(tmp_path):
    _library_with(tmp_path)
    host = MemoryHost(tmp_path)
    other = _camera_meta(instrument="Canon EOS R6")
    d = usecases.pick_denoiser(host, Options(), 2, other, "RGGB")
    assert (d.method, d.model) == ("zsn2n", None)
    assert "does not fit" in host.text()
    with pytest.raises(ModelError, match="No model in the library .* fits"):
        usecases.pick_denoiser(host, Options(zero_shot=None), 2, other, "RGGB")
    empty = MemoryHost(tmp_path / "empty")
    with pytest.raises(ModelError, match="is empty"):
        usecases.pick_denoiser(empty, Options(zero_shot=None), 2, other, None)


def test_a_model_asked_for_by_name_is_used_with_a_warning_when_it_does_not_fit(tmp_path):
    _library_with(tmp_path)
    host = MemoryHost(tmp_path)
    d = usecases.pick_denoiser(host, Options(choice="model:mycam"), 2, _camera_meta(instrument="Canon"), "RGGB")
    assert d.label == "mycam"
    assert ("warning", ) == tuple({lvl for lvl, m in host.logs if "trained on other data" in m})
    with pytest.raises(InputError, match="Unknown method 'bm3d'"):
        usecases.pick_denoiser(host, Options(choice="bm3d"), 2, None, None)


def test_zero_shot_trains_the_method_for_the_kind_of_data_and_says_why(tmp_path):
    """ZERO_SHOT: ZS-N2N for a sub, N2V for a stack (what stack_state reads), never a library model."""
    from siril_denoise.methods import default_single_image_method

    _library_with(tmp_path)  # a model that fits: ZERO_SHOT does not look at it
    for meta, stack in ((_camera_meta(), False), (_camera_meta(stackcnt=12), True),
                        (_camera_meta(livetime=600.0, exposure=10.0), True)):
        host = MemoryHost(tmp_path)
        d = usecases.pick_denoiser(host, Options(choice=usecases.ZERO_SHOT), 2, meta, None)
        name, why = default_single_image_method(stack, None)
        assert (d.method, d.model) == (name, None) and d.method == ("n2v" if stack else "zsn2n")
        assert why in host.text() and "library" not in host.text()
    # A method named is trained on any data, without a reason.
    host = MemoryHost(tmp_path)
    assert usecases.pick_denoiser(host, Options(choice="zsn2n"), 2, _camera_meta(stackcnt=12), None).method == "zsn2n"
    assert host.logs == []
    assert usecases.single_image_method(Options(choice="nb2nb"), _camera_meta(stackcnt=12), None) == ("nb2nb", "")
    assert usecases.single_image_method(Options(zero_shot="nb2nb"), _camera_meta(stackcnt=12), None) == ("nb2nb", "")
    Options(choice=usecases.ZERO_SHOT).check()


def test_choices_rank_models_then_single_image_methods(tmp_path):
    lib = _library_with(tmp_path)
    keys = [c.key for c in usecases.choices(lib, 2, _camera_meta())]
    assert keys[:2] == ["auto", "model:mycam"] and "zsn2n" in keys and "nb2nb" in keys


# -- the use cases, with the fake engine -------------------------------------------------


def test_denoise_image_writes_the_result_back(tmp_path, fake):
    image = _noisy((32, 32))
    host = MemoryHost(tmp_path, image=image, meta=ImageMeta(bayer_pattern="RGGB"))
    out = usecases.denoise_image(host, Options(choice="nb2nb", strength=0.5))
    data, note = host.written["image"]
    assert data.shape == image.shape and data.dtype == image.dtype and data.std() < image.std()
    assert note == "nb2nb strength 0.50" and out.cfa == "RGGB" and out.denoiser.method == "nb2nb"
    assert host.prepared == 1


def test_denoise_image_writes_nothing_when_cancelled(tmp_path, fake):
    host = MemoryHost(tmp_path, image=_noisy((32, 32)), cancel_after=0)
    with pytest.raises(Cancelled):
        usecases.denoise_image(host, Options(choice="zsn2n"))
    assert "image" not in host.written


def test_denoise_frames_writes_each_selected_frame_and_discards_on_failure(tmp_path, fake):
    frames = [_noisy((16, 16), s) for s in range(3)]
    host = MemoryHost(tmp_path, frames=frames)
    host.info.selected = [0, 2]
    out = usecases.denoise_frames(host, Options(choice="zsn2n", prefix="nr_"))
    assert sorted(k for k in host.written) == [0, 2] and [p.name for p in out.written] == [
        "nr_light_00001.fit", "nr_light_00003.fit"]
    assert host.prepared == 2 and not host.discarded

    failing = MemoryHost(tmp_path / "f", frames=frames)
    (tmp_path / "f").mkdir()
    calls = []

    def apply_once(data, **kw):
        if calls:
            raise ModelError("boom")
        calls.append(1)
        return fake_pipeline.denoise_image(data, **kw)

    fake_pipeline_copy = type(sys)("fake")
    fake_pipeline_copy.denoise_image = apply_once
    usecases_engine = usecases.engine
    try:
        usecases.engine = lambda: fake_pipeline_copy
        with pytest.raises(ModelError, match="boom"):
            usecases.denoise_frames(failing, Options(choice="zsn2n"))
    finally:
        usecases.engine = usecases_engine
    assert [p.name for p in failing.discarded] == ["dn_light_00001.fit"]


def test_denoise_frames_refuses_an_empty_selection(tmp_path, fake):
    host = MemoryHost(tmp_path, frames=[_noisy((16, 16))])
    host.info.selected = []
    with pytest.raises(InputError, match="No frame of 'light_' is selected"):
        usecases.denoise_frames(host, Options())


@dataclass
class _Trained:
    onnx_path: Path
    warnings: list = field(default_factory=list)


def _fake_trainer(tmp_path, calls):
    module = type(sys)("fake_train")

    def train_on_frames(frames, **kw):
        calls.append((len(frames), kw))
        return _Trained(make_model(tmp_path / "trained.onnx", channels=1, cfa=None), ["cut short"])

    module.train_on_frames = train_on_frames
    return module


def test_train_model_leaves_out_unregistered_frames_and_saves(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(usecases, "engine", lambda: _fake_trainer(tmp_path, calls))
    eye = np.eye(3)
    host = MemoryHost(tmp_path, frames=[_noisy((16, 16), s) for s in range(4)], meta=_camera_meta(bayer_pattern=None),
                      homographies=[eye, None, eye, eye])
    out = usecases.train_model(host, Options(name="mine", steps=5, seed=3, save_model=tmp_path / "copy.onnx"))
    n, kw = calls[0]
    assert n == 3 and out.used == [0, 2, 3] and len(kw["homographies"]) == 3
    assert (kw["method"], kw["max_steps"], kw["seed"], kw["cfa_pattern"]) == ("n2n", 5, 3, None)
    assert out.entry.name == "mine" and out.model_path == out.entry.path and (tmp_path / "copy.onnx").is_file()
    assert out.warnings == ["cut short"] and host.prepared == 1
    assert "Left out 1 selected frame" in host.text()


def test_train_model_checks_before_any_work(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(usecases, "engine", lambda: _fake_trainer(tmp_path, calls))
    eye = np.eye(3)
    host = MemoryHost(tmp_path, frames=[_noisy((16, 16), s) for s in range(3)], homographies=[eye, None, None])
    with pytest.raises(InputError, match="at least 2 frames.*1 selected and registered"):
        usecases.train_model(host, Options())
    _library_with(tmp_path)
    with pytest.raises(ModelError, match="already in the library"):
        usecases.train_model(MemoryHost(tmp_path, frames=[_noisy((16, 16))] * 2), Options(name="mycam"))
    sizes = MemoryHost(tmp_path, frames=[_noisy((16, 16)), _noisy((16, 18))])
    with pytest.raises(InputError, match="Frame 2 is 16x18 but frame 1 is 16x16"):
        usecases.train_model(sizes, Options())
    assert not calls


def test_auto_trains_then_denoises_with_the_new_model(tmp_path, monkeypatch):
    calls = []
    trainer = _fake_trainer(tmp_path, calls)
    trainer.apply_model = fake_pipeline.apply_model
    monkeypatch.setattr(usecases, "engine", lambda: trainer)
    frames = [_noisy((16, 16), s) for s in range(2)]
    host = MemoryHost(tmp_path, frames=frames)
    trained, applied = usecases.auto(host, host, Options(add_to_library=False))
    assert trained.entry is None and applied.denoiser.model == trained.model_path
    assert sorted(k for k in host.written) == [0, 1]


# -- the layer stands alone ----------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    """Modules ``path`` imports, relative imports resolved against the package."""
    tree = ast.parse(path.read_text())
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(parts[:len(parts) - node.level]) if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}
    return found


def test_the_layer_never_imports_sirilpy():
    assert not {m for m in _imports(PACKAGE / "usecases.py") if m.split(".")[0] == "sirilpy"}


def test_the_picker_works_without_torch(tmp_path):
    """Siril lists the choices before PyTorch is installed (first run): no torch import on that path."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from siril_denoise import usecases\n"
        "from siril_denoise.library import ModelLibrary\n"
        f"keys = [c.key for c in usecases.choices(ModelLibrary({str(tmp_path)!r}), 2, None)]\n"
        "assert 'zsn2n' in keys, keys\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_the_layer_passes_only_keywords_the_engine_takes(tmp_path, monkeypatch):
    """No silent dropping: every keyword given to the engine binds to its real signature."""
    import inspect

    from siril_denoise import pipeline

    bound = {}
    trainer = _fake_trainer(tmp_path, [])

    class Checking:
        def __getattr__(self, name):
            real = getattr(pipeline, name)

            def call(*args, **kw):
                inspect.signature(real).bind(*args, **kw)  # TypeError on an unknown keyword
                bound[name] = sorted(kw)
                return getattr(trainer if name == "train_on_frames" else fake_pipeline, name)(*args, **kw)

            return call

    monkeypatch.setattr(usecases, "engine", lambda: Checking())
    frames = [_noisy((16, 16), s) for s in range(2)]
    usecases.denoise_image(MemoryHost(tmp_path, image=frames[0]), Options(choice="zsn2n"))
    host = MemoryHost(tmp_path, frames=frames)
    usecases.auto(host, host, Options(add_to_library=False))
    assert set(bound) == {"denoise_image", "apply_model", "train_on_frames"}
    assert "overlap" in bound["apply_model"] and "seed" in bound["train_on_frames"]


def test_a_trained_model_keeps_its_curve_and_frames_beside_it_and_the_temporary_folder_goes(tmp_path, monkeypatch):
    temp = tmp_path / "run"
    temp.mkdir()
    (temp / "training_curve.csv").write_text("step,val\n1,0.5\n")

    @dataclass
    class Trained(_Trained):
        history_csv: Path = temp / "training_curve.csv"
        plot_png: Path | None = None

        def cleanup(self):
            import shutil

            shutil.rmtree(temp)

    module = type(sys)("fake_train")
    module.train_on_frames = lambda frames, **kw: Trained(make_model(temp / "model.onnx", channels=1, cfa=None))
    monkeypatch.setattr(usecases, "engine", lambda: module)
    eye = np.eye(3)
    host = MemoryHost(tmp_path, frames=[_noisy((16, 16), s) for s in range(3)], homographies=[eye, eye, None])
    out = usecases.train_model(host, Options(name="kept"))
    files = out.entry.training_files
    assert sorted(files) == ["frames", "history"] and not temp.exists()
    import json

    record = json.loads(files["frames"].read_text())
    assert [f["index"] for f in record["frames"]] == [1, 2] and record["registration"] == "host"
    assert record["frames"][1]["H"] == eye.tolist()


def test_the_engines_own_defaults_are_read_from_options():
    """The engine keeps keyword defaults for direct callers (the benchmark); each is Options' field, not a copy."""
    import ast
    import inspect

    from siril_denoise import pipeline

    tree = ast.parse(inspect.getsource(pipeline))
    shared = {"method", "strength", "tile", "overlap", "protect", "use_gpu", "seed"}
    checked = 0
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in ("denoise_image", "apply_model", "train_on_frames"):
            args = node.args.kwonlyargs
            for arg, default in zip(args, node.args.kw_defaults):
                if arg.arg in shared:
                    assert isinstance(default, ast.Attribute) and getattr(default.value, "id", None) == "Options", (
                        f"{node.name}({arg.arg}=...) must default to Options.<field>, not a literal")
                    checked += 1
    assert checked >= 15
    d = Options()
    assert inspect.signature(pipeline.denoise_image).parameters["tile"].default == d.tile
    assert inspect.signature(pipeline.train_on_frames).parameters["method"].default == d.train_method
    assert inspect.signature(pipeline.denoise_image).parameters["method"].default == d.zero_shot
