"""The loaded-sequence paths, in Siril's GUI under Xvfb, typed as a user types them.

Only the GUI can load a sequence, and there ``pyscript`` still reports
``is_cli()`` True (issue 9): the Sequence script must still load the new
sequence, honour the selection made in Siril, and Train must read Siril's
registration of the loaded sequence the right way up.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_DATA, SCRIPTS, crop_fits, read_fits
from stars import offsets_to_reference

M94 = REAL_DATA / "seestar-m94-20250410"


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def work(siril, tmp_path: Path) -> Path:
    """``light_``: 3 full raw frames registered with ``-2pass``, frame 1 unselected; ``sm_``: 3
    small crops, frame 2 unselected; ``ser``: the crops as a SER file; ``l4_``: them numbered
    with 4 digits. Made headless, as a user would with the same commands."""
    files = sorted(M94.glob("Light_*.fit"))[4:7]
    if len(files) < 3:
        pytest.skip(f"real frames not found in {M94}")
    full, small, work = tmp_path / "full", tmp_path / "small", tmp_path / "work"
    full.mkdir()
    small.mkdir()
    for i, f in enumerate(files):
        (full / f"m94_{i}.fit").symlink_to(f)
        crop_fits(f, small / f"m94_{i}.fit", 900, 400, 128, 128)
    run = siril.run_ssf([f"cd {full}", f"convert light -out={work}", f"cd {small}",
                         f"convert sm -out={work}", f"convert ser -ser -out={work}", f"cd {work}",
                         "register light_ -2pass", "unselect light_ 1 1", "select sm_ 1 3",
                         "unselect sm_ 2 2",
                         "select ser 1 3"],
                        tmp_path, name="prepare.ssf")
    assert (work / "light_.seq").is_file() and (work / "sm_.seq").is_file(), run.log[-3000:]
    assert (work / "ser.seq").is_file(), run.log[-3000:]
    # a sequence numbered with 4 digits, as capture programs name files and Siril finds them
    for i in (1, 2, 3):
        (work / f"l4_{i:04d}.fit").write_bytes((work / f"sm_{i:05d}.fit").read_bytes())
    (work / "l4_.seq").write_text("S 'l4_' 1 3 3 4 0 4 0 0 0\nL 1\nI 1 1\nI 2 1\nI 3 1\n")
    return work


def _on_loaded_sequence(gui, seq: str, script: str, args: str, done: str, timeout: float) -> str:
    """Load ``seq`` in the GUI, type ``pyscript SCRIPT ARGS``, wait for ``done`` (or an error);
    returns the log written since."""
    mark = len(gui.log())
    gui.type(f"load_seq {seq}")
    gui.wait_for(f"Sequence loaded: {seq}", 60, after=mark)
    gui.type(f"pyscript {SCRIPTS / script} {args}")
    gui.wait_for(f"{done}|ERROR|unexpected error", timeout, after=mark)
    return gui.log()[mark:]


def test_the_scripts_on_loaded_sequences_in_the_gui(siril, siril_gui, work):
    originals = {p.name: _digest(p) for p in work.glob("sm_0000*.fit")}
    gui = siril_gui(work, "sm_.seq")

    # 60 steps: after 5, ZS-N2N's default (24² crops, a 4-layer net whose last layer starts at zero) left
    # these small raw frames unchanged to the ADU, and the check below could not tell it had run
    gui.type(f"pyscript {SCRIPTS / 'SirilDenoise_Sequence.py'} --method zsn2n --steps 60 --nogpu")
    gui.wait_for(r"^log: Wrote sequence 'dn_sm_' \(2 frames\)|ERROR|unexpected error", 240)
    gui.wait_for(r"Sequence loaded: dn_sm_|ERROR|not loaded", 30)
    log = gui.log()
    print("\n".join(line for line in log.splitlines() if "siril-denoise" in line or "dn_sm_" in line))
    assert "ERROR" not in log and "Traceback" not in log, log[-4000:]
    assert "Sequence loaded: dn_sm_" in log, "the new sequence is loaded, though is_cli() is True"
    assert sorted(p.name for p in work.glob("dn_sm_*.fit")) == ["dn_sm_00001.fit", "dn_sm_00003.fit"]
    for name in ("dn_sm_00001.fit", "dn_sm_00003.fit"):
        out, header = read_fits(work / name)
        src, _ = read_fits(work / name[3:])
        assert out.dtype == np.uint16 and out.shape == src.shape and header["BAYERPAT"] == "GRBG"
        assert not np.array_equal(out, src)  # how much noise goes: test_sequence.py
    assert {p.name: _digest(p) for p in work.glob("sm_0000*.fit")} == originals

    log = _on_loaded_sequence(gui, "light_", "SirilDenoise_Train.py", "--steps 4 --nogpu --name gui_2pass",
                              r"^log: Saved model 'gui_2pass'", 300)
    print("\n".join(line for line in log.splitlines() if line.startswith("log: ") and "Reading" not in line))
    assert "ERROR" not in log and "Traceback" not in log, log[-4000:]
    assert "Using the registration data" in log
    record = json.loads((siril.userdata / "siril-denoise" / "models" / "gui_2pass-frames.json").read_text())
    files = [work / f"light_{f['filenum']:05d}.fit" for f in record["frames"]]
    homs = [np.array(f["H"]) for f in record["frames"]]
    ref = [f["index"] for f in record["frames"]].index(record["reference"])
    offsets = offsets_to_reference(files, homs, ref)
    print("GUI 2pass pairs, median star offset px (matched stars):", offsets)
    assert [f["index"] for f in record["frames"]] == [2, 3], "frame 1 was unselected in Siril"
    assert len(offsets) == 1 and all(n >= 5 and off < 0.5 for off, n in offsets), offsets

    # Siril would name denoised frames of a 4-digit sequence l4_0001.fit, which create_new_seq
    # never finds: refused before anything is written
    log = _on_loaded_sequence(gui, "l4_", "SirilDenoise_Sequence.py", "--method zsn2n --steps 5 --nogpu",
                              r"^log: siril-denoise took", 120)
    assert "numbers its files with 4 digits" in log and "Nothing was written" in log, log[-3000:]
    assert not list(work.glob("dn_l4_*")) and "Traceback" not in log

    # a SER sequence: its frames have no FITS header (sirilpy raised UnboundLocalError there)
    log = _on_loaded_sequence(gui, "ser", "SirilDenoise_Train.py", "--steps 1 --nogpu --name gui_ser",
                              r"^log: Saved model 'gui_ser'", 240)
    assert "Saved model 'gui_ser'" in log and "UnboundLocalError" not in log, log[-3000:]
