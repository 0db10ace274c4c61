"""The Train script inside the real Siril, on real Seestar M94 frames: the pairs it builds line up.

Issue 9: Siril's registration homographies count rows from the bottom of the
image; read as they are, stars of a ``register -2pass`` frame landed 1-65 px
from the reference's stars, and Train paired misaligned frames without a
word. Here Train runs on a ``-2pass`` sequence and on a converted,
unregistered one (no ``.seq`` yet: ``convert`` does not write it), and the
alignment of its pairs is measured on the frames' own stars.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_DATA
from stars import offsets_to_reference, star_positions, star_offset

M94 = REAL_DATA / "seestar-m94-20250410"
#: Frames used (full size: the sparse M94 field needs them for Siril's star matching).
FRAMES = 3
STEPS = "4"


@pytest.fixture
def m94(tmp_path: Path) -> Path:
    """A folder of links to 3 raw Seestar frames (names without spaces), as a user keeps them."""
    files = sorted(M94.glob("Light_*.fit"))[3:3 + FRAMES]
    if len(files) < FRAMES:
        pytest.skip(f"real frames not found in {M94}")
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in files:
        (raw / f.name.replace(" ", "_")).symlink_to(f)
    return raw


def _used(siril, name: str) -> dict:
    return json.loads((siril.userdata / "siril-denoise" / "models" / f"{name}-frames.json").read_text())


def _frame_files(work: Path, record: dict) -> list[Path]:
    return [work / f"{record['sequence']}{f['filenum']:05d}.fit" for f in record["frames"]]


def test_train_on_a_2pass_sequence_pairs_frames_aligned_on_their_stars(siril, m94, tmp_path):
    from siril_denoise.siril.seqfile import read_seq

    work = tmp_path / "work"
    run = siril.run_ssf([
        f"cd {m94}", f"convert light -out={work}", f"cd {work}",
        "register light_ -2pass", "unselect light_ 1 1",
        siril.pyscript("SirilDenoise_Train.py", "--seq", "light_", "--steps", STEPS, "--nogpu",
                       "--name", "m94_2pass"),
    ], tmp_path, timeout=300)
    run.assert_no_traceback()
    assert not run.errors(), "\n".join(run.errors())
    assert run.lines(r"with registration data") and run.lines(r"^Using the registration data")
    assert run.lines(r"^Saved model 'm94_2pass'")
    record = _used(siril, "m94_2pass")
    assert record["registration"] == "siril"
    assert [f["index"] for f in record["frames"]] == [2, 3], "frame 1 was unselected in Siril"
    files = _frame_files(work, record)
    homs = [np.array(f["H"]) for f in record["frames"]]
    ref = [f["index"] for f in record["frames"]].index(record["reference"])
    offsets = offsets_to_reference(files, homs, ref)
    print("2pass pairs, median star offset px (matched stars):", offsets)
    assert all(n >= 5 and off < 0.5 for off, n in offsets), offsets

    # Siril's matrices as stored put the same stars pixels away: the flip is what aligns them
    seq = read_seq(work / "light_.seq")
    stored = [np.array(h).reshape(3, 3) for h in seq.homographies()]
    ref_xy = star_positions(files[ref])
    raw = [star_offset(star_positions(f), ref_xy, np.linalg.inv(stored[ref]) @ h, match_px=100)[0]
           for k, (f, h) in enumerate(zip(files, stored)) if k != ref]
    print("2pass, Siril's H as stored, median star offset px:", raw)
    assert max(raw) > 1.0, raw


def test_train_on_a_converted_unregistered_sequence_aligns_its_pairs(siril, m94, tmp_path):
    from siril_denoise.layout import to_working
    from siril_denoise.pairs import packed_to_full_homography, register

    from conftest import read_fits

    work = tmp_path / "work"
    run = siril.run_ssf([
        f"cd {m94}", f"convert light -out={work}", f"cd {work}",
        siril.pyscript("SirilDenoise_Train.py", "--seq", "light_", "--steps", STEPS, "--nogpu",
                       "--name", "m94_unregistered"),
    ], tmp_path, timeout=300)
    run.assert_no_traceback()
    assert not run.errors(), "\n".join(run.errors())
    assert run.lines(r"^No light_\.seq yet"), "convert writes no .seq: the frames are found by name"
    assert run.lines(r"aligned by the engine") and run.lines(r"^Saved model 'm94_unregistered'")
    record = _used(siril, "m94_unregistered")
    assert record["registration"] == "engine" and len(record["frames"]) == FRAMES
    assert record["cfa"] == "GRBG"

    # The engine registers the packed planes itself (pairs.register, as train_on_frames does
    # when no homographies are given): the same call here, measured on the stars.
    files = _frame_files(work, record)
    works = [to_working(read_fits(f)[0], "GRBG")[0] for f in files]
    homs = [packed_to_full_homography(h) for h in register(works)]
    offsets = offsets_to_reference(files, homs, 0)
    print("engine-registered pairs, median star offset px (matched stars):", offsets)
    assert all(n >= 5 and off < 0.5 for off, n in offsets), offsets


def test_a_sequence_siril_resampled_from_raw_frames_is_not_taken_for_a_mosaic(siril, m94, tmp_path):
    # `register light_` interpolates the raw mosaics into a 32-bit r_light_ that keeps BAYERPAT
    work = tmp_path / "work"
    run = siril.run_ssf([
        f"cd {m94}", f"convert light -out={work}", f"cd {work}", "register light_",
        siril.pyscript("SirilDenoise_Sequence.py", "--seq", "r_light_", "--list-models", "--nogpu"),
    ], tmp_path, timeout=300)
    run.assert_no_traceback()
    from conftest import read_fits

    data, header = read_fits(work / "r_light_00001.fit")
    assert data.dtype == np.float32 and header["BAYERPAT"] == "GRBG"
    warned = run.lines(r"say BAYERPAT=GRBG but are no longer a raw mosaic")
    print("\n".join(warned))
    assert warned, run.log[-3000:]
