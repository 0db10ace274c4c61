"""The Sequence script inside the real Siril (headless, ``--seq``): a ``dn_`` sequence Siril stacks.

Crops of real Seestar frames are converted into a sequence, two frames are
unselected with Siril's own ``unselect``, the script denoises the rest, and
Siril itself stacks the result. A second run is stopped half-way the way a
headless run is stopped (SIGTERM to the script's process): it must leave no
sequence and no stray frames.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_DATA, background_noise, crop_fits, read_fits

M94 = REAL_DATA / "seestar-m94-20250410"
SIZE = 128


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def crops(tmp_path: Path) -> Path:
    """3 raw GRBG crops (even offsets keep the Bayer phase), uint16 with the camera's header."""
    files = sorted(M94.glob("Light_*.fit"))[:3]
    if len(files) < 3:
        pytest.skip(f"real frames not found in {M94}")
    raw = tmp_path / "raw"
    raw.mkdir()
    for i, f in enumerate(files):
        crop_fits(f, raw / f"m94_{i}.fit", 900, 400, SIZE, SIZE)
    return raw


def test_sequence_writes_a_dn_sequence_that_siril_stacks(siril, crops, tmp_path):
    work = tmp_path / "work"
    before = {p.name: _digest(p) for p in crops.iterdir()}
    run = siril.run_ssf([
        f"cd {crops}", f"convert light -out={work}", f"cd {work}",
        "unselect light_ 2 2",
        siril.pyscript("SirilDenoise_Sequence.py", "--seq", "light_", "--method", "zsn2n",
                       "--steps", "40", "--nogpu"),
        "stack dn_light_ rej 3 3 -nonorm -out=dn_stack",
    ], tmp_path, timeout=300)
    run.assert_no_traceback()
    assert not run.errors(), "\n".join(run.errors())
    print("\n".join(run.between(r"^siril-denoise ", r"^Running command: stack")))
    written = sorted(p.name for p in work.glob("dn_light_*.fit"))
    assert written == ["dn_light_00001.fit", "dn_light_00003.fit"], "the frame unselected in Siril is left out"
    assert run.lines(r"^Wrote sequence 'dn_light_' \(2 frames\)")
    for name in written:
        src, src_header = read_fits(work / name[3:])
        out, header = read_fits(work / name)
        assert out.dtype == np.uint16 and out.shape == src.shape
        assert header["BAYERPAT"] == src_header["BAYERPAT"] and header["EXPTIME"] == src_header["EXPTIME"]
        assert background_noise(out[0::2, 0::2]) < 0.9 * background_noise(src[0::2, 0::2])  # one CFA site
    assert {p.name: _digest(p) for p in crops.iterdir()} == before, "originals changed"
    # Siril reads the new sequence and stacks its 2 frames
    assert (work / "dn_light_.seq").is_file()
    assert run.lines(r"^Processing all images in the sequence \(2\)"), run.lines("(?i)stack|images")
    stack, _ = read_fits(work / "dn_stack.fit")
    assert stack.shape == (SIZE, SIZE) and np.isfinite(stack).all()


def _script_pid(parent: int, script: str) -> int | None:
    """The pid of the python process under ``parent`` (a process we started) running ``script``."""
    todo = [parent]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            for child in children:
                try:
                    cmd = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if script in cmd:
                    return child
                todo.append(child)
    return None


def test_cancel_half_way_leaves_no_sequence(siril, crops, tmp_path):
    work = tmp_path / "work"
    setup = siril.run_ssf([f"cd {crops}", f"convert light -out={work}", f"cd {work}",
                           "select light_ 1 3"], tmp_path, name="setup.ssf")
    assert (work / "light_.seq").is_file(), setup.log[-2000:]
    script = work / "denoise.ssf"
    script.write_text("requires 1.4.0\n" + siril.pyscript(
        "SirilDenoise_Sequence.py", "--seq", "light_", "--method", "zsn2n", "--steps", "40",
        "--nogpu") + "\n")
    proc = subprocess.Popen([str(siril.cli), "-d", str(work), "-s", str(script)], env=siril.env(),
                            cwd=str(work), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        deadline = time.monotonic() + 240
        while not list(work.glob("dn_light_*.fit")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before the first frame was written"
            time.sleep(0.2)
        assert list(work.glob("dn_light_*.fit")), "no frame written in time"
        pid = _script_pid(proc.pid, "SirilDenoise_Sequence.py")
        assert pid is not None
        os.kill(pid, signal.SIGTERM)  # headless there is no Cancel button: the user stops the script
        log, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print("\n".join(line for line in log.splitlines() if "siril-denoise" in line or "Cancel" in line
                    or "Removed" in line))
    assert "Cancelled" in log and "Removed the " in log, log[-3000:]
    assert not list(work.glob("dn_*")), "a cancelled run leaves no frames and no sequence"
