"""The adapter against the sirilpy stand-in, in-process: metadata, CFA, registration, safety."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "sirilpy_standin"))
from standin_session import Session  # noqa: E402

from siril_denoise.errors import DenoiseError, InputError  # noqa: E402


@pytest.fixture
def session(tmp_path, monkeypatch):
    s = Session(tmp_path)
    monkeypatch.setenv("SIRILPY_STANDIN_STATE", str(s.dir))
    monkeypatch.setenv("MY_SOCKET", "/tmp/siril-standin.sock")
    monkeypatch.setenv("SIRIL_PYTHON_CLI", "1")
    return s


@pytest.fixture
def host(session):
    from siril_denoise.siril.adapter import SirilHost

    return SirilHost.connect()


def test_keywords_become_image_meta(session, host):
    session.load_image(np.zeros((8, 10), np.uint16), {
        "INSTRUME": "ZWO ASI2600MM", "GAIN": 0, "OFFSET": 50, "EXPTIME": 120.0, "CCD-TEMP": -10.0,
        "SET-TEMP": -10.0, "FILTER": "Ha", "CVF": 0.8, "STACKCNT": 12, "LIVETIME": 1440.0,
        "PEDESTAL": -500.0})
    ndim, meta = host.image_meta()
    assert ndim == 2
    assert meta.instrument == "ZWO ASI2600MM"
    assert meta.gain == 0.0, "gain 0 is a real setting, not 'unknown'"
    assert (meta.offset, meta.exposure, meta.temperature, meta.filter) == (50.0, 120.0, -10.0, "Ha")
    assert (meta.egain, meta.stackcnt, meta.pedestal, meta.is_stack) == (0.8, 12, -500.0, True)


def test_cfa_pattern_only_for_a_raw_mono_mosaic(session, host):
    from siril_denoise.siril.jobs import cfa_for

    session.load_image(np.zeros((8, 10), np.uint16), {"BAYERPAT": "RGGB", "XBAYROFF": 1})
    data, meta = host.read_image()
    assert cfa_for(data.ndim, meta) == "GRBG"  # odd x offset swaps the columns
    session.load_image(np.zeros((3, 8, 10), np.float32), {"BAYERPAT": "RGGB"})
    data, meta = host.read_image()
    assert cfa_for(data.ndim, meta) is None  # already debayered


def test_registration_becomes_3x3_matrices(session, host):
    frames = [np.zeros((8, 8), np.uint16)] * 3
    shift = [1, 0, 2.5, 0, 1, -1, 0, 0, 1]
    session.load_sequence("r_", frames, registration=[[1, 0, 0, 0, 1, 0, 0, 0, 1], shift, shift])
    info = host.sequence_info()
    assert info.homographies is not None and len(info.homographies) == 3
    np.testing.assert_allclose(info.homographies[1], [[1, 0, 2.5], [0, 1, -1], [0, 0, 1]])
    session.load_sequence("plain_", frames)
    assert host.sequence_info().homographies is None


def test_frame_indices_are_checked_before_siril_sees_them(session, host):
    session.load_sequence("light_", [np.zeros((8, 8), np.uint16)] * 2)
    info = host.sequence_info()
    with pytest.raises(InputError):
        host.read_frame(info, 2)
    assert not session.calls("crash")


def test_image_write_is_undoable_and_claims_the_thread(session, host):
    session.load_image(np.full((8, 8), 100, np.uint16))
    host.write_image(np.full((8, 8), 0.5, np.float32), "siril-denoise test")
    kinds = [c["kind"] for c in session.calls()]
    assert kinds.index("lock") < kinds.index("undo") < kinds.index("set_image_pixeldata")
    data, _ = host.read_image()
    assert data.dtype == np.uint16 and int(data[0, 0]) == 32768  # 0.5 x 65535, Siril keeps 16 bits


def test_image_dialog_open_is_a_clear_error(session, host):
    session.load_image(np.zeros((8, 8), np.uint16))
    session.state["dialog_open"] = True
    session.save()
    with pytest.raises(DenoiseError, match="dialog is open"):
        host.write_image(np.zeros((8, 8), np.uint16), "x")
    assert not session.calls("undo")


def test_standin_is_strict_like_siril(session, monkeypatch):
    import sirilpy

    session.load_image(np.zeros((8, 8), np.uint16))
    siril = sirilpy.SirilInterface()
    siril.connect()
    with pytest.raises(sirilpy.SirilError, match="processing thread is not claimed"):
        siril.set_image_pixeldata(np.zeros((8, 8), np.uint16))
    with siril.image_lock():
        with pytest.raises(ValueError, match="float32 or uint16"):
            siril.set_image_pixeldata(np.zeros((8, 8), np.float64))
        with pytest.raises(ValueError, match="more than 3 channels"):
            siril.set_image_pixeldata(np.zeros((8, 8, 3), np.float32))
    assert siril.create_new_seq("dn_") is False
    monkeypatch.delenv("MY_SOCKET")
    with pytest.raises(sirilpy.SirilConnectionError):
        sirilpy.SirilInterface().connect()
