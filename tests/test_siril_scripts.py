"""The Siril entry scripts, run as Siril runs them, against the sirilpy stand-in.

Each test prepares a stand-in session (a loaded image or a sequence of real
FITS files), starts ``python -u scripts/X.py args`` with Siril's environment,
and checks what a user would see: the image or files written, the log, and
what was left untouched. Most tests use a quick fake engine (the mechanics
are the point); the last ones run the real engine on tiny data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "sirilpy_standin"))
from standin_session import Session, digest, read_fits, run_script  # noqa: E402

HEADER = {"EXPTIME": 30.0, "OBJECT": "M42", "INSTRUME": "TestCam", "GAIN": 100, "OFFSET": 10}


def _noisy(shape, seed, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    base = np.full(shape, 1000.0)
    base[..., 10:14, 10:14] += 5000.0
    noisy = base + rng.normal(0, 30, shape)
    if dtype == np.uint16:
        return np.clip(noisy, 0, 65535).astype(np.uint16)
    return (noisy / 65535.0).astype(np.float32)


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


# -- entry and errors ------------------------------------------------------


@pytest.mark.parametrize("script", ["SirilDenoise_Image.py", "SirilDenoise_Sequence.py",
                                    "SirilDenoise_Train.py"])
def test_help_prints_usage_and_exits_cleanly(script):
    proc = run_script(script, ["--help"], None)
    assert proc.returncode == 0
    assert "usage:" in proc.stdout and "--nogpu" in proc.stdout
    _no_traceback(proc)


def test_image_flags_are_documented_in_help():
    proc = run_script("SirilDenoise_Image.py", ["--help"], None)
    for flag in ("--model", "--method", "--strength", "--tile", "--time-budget", "--list-models"):
        assert flag in proc.stdout


def test_outside_siril_says_so_without_traceback(tmp_path):
    session = Session(tmp_path)
    proc = run_script("SirilDenoise_Image.py", [], session, connect=False)
    assert proc.returncode == 1
    assert "must be started by Siril" in proc.stdout and proc.stdout.startswith("ERROR:")
    _no_traceback(proc)


def test_no_image_loaded_is_one_clear_error(tmp_path):
    session = Session(tmp_path)
    proc = run_script("SirilDenoise_Image.py", ["--method", "zsn2n"], session, fake_engine=True)
    assert proc.returncode == 1
    assert "No image is loaded" in session.log_text()
    assert not session.calls("hang"), "a failed pixel read would hang the real Siril"
    _no_traceback(proc)


def test_busy_siril_leaves_image_untouched(tmp_path):
    session = Session(tmp_path)
    path = session.load_image(_noisy((32, 32), 1), HEADER)
    session.state["busy"] = True
    session.save()
    before = digest(path)
    proc = run_script("SirilDenoise_Image.py", ["--method", "zsn2n"], session, fake_engine=True)
    assert proc.returncode == 1
    assert "Siril is busy" in session.log_text()
    assert digest(path) == before
    assert not session.calls("undo")
    _no_traceback(proc)


def test_bad_strength_is_refused(tmp_path):
    session = Session(tmp_path)
    session.load_image(_noisy((32, 32), 1), HEADER)
    proc = run_script("SirilDenoise_Image.py", ["--strength", "3"], session, fake_engine=True)
    assert proc.returncode == 2  # a usage error, before Siril is even asked for the image
    assert "--strength: must be between 0 (original) and 1" in proc.stderr  # Siril logs stderr too
    assert "nothing was changed" in proc.stdout and not session.calls("undo")
    _no_traceback(proc)


# -- the image --------------------------------------------------------------


@pytest.mark.parametrize("shape,dtype", [((32, 40), np.uint16), ((3, 32, 40), np.float32)])
def test_image_is_replaced_keeping_dtype_and_layout_with_undo(tmp_path, shape, dtype):
    session = Session(tmp_path)
    original = _noisy(shape, 2, dtype)
    path = session.load_image(original, HEADER)
    proc = run_script("SirilDenoise_Image.py", ["--method", "zsn2n", "--strength", "0.8"], session,
                      fake_engine=True)
    assert proc.returncode == 0, session.log_text() + proc.stderr
    data, header = read_fits(path)
    assert data.dtype == original.dtype and data.shape == original.shape
    assert data.std() < original.std()
    assert header["OBJECT"] == "M42"
    undo = session.calls("undo")
    assert len(undo) == 1 and "zsn2n" in undo[0]["message"]
    assert "fake report" in session.log_text()
    _no_traceback(proc)


# -- the host as the real Siril is (issue 9): installs, providers, errors ------


def _session_lacking(tmp_path, *modules, fails=()):
    """A stand-in Siril whose Python environment lacks ``modules`` until the script installs them."""
    session = Session(tmp_path)
    session.state["missing"] = list(modules)
    session.state["install_fails"] = list(fails)
    session.save()
    return session


def _state(session):
    return json.loads((session.dir / "session.json").read_text())


def test_missing_onnxruntime_is_installed_through_onnxhelper_and_imported(tmp_path):
    # is_onnxruntime_installed() returns (installed, name): a tuple, truthy even when missing
    session = _session_lacking(tmp_path, "onnxruntime")
    path = session.load_image(_noisy((32, 32), 1), HEADER)
    before = digest(path)
    proc = run_script("SirilDenoise_Image.py", ["--method", "zsn2n"], session, fake_engine=True)
    assert proc.returncode == 0, session.log_text() + proc.stdout
    assert len(session.calls("install_onnxruntime")) == 1
    assert _state(session)["missing"] == []
    installed = [line for line in session.log_text().splitlines() if line.startswith("Installed:")]
    assert any("onnxruntime" in line for line in installed), session.log_text()
    assert digest(path) != before
    _no_traceback(proc)


def test_onnxruntime_that_will_not_install_stops_before_any_work_image_untouched(tmp_path):
    session = _session_lacking(tmp_path, "onnxruntime", fails=["onnxruntime"])
    path = session.load_image(_noisy((32, 32), 1), HEADER)
    before = digest(path)
    proc = run_script("SirilDenoise_Image.py", ["--method", "zsn2n"], session, fake_engine=True)
    assert proc.returncode == 1
    errors = [line for line in session.log_text().splitlines() if line.startswith("ERROR:")]
    assert errors and "onnxruntime could not be installed" in errors[0], session.log_text()
    assert "The image was not changed" in errors[0]
    assert digest(path) == before and not session.calls("undo")
    assert not session.calls("ensure_torch"), "nothing may be trained without onnxruntime"
    assert not (session.dir / "denoise_calls.jsonl").exists()
    _no_traceback(proc)


def test_every_dependency_is_installed_before_anything_is_trained(tmp_path):
    session = _session_lacking(tmp_path, "scipy", "onnxruntime", "torch", "skimage", "sep")
    session.load_image(_noisy((32, 32), 1), HEADER)
    proc = run_script("SirilDenoise_Image.py", ["--method", "zsn2n", "--nogpu"], session,
                      fake_engine=True)
    assert proc.returncode == 0, session.log_text() + proc.stdout
    kinds = [(c["kind"], c.get("package")) for c in session.calls() if c["kind"] in ("install", "undo")]
    assert kinds == [("install", "scipy"), ("install", "onnxruntime"), ("install", "torch"),
                     ("install", "scikit-image"), ("install", "sep"), ("undo", None)]
    log = session.log_text()
    assert "Training on: cpu" in log and "Inference providers: CPUExecutionProvider" in log
    # pip's own chatter stays out of Siril's log
    assert "Collecting" not in proc.stdout
    _no_traceback(proc)


def test_the_provider_self_test_does_not_run_and_azure_is_no_device(tmp_path):
    session = Session(tmp_path)
    session.load_image(_noisy((32, 32), 1), HEADER)
    proc = run_script("SirilDenoise_Image.py", ["--method", "zsn2n"], session, fake_engine=True)
    assert proc.returncode == 0, session.log_text()
    assert "Provider Tester" not in proc.stdout and not session.calls("provider_self_test")
    providers = [line for line in session.log_text().splitlines() if "Inference providers" in line]
    assert providers == ["Inference providers: CPUExecutionProvider"]
    _no_traceback(proc)


def test_a_bad_model_name_leaves_the_image_untouched_and_says_error(tmp_path):
    session = Session(tmp_path)
    path = session.load_image(_noisy((32, 32), 1), HEADER)
    before = digest(path)
    proc = run_script("SirilDenoise_Image.py", ["--model", "no_such_model"], session, fake_engine=True)
    assert proc.returncode == 1
    errors = [line for line in session.log_text().splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "no_such_model" in errors[0] and "not changed" in errors[0]
    assert digest(path) == before and not session.calls("undo")
    _no_traceback(proc)


def test_outside_siril_without_sirilpy_says_so_without_traceback(tmp_path):
    import os
    import subprocess

    from standin_session import SCRIPTS

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MY_SOCKET", "MY_PIPE")}
    proc = subprocess.run([sys.executable, str(SCRIPTS / "SirilDenoise_Image.py"), "--method", "zsn2n"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.startswith("ERROR: siril-denoise: SirilDenoise_Image.py runs inside Siril")
    _no_traceback(proc)


# -- sequences --------------------------------------------------------------


def test_sequence_writes_selected_frames_only_and_creates_the_sequence(tmp_path):
    session = Session(tmp_path)
    frames = [_noisy((24, 24), s) for s in range(4)]
    originals = session.load_sequence("light_", frames, HEADER, selected=[True, False, True, True])
    before = [digest(p) for p in originals]
    proc = run_script("SirilDenoise_Sequence.py", ["--method", "nb2nb"], session, fake_engine=True)
    assert proc.returncode == 0, session.log_text() + proc.stderr
    written = sorted(p.name for p in session.wd.glob("dn_*.fit"))
    assert written == ["dn_light_00001.fit", "dn_light_00003.fit", "dn_light_00004.fit"]
    data, header = read_fits(session.wd / "dn_light_00003.fit")
    assert data.dtype == np.uint16
    assert header["OBJECT"] == "M42" and header["EXPTIME"] == 30.0 and header["FRAMENUM"] == 3
    assert data.std() < frames[2].std()
    assert [digest(p) for p in originals] == before
    assert (session.wd / "dn_light_.seq").is_file()
    assert not session.calls("crash")
    _no_traceback(proc)


@pytest.mark.parametrize("seq_type", [1, 2])  # SER, FITSEQ
def test_single_file_sequences_are_refused_without_writing(tmp_path, seq_type):
    session = Session(tmp_path)
    session.load_sequence("light_", [_noisy((16, 16), s) for s in range(2)], HEADER, seq_type=seq_type)
    proc = run_script("SirilDenoise_Sequence.py", [], session, fake_engine=True)
    assert proc.returncode == 1
    assert "convert" in session.log_text()
    assert not list(session.wd.glob("dn_*"))
    _no_traceback(proc)


def test_cancel_half_way_leaves_no_sequence_and_no_stray_frames(tmp_path):
    session = Session(tmp_path)
    session.load_sequence("light_", [_noisy((24, 24), s) for s in range(4)], HEADER)
    proc = run_script("SirilDenoise_Sequence.py", ["--method", "zsn2n"], session, fake_engine=True,
                      extra_env={"SIRILPY_STANDIN_SIGTERM_AFTER_WRITES": "1"})
    assert proc.returncode == 1
    assert len(session.calls("set_seq_frame_pixeldata")) == 1, "it should stop after the first frame"
    assert not list(session.wd.glob("dn_*"))
    assert not session.calls("create_new_seq")
    assert "Cancelled" in session.log_text()
    _no_traceback(proc)


def test_no_sequence_loaded_is_one_clear_error(tmp_path):
    session = Session(tmp_path)
    proc = run_script("SirilDenoise_Train.py", [], session, fake_engine=True)
    assert proc.returncode == 1
    assert "No sequence is loaded" in session.log_text()
    _no_traceback(proc)


def test_training_needs_two_selected_frames(tmp_path):
    session = Session(tmp_path)
    session.load_sequence("light_", [_noisy((16, 16), s) for s in range(3)], HEADER,
                          selected=[True, False, False])
    proc = run_script("SirilDenoise_Train.py", [], session, fake_engine=True)
    assert proc.returncode == 1
    assert "at least 2 frames" in session.log_text() and "has 1 selected" in session.log_text()
    _no_traceback(proc)


# -- with the real engine ---------------------------------------------------


def _engine_ready() -> bool:
    try:
        from siril_denoise import pipeline  # noqa: F401
    except ImportError:
        return False
    return True


real_engine = pytest.mark.skipif(not _engine_ready(), reason="siril_denoise.pipeline not available yet")


@real_engine
def test_zero_shot_on_the_loaded_image_with_the_real_engine(tmp_path):
    session = Session(tmp_path)
    original = _noisy((48, 48), 5)
    path = session.load_image(original, HEADER)
    proc = run_script("SirilDenoise_Image.py", ["--method", "zsn2n", "--time-budget", "1", "--nogpu"],
                      session)
    assert proc.returncode == 0, session.log_text() + proc.stderr
    data, _ = read_fits(path)
    assert data.dtype == np.uint16 and data.shape == original.shape
    assert not np.array_equal(data, original)
    assert len(session.calls("undo")) == 1
    _no_traceback(proc)


@real_engine
def test_trained_model_is_saved_and_offered_first_to_the_image_script(tmp_path):
    session = Session(tmp_path)
    frames = [_noisy((112, 112), s) for s in range(4)]  # the engine trains on 96 px crops
    identity = [1, 0, 0, 0, 1, 0, 0, 0, 1]
    session.load_sequence("r_light_", frames, HEADER, registration=[identity] * 4)
    proc = run_script("SirilDenoise_Train.py", ["--name", "testcam", "--time-budget", "2", "--nogpu"],
                      session)
    assert proc.returncode == 0, session.log_text() + proc.stderr
    assert (session.models_dir / "testcam.onnx").is_file()
    assert "Saved model 'testcam'" in session.log_text()
    used = json.loads((session.models_dir / "testcam-frames.json").read_text())
    assert used["sequence"] == "r_light_" and used["registration"] == "siril"
    assert [f["index"] for f in used["frames"]] == [1, 2, 3, 4]
    assert np.allclose(used["frames"][2]["H"], np.eye(3))

    session.load_image(frames[0], HEADER)
    proc = run_script("SirilDenoise_Image.py", ["--list-models"], session)
    assert proc.returncode == 0, session.log_text() + proc.stderr
    listed = [r["message"] for r in session.records("log.jsonl") if "Model:" in r["message"]
              or "Zero-shot" in r["message"] or "Best matching" in r["message"]]
    assert "testcam" in listed[1], listed  # first after the "auto" entry

    proc = run_script("SirilDenoise_Sequence.py", ["--model", "testcam", "--prefix", "m_"], session)
    assert proc.returncode == 0, session.log_text() + proc.stderr
    assert len(list(session.wd.glob("m_r_light_*.fit"))) == 4
    assert (session.wd / "m_r_light_.seq").is_file()
    _no_traceback(proc)


@real_engine
def test_first_run_without_onnxruntime_denoises_with_the_real_engine(tmp_path):
    # Issue 9: Siril trained for a minute, then stopped on "No module named 'onnxruntime'"
    session = _session_lacking(tmp_path, "onnxruntime")
    original = _noisy((48, 48), 5)
    path = session.load_image(original, HEADER)
    proc = run_script("SirilDenoise_Image.py", ["--method", "zsn2n", "--time-budget", "1", "--nogpu"],
                      session)
    assert proc.returncode == 0, session.log_text() + proc.stdout + proc.stderr
    data, _ = read_fits(path)
    assert not np.array_equal(data, original)
    _no_traceback(proc)


# -- a sequence given by name (--seq), as under siril-cli ---------------------


def test_sequence_by_name_headless_writes_selected_frames_and_creates_the_sequence(tmp_path):
    session = Session(tmp_path)
    frames = [_noisy((48, 48), s) for s in range(3)]
    originals = session.sequence_on_disk("light_", frames, HEADER, selected=[True, False, True])
    before = [digest(p) for p in originals] + [digest(session.wd / "light_.seq")]
    proc = run_script("SirilDenoise_Sequence.py", ["--seq", "light_", "--method", "nb2nb"], session,
                      fake_engine=True)
    assert proc.returncode == 0, session.log_text() + proc.stderr
    written = sorted(p.name for p in session.wd.glob("dn_*.fit"))
    assert written == ["dn_light_00001.fit", "dn_light_00003.fit"]
    data, header = read_fits(session.wd / "dn_light_00003.fit")
    assert data.dtype == np.uint16 and data.shape == (48, 48)
    assert header["OBJECT"] == "M42" and header["EXPTIME"] == 30.0 and header["FRAMENUM"] == 3
    assert "siril-denoise" in str(header["HISTORY"]) and "nb2nb" in str(header["HISTORY"])
    assert data.std() < frames[2].std()
    assert [digest(p) for p in originals] + [digest(session.wd / "light_.seq")] == before
    assert (session.wd / "dn_light_.seq").is_file()
    assert [c["root"] for c in session.calls("create_new_seq")] == ["dn_light_"]
    assert not session.calls("set_seq_frame_pixeldata") and not session.calls("crash")
    _no_traceback(proc)


def test_missing_seq_file_says_where_it_looked(tmp_path):
    session = Session(tmp_path)
    proc = run_script("SirilDenoise_Sequence.py", ["--seq", "nothere_"], session, fake_engine=True)
    assert proc.returncode == 1
    log = session.log_text()
    assert "Sequence 'nothere_' not found" in log and str(session.wd / "nothere_.seq") in log
    _no_traceback(proc)


def test_no_sequence_headless_points_to_seq(tmp_path):
    session = Session(tmp_path)
    proc = run_script("SirilDenoise_Sequence.py", ["--method", "zsn2n"], session, fake_engine=True)
    assert proc.returncode == 1
    assert "No sequence is loaded" in session.log_text() and "--seq" in session.log_text()
    _no_traceback(proc)


@pytest.mark.parametrize("script, seq_type, lost, expected", [
    ("SirilDenoise_Sequence.py", "S", None, ("SER", "Convert")),
    ("SirilDenoise_Train.py", "S", None, ("SER", "Convert")),
    ("SirilDenoise_Sequence.py", None, 1, ("missing", "light_00002")),
], ids=["ser-sequence", "ser-train", "missing-file"])
def test_seq_by_name_refuses_what_it_cannot_read_and_says_why(tmp_path, script, seq_type, lost, expected):
    session = Session(tmp_path)
    paths = session.sequence_on_disk("light_", [_noisy((16, 16), s) for s in range(3)], HEADER, seq_type=seq_type)
    if lost is not None:
        paths[lost].unlink()
    proc = run_script(script, ["--seq", "light_.seq" if seq_type else "light_"], session, fake_engine=True)
    assert proc.returncode == 1
    assert all(word in session.log_text() for word in expected), session.log_text()
    assert not list(session.wd.glob("dn_*"))
    _no_traceback(proc)


def test_failure_half_way_removes_what_was_written_and_creates_no_sequence(tmp_path):
    session = Session(tmp_path)
    paths = session.sequence_on_disk("light_", [_noisy((24, 24), s) for s in range(3)], HEADER)
    paths[1].write_bytes(paths[1].read_bytes()[:3000])  # truncated: unreadable
    proc = run_script("SirilDenoise_Sequence.py", ["--seq", "light_", "--method", "zsn2n"], session,
                      fake_engine=True)
    assert proc.returncode == 1
    assert "truncated or corrupt" in session.log_text()
    assert "Removed the 1 frame(s)" in session.log_text()
    assert not list(session.wd.glob("dn_*"))
    assert not session.calls("create_new_seq")
    _no_traceback(proc)


def test_train_by_name_needs_two_selected_frames(tmp_path):
    session = Session(tmp_path)
    session.sequence_on_disk("light_", [_noisy((16, 16), s) for s in range(3)], HEADER,
                             selected=[False, True, False])
    proc = run_script("SirilDenoise_Train.py", ["--seq", "light_"], session, fake_engine=True)
    assert proc.returncode == 1
    assert "at least 2 frames" in session.log_text() and "has 1 selected" in session.log_text()
    _no_traceback(proc)


def test_train_by_name_gives_the_selected_frames_and_their_homographies(tmp_path):
    import json

    session = Session(tmp_path)
    shift = [1, 0, 2.5, 0, 1, -1, 0, 0, 1]
    identity = [1, 0, 0, 0, 1, 0, 0, 0, 1]
    session.sequence_on_disk("light_", [_noisy((16, 16), s) for s in range(3)], HEADER,
                             selected=[True, False, True], registration=[identity, identity, shift])
    proc = run_script("SirilDenoise_Train.py", ["--seq", "light_", "--nogpu"], session,
                      fake_engine=True)
    call = json.loads((session.dir / "train_call.json").read_text())  # the fake engine stops there
    assert call["frames"] == 2 and call["dtypes"] == ["uint16", "uint16"]
    # Siril's rows count from the bottom: its -1 px in y is +1 px in the arrays
    assert np.allclose(call["homographies"][1], [[1, 0, 2.5], [0, 1, 1], [0, 0, 1]])
    assert "registration data" in session.log_text()
    assert proc.returncode == 1


@real_engine
def test_sequence_by_name_with_the_real_engine_zero_shot(tmp_path):
    session = Session(tmp_path)
    frames = [_noisy((48, 48), s) for s in range(3)]
    originals = session.sequence_on_disk("light_", frames, HEADER, selected=[True, True, False])
    before = [digest(p) for p in originals]
    proc = run_script("SirilDenoise_Sequence.py",
                      ["--seq", "light_", "--method", "zsn2n", "--time-budget", "1", "--nogpu"],
                      session)
    assert proc.returncode == 0, session.log_text() + proc.stderr
    assert sorted(p.name for p in session.wd.glob("dn_*.fit")) == ["dn_light_00001.fit",
                                                                  "dn_light_00002.fit"]
    for i in (1, 2):
        data, header = read_fits(session.wd / f"dn_light_{i:05d}.fit")
        assert data.dtype == np.uint16 and data.shape == (48, 48)
        assert header["FRAMENUM"] == i and header["OBJECT"] == "M42"
        assert not np.array_equal(data, frames[i - 1])
    assert [digest(p) for p in originals] == before
    assert (session.wd / "dn_light_.seq").is_file()
    _no_traceback(proc)


# -- what the real Siril 1.4.4 does with sequences (issue 9) -------------------


def _mosaic(seed, shape=(64, 64)):
    """A raw GRBG mosaic: four site levels, independent noise in every pixel."""
    rng = np.random.default_rng(seed)
    levels = np.array([[1290.0, 1060.0], [1030.0, 1285.0]])
    sky = np.tile(levels, (shape[0] // 2, shape[1] // 2))
    return np.clip(sky + rng.normal(0, 30, shape), 0, 65535).astype(np.uint16)


def _resampled(mosaic):
    """What `register` makes of a raw frame: resampled half a pixel, 32-bit, BAYERPAT kept."""
    x = mosaic.astype(np.float32) / 65535.0
    return ((x + np.roll(x, 1, axis=1)) / 2).astype(np.float32)


def test_pyscript_typed_in_the_gui_loads_the_new_sequence(tmp_path):
    # is_cli() is True for every pyscript, typed in the GUI too; loading works there
    session = Session(tmp_path)
    session.load_sequence("light_", [_noisy((24, 24), s) for s in range(2)], HEADER)
    proc = run_script("SirilDenoise_Sequence.py", ["--method", "zsn2n"], session, fake_engine=True)
    assert proc.returncode == 0, session.log_text() + proc.stderr
    assert [c["args"] for c in session.calls("cmd") if c["args"][0] == "load_seq"] == [["load_seq", "dn_light_"]]
    assert json.loads((session.dir / "session.json").read_text())["sequence"]["seqname"] == "dn_light_"
    _no_traceback(proc)


def test_a_sequence_run_asks_siril_for_the_sequence_once(tmp_path):
    session = Session(tmp_path)
    session.load_sequence("light_", [_noisy((24, 24), s) for s in range(5)], HEADER)
    proc = run_script("SirilDenoise_Sequence.py", ["--method", "zsn2n", "--no-load"], session,
                      fake_engine=True)
    assert proc.returncode == 0, session.log_text() + proc.stderr
    # once by the script, once inside create_new_seq() (it checks the name against the loaded one)
    assert len(session.calls("get_seq")) == 2
    _no_traceback(proc)


@pytest.mark.parametrize("options", [{"fixed": 4}, {"fz": True}])
def test_a_sequence_siril_would_name_otherwise_is_refused_and_nothing_is_written(tmp_path, options):
    session = Session(tmp_path)
    session.load_sequence("light_", [_noisy((24, 24), s) for s in range(2)], HEADER, **options)
    proc = run_script("SirilDenoise_Sequence.py", ["--method", "zsn2n"], session, fake_engine=True)
    assert proc.returncode == 1
    assert "convert" in session.log_text() and "Nothing was written" in session.log_text()
    assert not list(session.wd.glob("dn_*")) and not session.calls("set_seq_frame_pixeldata")
    _no_traceback(proc)


def test_train_on_a_ser_sequence_reads_frames_without_fits_header(tmp_path):
    session = Session(tmp_path)
    session.load_sequence("light_", [_noisy((16, 16), s) for s in range(3)], HEADER, seq_type=1)
    run_script("SirilDenoise_Train.py", ["--nogpu"], session, fake_engine=True)
    assert "UnboundLocalError" not in session.log_text()
    call = json.loads((session.dir / "train_call.json").read_text())  # the fake engine stops there
    assert call["frames"] == 3


def test_train_gets_siril_registration_in_array_coordinates_without_failed_frames(tmp_path):
    session = Session(tmp_path)
    identity = [1, 0, 0, 0, 1, 0, 0, 0, 1]
    up = [1, 0, 2.0, 0, 1, 3.0, 0, 0, 1]  # Siril counts rows from the bottom: 3 rows up
    session.load_sequence("light_", [_noisy((16, 16), s) for s in range(4)], HEADER,
                          registration=[identity, up, [0.0] * 9, identity])
    run_script("SirilDenoise_Train.py", ["--nogpu"], session, fake_engine=True)
    call = json.loads((session.dir / "train_call.json").read_text())
    assert call["frames"] == 3
    np.testing.assert_allclose(call["homographies"][1], [[1, 0, 2], [0, 1, -3], [0, 0, 1]], atol=1e-12)
    assert "could not be registered" in session.log_text() and ": 3." in session.log_text()


def test_frames_that_convert_left_without_a_seq_file_are_used_by_name(tmp_path):
    session = Session(tmp_path)
    paths = session.sequence_on_disk("light_", [_noisy((24, 24), s) for s in range(2)], HEADER)
    (session.wd / "light_.seq").unlink()
    proc = run_script("SirilDenoise_Sequence.py", ["--seq", "light_", "--method", "zsn2n"], session,
                      fake_engine=True)
    assert proc.returncode == 0, session.log_text() + proc.stderr
    assert "No light_.seq yet" in session.log_text()
    assert sorted(p.name for p in session.wd.glob("dn_*.fit")) == ["dn_" + p.name for p in paths]
    _no_traceback(proc)


def test_a_resampled_mosaic_is_not_treated_as_a_mosaic(tmp_path):
    session = Session(tmp_path)
    raw = [_mosaic(s) for s in range(3)]
    bayer = {**HEADER, "BAYERPAT": "GRBG"}
    session.load_sequence("light_", raw, bayer)
    run_script("SirilDenoise_Train.py", ["--nogpu"], session, fake_engine=True)
    assert json.loads((session.dir / "train_call.json").read_text())["cfa_pattern"] == "GRBG"

    session = Session(tmp_path / "registered")
    frames = [raw[0].astype(np.float32) / 65535] + [_resampled(m) for m in raw[1:]]  # ref kept
    session.load_sequence("r_light_", frames, bayer)
    run_script("SirilDenoise_Train.py", ["--nogpu"], session, fake_engine=True)
    assert json.loads((session.dir / "train_call.json").read_text())["cfa_pattern"] is None
    assert "no longer a raw mosaic" in session.log_text()
    proc = run_script("SirilDenoise_Sequence.py", ["--method", "zsn2n"], session, fake_engine=True)
    assert proc.returncode == 0, session.log_text() + proc.stderr
    calls = session.records("denoise_calls.jsonl")
    assert len(calls) == 3 and all(c["cfa_pattern"] is None for c in calls)
