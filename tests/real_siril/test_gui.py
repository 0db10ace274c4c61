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

from conftest import REAL_DATA, SCRIPTS, background_noise, crop_fits, read_fits
from stars import offsets_to_reference

M94 = REAL_DATA / "seestar-m94-20250410"


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def work(siril, tmp_path: Path) -> Path:
    """``light_``: 3 full raw frames registered with ``-2pass``; ``sm_``: 3 small crops, frame 2
    unselected. Made headless, as a user would with the same commands."""
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
                         f"convert sm -out={work}", f"cd {work}", "register light_ -2pass",
                         "select sm_ 1 3", "unselect sm_ 2 2"], tmp_path, name="prepare.ssf")
    assert (work / "light_.seq").is_file() and (work / "sm_.seq").is_file(), run.log[-3000:]
    return work


def test_sequence_and_train_on_the_loaded_sequence_in_the_gui(siril, siril_gui, work):
    originals = {p.name: _digest(p) for p in work.glob("sm_0000*.fit")}
    gui = siril_gui(work, "sm_.seq")

    gui.type(f"pyscript {SCRIPTS / 'SirilDenoise_Sequence.py'} --method zsn2n --steps 40 --nogpu")
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
        assert background_noise(out[0::2, 0::2]) < 0.9 * background_noise(src[0::2, 0::2])
    assert {p.name: _digest(p) for p in work.glob("sm_0000*.fit")} == originals

    mark = len(gui.log())
    gui.type("load_seq light_")
    gui.wait_for(r"Sequence loaded: light_", 60, after=mark)
    gui.type(f"pyscript {SCRIPTS / 'SirilDenoise_Train.py'} --steps 4 --nogpu --name gui_2pass")
    gui.wait_for(r"^log: Saved model 'gui_2pass'|ERROR|unexpected error", 300, after=mark)
    log = gui.log()[mark:]
    print("\n".join(line for line in log.splitlines() if line.startswith("log: ") and "Reading" not in line))
    assert "ERROR" not in log and "Traceback" not in log, log[-4000:]
    assert "Using Siril's registration data" in log
    record = json.loads((siril.userdata / "siril-denoise" / "reports" / "gui_2pass-frames.json").read_text())
    files = [work / f"light_{f['filenum']:05d}.fit" for f in record["frames"]]
    homs = [np.array(f["H"]) for f in record["frames"]]
    ref = [f["index"] for f in record["frames"]].index(record["reference"])
    offsets = offsets_to_reference(files, homs, ref)
    print("GUI 2pass pairs, median star offset px (matched stars):", offsets)
    assert len(offsets) == 2 and all(n >= 5 and off < 0.5 for off, n in offsets), offsets
