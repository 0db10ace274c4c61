"""ONNX export and the model file format: dynamic shapes, metadata, parity check, atomic write, clear errors."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

from siril_denoise import export, modelfile
from siril_denoise.errors import ModelError
from siril_denoise.export import export_onnx
from siril_denoise.modelfile import read_metadata
from tiny_nets import PoolNet

META = {"method": "n2n", "network": "tiny", "cfa": None, "normalisation": {"a": 0.5, "c": 2.0}}



class Drifting(nn.Module):
    """A network whose output changes between calls: export cannot capture it."""

    multiple = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.conv(x) * float(self.calls)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    net = PoolNet(3).eval()
    path = tmp_path_factory.mktemp("models") / "pool.onnx"
    report = export_onnx(net, path, channels=3, metadata=META)
    return net, path, report


def test_export_writes_a_model_that_matches_torch_on_any_shape(exported):
    net, path, report = exported
    assert report.path == path and path.stat().st_size == report.size_bytes
    assert report.max_rel_error is not None and report.max_rel_error <= 1e-4
    assert report.opset >= 17
    assert [s[2:] for s in report.checked_shapes] == [(48, 80), (64, 64)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "input" and session.get_outputs()[0].name == "output"
    for shape in [(3, 3, 30, 52), (1, 3, 128, 16)]:  # batch, height and width all dynamic
        x = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
        got = session.run(None, {"input": x})[0]
        with torch.no_grad():
            want = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_export_leaves_the_callers_network_untouched(tmp_path):
    net = PoolNet(1).train()
    before = [p.detach().clone() for p in net.parameters()]
    export_onnx(net, tmp_path / "m.onnx", channels=1, metadata=META, check=False)
    assert net.training
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_metadata_roundtrip_adds_version_and_shape_fields(exported):
    _, path, _ = exported
    meta = read_metadata(path)
    for key, value in META.items():
        assert meta[key] == value
    assert meta["channels"] == 3 and meta["multiple"] == 2
    assert meta["format_version"] == modelfile.FORMAT_VERSION
    assert meta["siril_denoise_version"]
    assert read_metadata(path.read_bytes()) == meta


def test_failed_parity_check_raises_and_leaves_no_file(tmp_path):
    path = tmp_path / "bad.onnx"
    with pytest.raises(ModelError, match="does not match"):
        export_onnx(Drifting(), path, channels=1, metadata=META)
    assert list(tmp_path.iterdir()) == []


def test_falls_back_to_the_dynamo_exporter(tmp_path, monkeypatch):
    """The TorchScript exporter comes first (8× faster in a fresh process); a torch without it still exports."""
    def broken(*args, **kwargs):
        raise RuntimeError("simulated: this torch has no TorchScript exporter")

    assert export_onnx(PoolNet(1), tmp_path / "first.onnx", channels=1, metadata=META).exporter == "torchscript"
    monkeypatch.setattr(export, "_export_torchscript", broken)
    report = export_onnx(PoolNet(1), tmp_path / "ts.onnx", channels=1, metadata=META)
    assert report.exporter == "dynamo"
    assert report.max_rel_error <= 1e-4
    assert read_metadata(tmp_path / "ts.onnx")["method"] == "n2n"


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        export_onnx(PoolNet(1), tmp_path / "m.onnx", channels=1, metadata={"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_read_metadata_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        read_metadata(tmp_path / "nope.onnx")


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_read_metadata_truncated_file(exported, tmp_path, cut):
    _, path, _ = exported
    data = path.read_bytes()
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ModelError):
        read_metadata(bad)


def test_read_metadata_garbage_and_empty(tmp_path):
    with pytest.raises(ModelError, match="corrupt or truncated"):
        read_metadata(b"\xff\x00 this is not protobuf" * 10)
    with pytest.raises(ModelError, match="corrupt or truncated") as err:
        read_metadata(b"")
    # We never download weights: the advice is to train again or delete.
    assert "download" not in str(err.value) and "Train it again" in str(err.value)


def test_read_metadata_foreign_onnx_model():
    node = onnx.helper.make_node("Identity", ["input"], ["output"])
    info = lambda n: onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 1, 4, 4])  # noqa: E731
    graph = onnx.helper.make_graph([node], "g", [info("input")], [info("output")])
    model = onnx.helper.make_model(graph)
    with pytest.raises(ModelError, match="not a siril-denoise model"):
        read_metadata(model.SerializeToString())


def foreign_model(**props) -> onnx.ModelProto:
    node = onnx.helper.make_node("Identity", ["input"], ["output"])
    info = lambda n: onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["N", 1, "H", "W"])  # noqa: E731
    model = onnx.helper.make_model(onnx.helper.make_graph([node], "g", [info("input")], [info("output")]))
    onnx.helper.set_model_props(model, props)
    return model


def test_modelfile_writes_and_reads_its_own_metadata():
    model = foreign_model(author="someone", siril_denoise='{"old": true}')
    modelfile.write_metadata(model, modelfile.metadata_text({"method": "n2n", "channels": 1}))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["author"] == "someone" and len(model.metadata_props) == 2  # the old entry is replaced
    meta = read_metadata(model.SerializeToString())
    assert meta["method"] == "n2n" and "old" not in meta
    assert meta["format_version"] == modelfile.FORMAT_VERSION and meta["siril_denoise_version"]
    with pytest.raises(ValueError, match="JSON"):
        modelfile.metadata_text({"sigma": float("nan")})


@pytest.mark.parametrize("text, message", [
    ('{"method": "n2n", "format_version": 99}', "newer siril-denoise"),
    ("{}", "damaged"),
    ("[1, 2]", "damaged"),
    ("{truncated", "damaged"),
])
def test_inference_export_and_library_read_model_files_alike(tmp_path, text, message):
    """One reader: the denoiser, read_metadata and the library refuse the same files, the same way."""
    from siril_denoise.inference import OnnxDenoiser
    from siril_denoise.library import ModelLibrary

    path = tmp_path / "m.onnx"
    path.write_bytes(foreign_model(siril_denoise=text).SerializeToString())
    with pytest.raises(ModelError, match=message):
        read_metadata(path)
    with pytest.raises(ModelError, match=message):
        OnnxDenoiser(path, use_gpu=False)
    with pytest.raises(ModelError, match=message):
        ModelLibrary(tmp_path / "lib").add(path)


def test_the_model_format_is_defined_in_modelfile_only():
    """The metadata key and format version are written once; no module reaches into another's privates for them."""
    import re
    from pathlib import Path

    import siril_denoise

    root = Path(siril_denoise.__file__).parent
    for path in root.rglob("*.py"):
        if path.name == "modelfile.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^(METADATA_KEY|FORMAT_VERSION|PARITY_TOLERANCE)\s*=", text, re.M), path
        assert not re.search(r"from \.+\w* import .*\b_create_session\b", text), path

