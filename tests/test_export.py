"""ONNX export: dynamic shapes, metadata, parity check, atomic write, clear errors."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

from siril_denoise import export
from siril_denoise.errors import ModelError
from siril_denoise.export import export_onnx, read_metadata
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
    assert meta["format_version"] == export.FORMAT_VERSION
    assert meta["siril_denoise_version"]
    assert read_metadata(path.read_bytes()) == meta


def test_failed_parity_check_raises_and_leaves_no_file(tmp_path):
    path = tmp_path / "bad.onnx"
    with pytest.raises(ModelError, match="does not match"):
        export_onnx(Drifting(), path, channels=1, metadata=META)
    assert list(tmp_path.iterdir()) == []


def test_falls_back_to_torchscript_exporter(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated dynamo failure")

    monkeypatch.setattr(export, "_export_dynamo", broken)
    report = export_onnx(PoolNet(1), tmp_path / "ts.onnx", channels=1, metadata=META)
    assert report.exporter == "torchscript"
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
