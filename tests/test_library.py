"""The model library: saving, listing, showing, matching and deleting models."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from siril_denoise.errors import ModelError
from siril_denoise.library import (
    LibraryEntry,
    ModelLibrary,
    default_library_dir,
    format_list,
    format_show,
    sanitise_name,
)

CAMERA = {
    "instrument": "ZWO ASI2600MC Pro",
    "gain": 100,
    "offset": 50,
    "exposure": 120.0,
    "temperature": -10.0,
    "filter": "L-eXtreme",
    "xbinning": 1,
    "ybinning": 1,
    "bayer_pattern": "RGGB",
    "stackcnt": None,
    "livetime": None,
    "is_stack": False,
}


def make_model(path: Path, *, channels: int = 4, cfa: str | None = "RGGB", method: str = "n2n",
               is_stack: bool | None = False, metadata: bool = True) -> Path:
    """A tiny Identity ONNX model carrying siril-denoise metadata, as export writes it."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, channels, None, None])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, channels, None, None])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "g", [x], [y])
    model = helper.make_model(graph)
    if metadata:
        meta = {
            "method": method, "network": "unet", "channels": channels, "cfa": cfa,
            "is_stack": is_stack, "siril_denoise_version": "0.1.0",
            "normalisation": {"transform": "gat", "a": 0.8, "c": 25.0},
            "training": {"frames": 12, "val_psnr": 41.5, "steps": 800, "seconds": 95.0},
        }
        helper.set_model_props(model, {"siril_denoise": json.dumps(meta)})
    onnx.save(model, str(path))
    return path


@pytest.fixture
def lib(tmp_path: Path) -> ModelLibrary:
    return ModelLibrary(tmp_path / "models")


def test_round_trip_add_list_show_get_delete(lib: ModelLibrary, tmp_path: Path) -> None:
    src = make_model(tmp_path / "trained.onnx")
    entry = lib.add(src, meta=CAMERA)

    # copied in, with the camera's identity and the model's own metadata beside it
    assert entry.path.parent == lib.root and entry.path.read_bytes() == src.read_bytes()
    saved = json.loads(entry.json_path.read_text())
    assert saved["camera"]["instrument"] == "ZWO ASI2600MC Pro"
    assert saved["camera"]["gain"] == 100 and saved["camera"]["temperature"] == -10.0
    assert saved["method"] == "n2n" and saved["channels"] == 4 and saved["cfa"] == "RGGB"
    assert saved["training"]["frames"] == 12 and saved["is_stack"] is False
    assert saved["trained"]
    assert not [p for p in lib.root.iterdir() if p.suffix == ".tmp"]

    # readable default name
    assert entry.name.startswith("ZWO_ASI2600MC_Pro_g100_120s_n2n_")

    assert [e.name for e in lib.list()] == [entry.name]
    got = lib.get(entry.name)
    assert got.camera["filter"] == "L-eXtreme"
    assert lib.resolve(entry.name) == entry.path
    assert lib.resolve(src) == src

    line = got.summary()
    assert entry.name in line and "gain 100" in line and "120 s" in line and "\n" not in line
    text = format_show(got)
    for expected in ("n2n", "unet", "RGGB", "single subs", "L-eXtreme", "val_psnr", "gat"):
        assert expected in text
    assert entry.name in format_list(lib)

    lib.delete(entry.name)
    assert lib.list() == []
    assert not entry.path.exists() and not entry.json_path.exists()
    with pytest.raises(ModelError):
        lib.delete(entry.name)


def test_imagemeta_like_object_is_accepted(lib: ModelLibrary, tmp_path: Path) -> None:
    class Meta:  # attributes only, like a dataclass without to_dict
        instrument, gain, exposure, temperature = "QHY268M", 56, 300.0, -5.0

    entry = lib.add(make_model(tmp_path / "m.onnx", channels=1, cfa=None), meta=Meta())
    assert entry.camera["instrument"] == "QHY268M" and entry.camera["gain"] == 56


def test_names_are_sanitised_and_duplicates_refused(lib: ModelLibrary, tmp_path: Path) -> None:
    src = make_model(tmp_path / "m.onnx")
    entry = lib.add(src, name="../my model: ASI/2600 (g100)", meta=CAMERA)
    assert entry.name == "my_model_ASI_2600_g100"
    assert entry.path.parent == lib.root

    with pytest.raises(ModelError, match="already in the library"):
        lib.add(src, name="my model: ASI/2600 (g100)")
    lib.add(src, name="my_model_ASI_2600_g100", overwrite=True)
    assert len(lib.list()) == 1

    # automatic names never collide: a second add gets its own name
    a = lib.add(src, meta=CAMERA)
    b = lib.add(src, meta=CAMERA)
    assert a.name != b.name and len(lib.list()) == 3

    with pytest.raises(ModelError):
        lib.add(src, name="///")
    assert sanitise_name("a b\tc") == "a_b_c"


def test_missing_name_lists_available_models(lib: ModelLibrary, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="empty"):
        lib.get("nothing")
    lib.add(make_model(tmp_path / "m.onnx"), name="alpha")
    lib.add(make_model(tmp_path / "m.onnx"), name="beta")
    with pytest.raises(ModelError) as err:
        lib.get("gamma")
    assert "gamma" in str(err.value) and "alpha" in str(err.value) and "beta" in str(err.value)
    with pytest.raises(ModelError, match="alpha"):
        lib.resolve("gamma")
    with pytest.raises(ModelError, match="not found"):
        lib.resolve(tmp_path / "nowhere.onnx")


def test_corrupt_entries_are_skipped_and_reported(lib: ModelLibrary, tmp_path: Path, caplog) -> None:
    good = lib.add(make_model(tmp_path / "m.onnx"), name="good", meta=CAMERA)
    (lib.root / "broken.onnx").write_bytes(b"\x00not an onnx model")
    lib.add(make_model(tmp_path / "m.onnx"), name="badjson")
    (lib.root / "badjson.json").write_text("{ truncated")

    with caplog.at_level(logging.WARNING, logger="siril_denoise.library"):
        entries = lib.list()
    assert [e.name for e in entries] == [good.name]
    assert "broken.onnx" in caplog.text and "badjson.json" in caplog.text

    listing = format_list(lib)
    assert "good" in listing and "Skipped 2" in listing and "broken.onnx" in listing


def test_model_without_json_is_listed_from_its_own_metadata(lib: ModelLibrary) -> None:
    lib.root.mkdir(parents=True)
    make_model(lib.root / "dropped.onnx", channels=1, cfa=None, method="zsn2n")
    entry = lib.get("dropped")
    assert entry.info["method"] == "zsn2n" and entry.info["channels"] == 1


def test_adding_a_corrupt_or_foreign_model_is_refused(lib: ModelLibrary, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(ModelError):
        lib.add(bad)
    with pytest.raises(ModelError):  # no metadata: the domain it was trained for is unknown
        lib.add(make_model(tmp_path / "plain.onnx", metadata=False))
    assert lib.list() == []


def test_default_dir_honours_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIRIL_DENOISE_LIBRARY", str(tmp_path / "lib"))
    assert default_library_dir() == tmp_path / "lib"
    assert ModelLibrary().root == tmp_path / "lib"
    monkeypatch.delenv("SIRIL_DENOISE_LIBRARY")
    assert default_library_dir().parts[-2:] == ("siril-denoise", "models")


# -- matching -----------------------------------------------------------------


def add_variant(lib: ModelLibrary, tmp_path: Path, name: str, **changes) -> LibraryEntry:
    model_kw = {k: changes.pop(k) for k in ("channels", "cfa", "is_stack") if k in changes}
    return lib.add(make_model(tmp_path / f"{name}.onnx", **model_kw), name=name, meta={**CAMERA, **changes})


def test_match_ranks_by_temperature_exposure_and_filter(lib: ModelLibrary, tmp_path: Path) -> None:
    add_variant(lib, tmp_path, "same")
    add_variant(lib, tmp_path, "hot", temperature=10.0)
    add_variant(lib, tmp_path, "a_short", exposure=30.0)
    add_variant(lib, tmp_path, "tepid", temperature=-5.0)
    add_variant(lib, tmp_path, "other_filter", filter="Ha")

    matches = lib.match(CAMERA, channels=4, cfa="RGGB")
    assert all(m.usable for m in matches)
    assert [m.entry.name for m in matches][0] == "same"
    assert matches[0].score == pytest.approx(1.0)
    order = [m.entry.name for m in matches]
    assert order.index("tepid") < order.index("hot")  # names sort the other way
    assert order.index("other_filter") < order.index("a_short")  # 4x exposure weighs more than a filter
    by_name = {m.entry.name: m for m in matches}
    assert any("20 °C colder" in r for r in by_name["hot"].reasons)
    assert any("30 s" in r for r in by_name["a_short"].reasons)
    assert any("Ha" in r for r in by_name["other_filter"].reasons)


def test_unknown_fields_neither_disqualify_nor_rank(lib: ModelLibrary, tmp_path: Path) -> None:
    add_variant(lib, tmp_path, "known")
    (m,) = lib.match({"instrument": None, "gain": None})
    assert m.usable and m.score == pytest.approx(1.0) and m.reasons == []


@pytest.mark.parametrize(
    "image_changes, channels, cfa, reason",
    [
        ({"instrument": "ZWO ASI294MC"}, 4, "RGGB", "trained on ZWO ASI2600MC Pro; this image is from ZWO ASI294MC"),
        ({"gain": 0}, 4, "RGGB", "trained on ZWO ASI2600MC Pro at gain 100; this image is gain 0"),
        ({"xbinning": 2, "ybinning": 2}, 4, "RGGB", "trained at bin 1x1; this image is bin 2x2"),
        ({}, 3, "RGGB", "this image has RGB (3 channels)"),
        ({}, 4, None, "this image is not CFA"),
        ({}, 4, "GRBG", "trained on RGGB Bayer data; this image's pattern is GRBG"),
    ],
)
def test_disqualified_with_reason(lib: ModelLibrary, tmp_path: Path, image_changes, channels, cfa, reason) -> None:
    add_variant(lib, tmp_path, "model")
    (m,) = lib.match({**CAMERA, **image_changes}, channels=channels, cfa=cfa)
    assert not m.usable
    assert any(reason in r for r in m.reasons), m.reasons


def test_non_cfa_model_refused_for_cfa_image(lib: ModelLibrary, tmp_path: Path) -> None:
    add_variant(lib, tmp_path, "mono", channels=1, cfa=None)
    (m,) = lib.match(CAMERA, channels=1, cfa="RGGB")
    assert not m.usable and any("non-CFA" in r for r in m.reasons)


def test_usable_models_come_before_disqualified_ones(lib: ModelLibrary, tmp_path: Path) -> None:
    add_variant(lib, tmp_path, "wrong_gain")  # perfect except gain
    add_variant(lib, tmp_path, "hot", gain=0, temperature=25.0)
    matches = lib.match({**CAMERA, "gain": 0})
    assert [m.entry.name for m in matches] == ["hot", "wrong_gain"]
    assert matches[0].usable and not matches[1].usable


def test_sub_model_on_stack_warns_but_stays_usable(lib: ModelLibrary, tmp_path: Path) -> None:
    add_variant(lib, tmp_path, "subs", is_stack=False)
    add_variant(lib, tmp_path, "stacked", is_stack=True, stackcnt=20)
    stack = {**CAMERA, "stackcnt": 24, "livetime": 2880.0}
    matches = {m.entry.name: m for m in lib.match(stack)}
    subs = matches["subs"]
    assert subs.usable
    assert any("trained on single subs; this image is a stack of 24" in r and "faint-star flux" in r
               for r in subs.reasons)
    assert matches["stacked"].score > subs.score

    # LIVETIME alone reveals a stack too
    by_livetime = {m.entry.name: m for m in lib.match({**CAMERA, "livetime": 1200.0})}
    assert any("stack of 10" in r for r in by_livetime["subs"].reasons)

    # and the reverse: a stack-trained model on a single sub
    single = {x.entry.name: x for x in lib.match({**CAMERA, "stackcnt": 1})}
    assert single["stacked"].usable
    assert any("trained on a stack; this image is a single sub" in r for r in single["stacked"].reasons)
    assert single["subs"].score > single["stacked"].score


def test_a_model_training_flagged_is_marked_in_lists_and_in_the_siril_picker(tmp_path):
    from siril_denoise.library import LibraryEntry, Match
    from siril_denoise.usecases import choices as picker_choices

    info = {"method": "n2n", "channels": 1,
            "training": {"flags": ["cut_short"], "steps": 40, "max_steps": 800,
                         "notes": ["The time limit stopped training after 40 of 800 steps (5%)"]}}
    flagged = LibraryEntry("rushed", tmp_path / "rushed.onnx", info)
    fine = LibraryEntry("fine", tmp_path / "fine.onnx", {"method": "n2n", "channels": 1, "training": {"flags": []}})
    assert "WARNING: cut short at 40 of 800 steps" in flagged.summary()
    assert "WARNING" not in fine.summary() and fine.flag_text == ""
    assert "WARNING:       The time limit stopped training" in flagged.describe()

    class _Lib:
        def match(self, meta, channels, cfa):
            return [Match(flagged, 1.0, True), Match(fine, 0.9, True)]

    labels = {c.key: c.label for c in picker_choices(_Lib(), 2, None)}
    assert "cut short" in labels["model:rushed"] and "WARNING" not in labels["model:fine"]


# -- training files and `models show` -------------------------------------------


def training_files(tmp_path: Path) -> tuple[Path, Path]:
    csv = tmp_path / "training_curve.csv"
    csv.write_text("step,seconds,lr,train_loss,val_loss\n100,3.0,0.001,0.5,0.4\n")
    png = tmp_path / "training_curve.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    return csv, png


def test_training_curve_and_frames_record_live_and_die_with_the_model(lib: ModelLibrary, tmp_path: Path) -> None:
    csv, png = training_files(tmp_path)
    record = {"sequence": "light", "reference": 1, "frames": [{"index": 1, "filenum": 1, "H": None}]}
    entry = lib.add(make_model(tmp_path / "m.onnx"), name="m31", meta=CAMERA,
                    history_csv=csv, plot_png=png, frames=record)

    # the names the Siril side has always used for them
    kept = {p.name for p in lib.root.iterdir()}
    assert kept == {"m31.onnx", "m31.json", "m31-history.csv", "m31-curve.png", "m31-frames.json"}
    assert (lib.root / "m31-history.csv").read_bytes() == csv.read_bytes()
    assert json.loads((lib.root / "m31-frames.json").read_text()) == record
    assert set(lib.get("m31").training_files) == {"history", "curve", "frames"}
    entries, problems = lib.scan()  # a frames record is not a stray metadata file
    assert [e.name for e in entries] == ["m31"] and problems == []
    text = format_show(lib.get("m31"))
    for path in ("m31-history.csv", "m31-curve.png", "m31-frames.json"):
        assert str(lib.root / path) in text

    # overwriting with a model that has no frames record drops the old one
    lib.add(make_model(tmp_path / "m.onnx"), name="m31", overwrite=True, history_csv=csv)
    assert set(lib.get("m31").training_files) == {"history"}

    lib.delete(entry.name)
    assert list(lib.root.iterdir()) == []

    # a model name that would take another model's frames record is refused
    with pytest.raises(ModelError, match="-frames"):
        lib.add(make_model(tmp_path / "m.onnx"), name="m31-frames")
    with pytest.raises(ModelError, match="no such file"):
        lib.add(make_model(tmp_path / "m.onnx"), name="m32", plot_png=tmp_path / "gone.png")
    assert list(lib.root.iterdir()) == []


def test_models_show_is_a_readable_block_with_the_score_flags_and_folded_pairs(tmp_path: Path) -> None:
    pairs = [{"i": i, "j": j, "overlap": 0.99 - 0.001 * (i + j), "scale": [1.0], "offset": [0.0]}
             for i in range(10) for j in range(10) if i != j]
    info = {"method": "n2n", "network": "unet", "channels": 1,
            "training": {"frames": 10, "validation_frame": 9, "steps": 300, "max_steps": 800, "seconds": 61.4,
                         "device": "cpu", "stopped": "time_budget", "best_val": 0.0123, "best_step": 280,
                         "val_input": 0.0190, "gain": 0.353, "flags": ["cut_short"], "pairs": pairs,
                         "notes": ["The time limit stopped training after 300 of 800 steps"],
                         "steps_per_s": 4.9, "seed": 0},
            "normalisation": {"transform": "gat", "a": [0.6201694358888359] * 4}}
    text = format_show(LibraryEntry("m", tmp_path / "m.onnx", info))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 140, max(lines, key=len)
    joined = "\n".join(lines)
    assert "frame 10 held out" in joined and "300 of 800" in joined and "stopped: time_budget" in joined
    assert "best validation loss 0.0123 at step 280; untouched input 0.019 (35.3 % lower)" in joined
    assert any(line.split() == ["flags:", "cut_short"] for line in lines)
    assert "90 frame pairs, overlap" in joined and "least overlap: 9->10" in joined
    assert "WARNING:       The time limit stopped" in joined
    assert "training files: none kept" in joined
    assert "seed:" in joined  # fields without their own wording are still listed
    assert "[0.620169, 0.620169, 0.620169, 0.620169]" in joined


def test_a_trained_model_leaves_no_temporary_folder_once_saved(lib: ModelLibrary, tmp_path: Path) -> None:
    import numpy as np

    from siril_denoise.pipeline import train_on_frames

    frame = np.random.default_rng(0).integers(900, 1100, (48, 48)).astype(np.uint16)
    trained = train_on_frames([frame], method="zsn2n", max_steps=2, time_budget=None, use_gpu=False)
    assert trained.temp_dir is not None and trained.onnx_path.parent == trained.temp_dir
    entry = lib.add(trained.onnx_path, name="zs", history_csv=trained.history_csv, plot_png=trained.plot_png)
    trained.cleanup()
    assert not trained.temp_dir.exists()
    assert entry.path.is_file() and "history" in entry.training_files

    kept = train_on_frames([frame], method="zsn2n", max_steps=2, time_budget=None, use_gpu=False,
                           out_dir=tmp_path / "out")
    kept.cleanup()  # the caller's folder is the caller's
    assert kept.temp_dir is None and kept.onnx_path.is_file()
