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
    from siril_denoise.usecases import cfa_mode as cfa_for

    session.load_image(np.zeros((8, 10), np.uint16), {"BAYERPAT": "RGGB", "XBAYROFF": 1})
    data, meta = host.read_image()
    assert cfa_for(data.ndim, meta) == "GRBG"  # odd x offset swaps the columns
    session.load_image(np.zeros((3, 8, 10), np.float32), {"BAYERPAT": "RGGB"})
    data, meta = host.read_image()
    assert cfa_for(data.ndim, meta) is None  # already debayered


def test_registration_becomes_3x3_matrices_in_array_coordinates(session):
    from siril_denoise.siril.adapter import SirilHost

    frames = [np.zeros((8, 8), np.uint16)] * 4
    shift = [1, 0, 2.5, 0, 1, -1, 0, 0, 1]  # Siril's rows count from the bottom: 1 px up there
    turn = [0, -1, 7, 1, 0, 0, 0, 0, 1]  # rot90 of an 8 px frame, as Siril 1.4.4 writes it
    session.load_sequence("r_", frames, registration=[[1, 0, 0, 0, 1, 0, 0, 0, 1], shift, turn,
                                                       [0.0] * 9])
    info = SirilHost.connect().sequence_info()
    assert info.homographies is not None and len(info.homographies) == 4
    np.testing.assert_allclose(info.homographies[1], [[1, 0, 2.5], [0, 1, 1], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(info.homographies[2], [[0, 1, 0], [-1, 0, 7], [0, 0, 1]], atol=1e-12)
    assert info.homographies[3] is None, "a frame Siril failed to register (all-zero H)"
    session.load_sequence("plain_", frames)
    assert SirilHost.connect().sequence_info().homographies is None


def test_the_sequence_is_asked_for_once_per_run(session, host):
    # get_seq() costs 2 + N(1 + 2L) + L socket calls: once, not once per frame
    session.load_sequence("light_", [np.zeros((8, 8), np.uint16)] * 6)
    info = host.sequence_info()
    for i in info.selected:
        host.read_frame(info, i)
        host.frame_meta(info, i)
    host.sequence_info()
    assert len(session.calls("get_seq")) == 1


@pytest.mark.parametrize("options,words", [({"fixed": 4}, "4 digits"), ({"fz": True}, "compressed")])
def test_a_sequence_siril_cannot_write_back_is_refused_before_processing(session, host, options, words):
    session.load_sequence("light_", [np.zeros((8, 8), np.uint16)] * 2, **options)
    with pytest.raises(InputError, match=words):
        host.sequence_info(need_regular=True)
    assert host.sequence_info(need_regular=False).number == 2  # training only reads: fine


def test_a_ser_frame_without_fits_header_is_read(session, host):
    session.load_sequence("light_", [np.full((8, 8), 7, np.uint16)] * 2, {"EXPTIME": 5.0}, seq_type=1)
    info = host.sequence_info(need_regular=False)
    data, meta = host.read_frame(info, 1)
    assert int(data[0, 0]) == 7 and meta.exposure is None


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


# -- keywords as the real host gives them (Siril 1.4.4, sirilpy 1.0.25) -----


def test_absent_keywords_are_unknown_not_zero(session, host):
    # sirilpy 1.0.25 turns Siril's "not in the header" sentinels into None
    session.load_image(np.zeros((8, 10), np.uint16), {"INSTRUME": "TestCam"})
    _, meta = host.image_meta()
    assert (meta.gain, meta.offset, meta.exposure, meta.egain, meta.temperature) == (None,) * 5
    assert (meta.stackcnt, meta.livetime, meta.is_stack, meta.xbinning, meta.ybinning) == (
        None, None, False, 1, 1)


def test_siril_sentinels_are_absent_keywords(session, host):
    # Siril's C code marks an absent keyword with INT_MAX (GAIN, OFFSET, STACKCNT, XBINNING),
    # -INT_MAX (Bayer offsets) or -999 (EXPTIME, CVF, LIVETIME, CCD-TEMP); handed over raw they
    # made every sub "a stack of 2147483647" and RGGB without XBAYROFF into BGGR.
    from siril_denoise.usecases import cfa_mode as cfa_for

    session.state["raw_keyword_sentinels"] = True
    session.save()
    session.load_image(np.zeros((8, 10), np.uint16), {"BAYERPAT": "RGGB", "INSTRUME": "TestCam"})
    import sirilpy

    siril = sirilpy.SirilInterface()
    siril.connect()
    raw = siril.get_image(with_pixels=False).keywords
    assert (raw.stackcnt, raw.gain, raw.bayer_xoffset, raw.exposure) == (2147483647, 2147483647,
                                                                          -2147483647, -999.0)
    data, meta = host.read_image()
    assert cfa_for(data.ndim, meta) == "RGGB"
    assert (meta.gain, meta.offset, meta.exposure, meta.egain, meta.temperature) == (None,) * 5
    assert (meta.stackcnt, meta.livetime, meta.is_stack) == (None, None, False)
    assert (meta.xbinning, meta.ybinning) == (1, 1)


def test_bottom_up_bayer_without_offsets(session, host):
    from siril_denoise.usecases import cfa_mode as cfa_for

    session.state["raw_keyword_sentinels"] = True
    session.save()
    session.load_image(np.zeros((8, 10), np.uint16), {"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"})
    data, meta = host.read_image()
    assert cfa_for(data.ndim, meta) == "GBRG"  # the two rows swapped, no offset applied


@pytest.fixture
def new_york(monkeypatch):
    """The computer's clock in New York (UTC-4 in April): local time is not UTC."""
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_date_obs_is_utc_although_sirilpy_gives_local_time(session, host, new_york):
    from siril_denoise.siril.adapter import meta_from_siril

    session.load_image(np.zeros((8, 8), np.uint16), {"DATE-OBS": "2025-04-09T20:56:14.626888"})
    import sirilpy

    siril = sirilpy.SirilInterface()
    siril.connect()
    keywords = siril.get_image(with_pixels=False).keywords
    assert keywords.date_obs.hour == 16, "sirilpy's date_obs is the local time"
    _, meta = host.image_meta()
    assert meta.date_obs.startswith("2025-04-09T20:56:14")
    # without the header (only FKeywords), the local time is turned back into UTC
    assert meta_from_siril(keywords, {}, 8).date_obs == "2025-04-09T20:56:14"


def test_outside_siril_the_constructor_raises_and_connect_says_so(session, monkeypatch):
    import sirilpy

    from siril_denoise.siril.adapter import NotInSiril, SirilHost

    monkeypatch.delenv("MY_SOCKET")
    with pytest.raises(sirilpy.SirilConnectionError, match="MY_SOCKET"):
        sirilpy.SirilInterface()
    with pytest.raises(NotInSiril, match="must be started by Siril"):
        SirilHost.connect()


def test_onnxhelper_answers_with_a_tuple_like_sirilpy(session):
    import sirilpy

    answer = sirilpy.ONNXHelper().is_onnxruntime_installed()
    assert isinstance(answer, tuple) and answer[0] is True and answer[1] == "onnxruntime"


def test_providers_come_without_azure_and_without_the_self_test(session, host, capfd):
    from siril_denoise.siril.adapter import execution_providers

    providers = execution_providers(host, use_gpu=True)
    assert providers[-1] == "CPUExecutionProvider"
    assert "AzureExecutionProvider" not in providers
    assert not session.calls("provider_self_test")
    assert "Provider Tester" not in capfd.readouterr().out
    assert execution_providers(host, use_gpu=False) == ["CPUExecutionProvider"]
    assert "Inference providers: CPUExecutionProvider" in session.log_text()


def test_error_lines_say_error(session, host):
    host.log("Model 'x' not found.", "error")
    host.log("just a warning", "warning")
    assert session.log_text().splitlines() == ["ERROR: Model 'x' not found.", "just a warning"]
