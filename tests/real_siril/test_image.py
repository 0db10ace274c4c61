"""The Image script inside the real Siril 1.4.4: 16-bit mono (the first run), float32 colour, a
raw Bayer Seestar frame, a failing run; and the adapter's reading of a real Seestar header.

All of it runs in one ``siril-cli`` session (one ``.ssf``, several ``load``/``pyscript``/``save``
steps, Siril's clock set to New York so local time is not UTC); each test checks its part.
Siril's undo is not available headless (``undo_save_state`` returns None there), so undo is
checked where Siril has a GUI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess

import numpy as np
import pytest

from conftest import REAL_DATA, REPO, background_noise, crop_fits, quick_training, read_fits, write_fits

SEESTAR = REAL_DATA / "seestar-m94-20250410" / "Light_M 94_10.0s_IRCUT_20250409-225627.fit"
#: A 192 px raw crop with bright stars; even offsets keep the GRBG phase of the frame.
CROP = (1104, 576, 192, 192)

PROBE = '''
import json, sys
sys.path.insert(0, {repo!r})
from siril_denoise.siril.adapter import SirilHost
from siril_denoise.usecases import cfa_mode as cfa_for
host = SirilHost.connect()
data, meta = host.read_image()
kw = host.siril.get_image(with_pixels=False).keywords
# A file, not the log: Siril logs a script's printed lines asynchronously (after later commands).
with open(sys.argv[1], "w") as out:
    json.dump({{
    "shape": list(data.shape), "dtype": str(data.dtype), "cfa": cfa_for(data.ndim, meta),
    "gain": meta.gain, "offset": meta.offset, "exposure": meta.exposure, "egain": meta.egain,
    "stackcnt": meta.stackcnt, "livetime": meta.livetime, "is_stack": meta.is_stack,
    "xbinning": meta.xbinning, "temperature": meta.temperature, "date_obs": meta.date_obs,
    "keyword_date_obs": str(kw.date_obs), "keyword_stackcnt": kw.stackcnt,
    "sum": int(data.astype("int64").sum())}}, out)
host.disconnect()
'''


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _colour_from(raw: np.ndarray) -> np.ndarray:
    """A debayered-looking float32 RGB image in [0, 1]: one pixel per GRBG 2x2 block."""
    raw = raw.astype(np.float32)
    r, b = raw[0::2, 1::2], raw[1::2, 0::2]
    g = (raw[0::2, 0::2] + raw[1::2, 1::2]) / 2
    return (np.stack([r, g, b]) / 65535.0).astype(np.float32)


@pytest.fixture(scope="module")
def run(siril, tmp_path_factory):
    """One Siril session through every case; returns the run and its sections, one per ``load``."""
    if not SEESTAR.is_file():
        pytest.skip(f"real frames not found: {SEESTAR}")
    wd = tmp_path_factory.mktemp("image")
    y0, x0, h, w = CROP
    crop_fits(SEESTAR, wd / "bayer.fit", y0, x0, h, w)
    crop_fits(SEESTAR, wd / "bayer_bu.fit", y0, x0, h, w, ROWORDER="BOTTOM-UP")
    raw, header = read_fits(SEESTAR)
    colour = _colour_from(raw[y0:y0 + h, x0 - 64:x0 + w + 64])
    header.remove("BAYERPAT")
    write_fits(wd / "colour32.fit", colour, header)
    (wd / "probe.py").write_text(PROBE.format(repo=str(REPO)))
    steps = quick_training()
    lines = [
        "load colour32.fit",
        siril.pyscript("SirilDenoise_Image.py", "--method", "zsn2n", *steps),
        "save colour32_out",
        "load bayer.fit",
        siril.pyscript(str(wd / "probe.py"), wd / "probe_bayer.json"),
        siril.pyscript("SirilDenoise_Image.py", "--method", "zsn2n", *steps),
        "save bayer_out",
        "load bayer_bu.fit",
        siril.pyscript(str(wd / "probe.py"), wd / "probe_bottom_up.json"),
        "load bayer.fit",
        "save before_fail",
        siril.pyscript("SirilDenoise_Image.py", "--model", "no_such_model"),
        "save after_fail",
    ]
    digests = {name: _digest(wd / name) for name in ("bayer.fit", "colour32.fit")}
    result = siril.run_ssf(lines, wd, env=siril.env(TZ="America/New_York"), timeout=600)
    assert "Script execution finished successfully" in result.log, result.log[-4000:]
    sections = result.sections()
    assert len(sections) == 5, [s[:2] for s in sections]
    return {"run": result, "wd": wd, "colour": sections[1], "bayer": sections[2],
            "bottom_up": sections[3], "fail": sections[4], "digests": digests}


def _probe(run: dict, name: str) -> dict:
    path = run["wd"] / f"probe_{name}.json"
    assert path.is_file(), run["run"].log[-3000:]
    return json.loads(path.read_text())


def _report(section: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(section) if line.startswith("Denoised the image"))
    end = next(i for i, line in enumerate(section) if line.startswith("siril-denoise took"))
    return section[start:end + 1]


def test_a_later_run_installs_nothing_and_is_quiet(run):
    run["run"].assert_no_traceback()
    log = run["run"].lines()
    assert not [line for line in log if line.startswith(("Installing", "Installed"))], log
    assert not [line for line in log if re.search("Provider Tester|AzureExecutionProvider", line)]


def test_float32_colour_image_is_denoised_in_place(run):
    section = run["colour"]
    assert not [line for line in section if line.startswith("ERROR")], section
    report = _report(section)
    assert any("Background noise" in line for line in report), report
    before, _ = read_fits(run["wd"] / "colour32.fit")
    after, header = read_fits(run["wd"] / "colour32_out.fit")
    assert after.dtype == np.float32 and after.shape == before.shape == (3,) + before.shape[1:]
    assert header["BITPIX"] == -32 and header["INSTRUME"] == "Seestar S50"
    for c in range(3):
        assert background_noise(after[c]) < 0.8 * background_noise(before[c]), c
    assert abs(float(np.median(after)) - float(np.median(before))) < 0.05 * float(np.median(before))
    assert _digest(run["wd"] / "colour32.fit") == run["digests"]["colour32.fit"]


def test_raw_seestar_frame_is_denoised_as_its_bayer_pattern(run):
    section = run["bayer"]
    assert not [line for line in section if line.startswith("ERROR")], section
    probe = _probe(run, "bayer")
    assert probe["shape"] == [CROP[2], CROP[3]] and probe["dtype"] == "uint16"
    # BAYERPAT = 'GRBG', no ROWORDER, no XBAYROFF: GRBG applies to the array as Siril hands it
    assert probe["cfa"] == "GRBG"
    assert "Raw Bayer mosaic (GRBG): denoised as 4 colour planes." in section
    before, _ = read_fits(run["wd"] / "bayer.fit")
    assert probe["sum"] == int(before.astype(np.int64).sum()), "Siril hands the pixels as stored"
    sites = {(dy, dx): float(np.median(before[dy::2, dx::2])) for dy in (0, 1) for dx in (0, 1)}
    green = [(0, 0), (1, 1)]  # where GRBG puts green; the data agree: the two green sites match
    assert abs(sites[green[0]] - sites[green[1]]) < 0.1 * abs(sites[(0, 1)] - sites[green[0]])
    after, header = read_fits(run["wd"] / "bayer_out.fit")
    assert after.dtype == np.uint16 and after.shape == before.shape
    assert header["BAYERPAT"].strip() == "GRBG"
    for dy in (0, 1):
        for dx in (0, 1):  # each colour site on its own: the mosaic is not smeared across colours
            site_before, site_after = before[dy::2, dx::2], after[dy::2, dx::2]
            assert background_noise(site_after) < 0.8 * background_noise(site_before), (dy, dx)
            assert abs(np.median(site_after.astype(float)) - sites[(dy, dx)]) < 0.1 * background_noise(
                site_before) + 2
    report = _report(section)
    assert any(line.strip().startswith("Background noise") for line in report), report
    assert any(line.strip().startswith("Star flux") for line in report), report
    assert re.search(r"^siril-denoise took \d+\.\d s\.$", report[-1])
    assert _digest(run["wd"] / "bayer.fit") == run["digests"]["bayer.fit"]


def test_roworder_bottom_up_swaps_the_pattern_rows(run):
    probe = _probe(run, "bottom_up")
    assert probe["cfa"] == "BGGR"  # GRBG counted from the bottom row of an even-height image


def test_seestar_keywords_absent_are_unknown_and_the_date_is_utc(run):
    probe = _probe(run, "bayer")
    # the Seestar header has GAIN 80, EXPTIME 10, CCD-TEMP; no OFFSET, CVF, STACKCNT, LIVETIME
    assert (probe["gain"], probe["exposure"], probe["temperature"]) == (80.0, 10.0, 23.3125)
    assert (probe["offset"], probe["egain"], probe["stackcnt"], probe["livetime"]) == (None,) * 4
    assert probe["is_stack"] is False and probe["xbinning"] == 1
    _, header = read_fits(SEESTAR)
    assert probe["date_obs"] == header["DATE-OBS"].strip()  # UTC, as the header says
    # sirilpy's own date_obs is the local time of the computer (New York here: UTC-4 in April)
    assert probe["keyword_date_obs"] == "2025-04-09 16:56:14"


def test_a_failing_run_leaves_the_image_untouched_and_says_error(run):
    section = run["fail"]
    errors = [line for line in section if line.startswith("ERROR")]
    assert len(errors) == 1, section
    assert "no_such_model" in errors[0] and "The image was not changed." in errors[0]
    before, h1 = read_fits(run["wd"] / "before_fail.fit")
    after, h2 = read_fits(run["wd"] / "after_fail.fit")
    assert before.dtype == after.dtype and np.array_equal(before, after)
    assert before.tobytes() == after.tobytes()
    # Siril itself still reports success for the .ssf: the ERROR line is what tells the user
    assert "Script execution finished successfully." in run["run"].lines()


def test_outside_siril_the_script_says_so_without_traceback(siril):
    env = {k: v for k, v in siril.env().items() if k not in ("MY_SOCKET", "MY_PIPE")}
    proc = subprocess.run([str(siril.venv_python), str(REPO / "scripts" / "SirilDenoise_Image.py"),
                           "--method", "zsn2n"], env=env, capture_output=True, text=True, timeout=120,
                          cwd=os.fspath(REPO))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ERROR: siril-denoise: This script must be started by Siril")
    assert "Traceback" not in proc.stdout + proc.stderr


UNDO = """
import sirilpy
siril = sirilpy.SirilInterface()
siril.connect()
siril.undo()  # what Edit > Undo does
print("UNDO DONE", flush=True)
"""


def test_undo_in_the_gui_restores_the_image(siril, siril_gui, tmp_path):
    """Headless Siril keeps no undo history; with its GUI, Edit > Undo restores the original."""
    wd = tmp_path / "gui"
    wd.mkdir()
    crop_fits(SEESTAR, wd / "small.fit", CROP[0], CROP[1], 96, 96)
    (wd / "undo.py").write_text(UNDO)
    gui = siril_gui(wd, "small.fit")
    gui.type(siril.pyscript("SirilDenoise_Image.py", "--method", "zsn2n", "--steps", "20"))
    gui.wait_for(r"^log: (siril-denoise took|ERROR)", 300)
    gui.type("save denoised")
    gui.wait_for(r"Saving FITS: file denoised", 60)
    gui.type(siril.pyscript(str(wd / "undo.py")))
    gui.wait_for(r"UNDO DONE|Traceback", 60)
    gui.type("save undone")
    gui.wait_for(r"Saving FITS: file undone", 60)
    log = gui.log()
    assert "ERROR" not in log and "Traceback" not in log, log[-4000:]
    original, _ = read_fits(wd / "small.fit")
    denoised, _ = read_fits(wd / "denoised.fit")
    undone, _ = read_fits(wd / "undone.fit")
    assert not np.array_equal(denoised, original)
    assert undone.dtype == original.dtype and undone.tobytes() == original.tobytes()
