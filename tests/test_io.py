"""FITS/XISF reading and writing: data, dtype, layout and header survive."""

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from siril_denoise.errors import InputError
from siril_denoise.io import (
    ImageMeta,
    bayer_pattern_for_array,
    expand_inputs,
    image_meta_from_header,
    output_for_image,
    plan_outputs,
    read_image,
    split_name,
    write_image,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SEESTAR = REAL / "seestar-m94-20250410" / "Light_M 94_10.0s_IRCUT_20250409-225627.fit"
SAAO = REAL / "ccd-singles" / "saao-raw-a8280271.fits"
APOGEE = REAL / "ccd-singles" / "apogee-calibrated-long.fits"

HISTORY = "siril-denoise 0.1.0: zsn2n, strength 1.0"


def _header(**extra):
    h = fits.Header()
    h["INSTRUME"] = ("Test Cam", "Camera model")
    h["GAIN"] = (120, "Gain Value")
    h["OFFSET"] = 30
    h["EXPTIME"] = 30.0
    h["CCD-TEMP"] = -10.5
    h["FILTER"] = "Ha"
    h["XBINNING"] = 1
    h["YBINNING"] = 1
    h["DATE-OBS"] = "2025-04-09T20:56:14"
    h["OBJECT"] = "M 94"
    h["MYKEY"] = ("kept", "a keyword nobody knows")
    h.add_history("older step")
    for k, v in extra.items():
        h[k] = v
    return h


def _write_source(path, data, header):
    fits.PrimaryHDU(data=data, header=header).writeto(path)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_fits_uint16_round_trip_keeps_data_dtype_header(tmp_path, rng):
    data = rng.integers(0, 65536, size=(24, 32), dtype=np.uint16)
    data[0, 0], data[0, 1] = 0, 65535
    src = _write_source(tmp_path / "in.fits", data, _header(BAYERPAT="RGGB"))

    img = read_image(src)
    assert img.data.dtype == np.uint16 and img.data.shape == (24, 32)
    assert img.format == "fits"
    np.testing.assert_array_equal(img.data, data)

    out = write_image(tmp_path / "out.fits", img.data, like=img, history=HISTORY)
    with fits.open(out) as hdul:
        h = hdul[0].header
        assert h["BITPIX"] == 16 and h["BZERO"] == 32768
        assert h["MYKEY"] == "kept" and h.comments["MYKEY"] == "a keyword nobody knows"
        assert h["BAYERPAT"] == "RGGB" and h["GAIN"] == 120
        assert list(h["HISTORY"]) == ["older step", HISTORY]
    back = read_image(out)
    assert back.data.dtype == np.uint16
    np.testing.assert_array_equal(back.data, data)
    assert back.meta == img.meta


def test_fits_float32_round_trip_adu_scaled(tmp_path, rng):
    data = (rng.normal(1000, 50, size=(3, 16, 20))).astype(np.float32)  # ADU, not [0, 1]
    src = _write_source(tmp_path / "c.fit", data, _header())
    img = read_image(src)
    assert img.data.dtype == np.float32 and img.data.shape == (3, 16, 20)
    np.testing.assert_array_equal(img.data, data)

    out = write_image(tmp_path / "c_dn.fit", img.data * 0.5, like=img, history=[HISTORY, "second"])
    with fits.open(out) as hdul:
        h = hdul[0].header
        assert h["BITPIX"] == -32 and h["NAXIS"] == 3 and h["NAXIS3"] == 3
        assert "BZERO" not in h
        assert list(h["HISTORY"])[-2:] == [HISTORY, "second"]
    np.testing.assert_array_equal(read_image(out).data, data * 0.5)


def test_fits_uint16_source_written_as_float_changes_only_bitpix(tmp_path, rng):
    data = rng.integers(0, 4000, size=(8, 8), dtype=np.uint16)
    img = read_image(_write_source(tmp_path / "a.fits", data, _header()))
    out = write_image(tmp_path / "b.fits", img.data.astype(np.float32), like=img)
    with fits.open(out) as hdul:
        assert hdul[0].header["BITPIX"] == -32 and "BZERO" not in hdul[0].header
        assert hdul[0].header["MYKEY"] == "kept"


def test_signed_int16_becomes_float32_with_negatives(tmp_path):
    data = np.array([[-500, -1], [0, 32000]], dtype=np.int16)
    img = read_image(_write_source(tmp_path / "s.fits", data, fits.Header()))
    assert img.data.dtype == np.float32
    np.testing.assert_array_equal(img.data, data.astype(np.float32))


def test_first_image_hdu_of_multi_extension_fits(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    ext = fits.ImageHDU(data=data, name="SCI")
    ext.header["EXPTIME"] = 5.0
    path = tmp_path / "mef.fits"
    fits.HDUList([fits.PrimaryHDU(), ext]).writeto(path)
    img = read_image(path)
    np.testing.assert_array_equal(img.data, data)
    assert img.meta.exposure == 5.0


def test_header_override_and_dict(tmp_path):
    data = np.zeros((4, 4), dtype=np.uint16)
    img = read_image(_write_source(tmp_path / "a.fits", data, _header()))
    out = write_image(tmp_path / "b.fits", data, like=img, header={"GAIN": 200, "NEWKEY": ("x", "c")})
    h = fits.getheader(out)
    assert h["GAIN"] == 200 and h["NEWKEY"] == "x" and h["MYKEY"] == "kept"


@pytest.mark.parametrize("shape", [(20, 30), (3, 20, 30)])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_xisf_round_trip(tmp_path, rng, shape, dtype):
    if dtype == np.uint16:
        data = rng.integers(0, 65536, size=shape, dtype=np.uint16)
    else:
        data = rng.random(shape, dtype=np.float32)
    fits_src = read_image(_write_source(tmp_path / "src.fits", data, _header()))
    xisf_path = write_image(tmp_path / "out.xisf", data, like=fits_src, history=HISTORY)

    img = read_image(xisf_path)
    assert img.format == "xisf"
    assert img.data.dtype == dtype and img.data.shape == shape
    np.testing.assert_array_equal(img.data, data)
    h = img.header
    assert h["MYKEY"] == "kept" and h["FILTER"] == "Ha" and h["GAIN"] == 120
    assert h["EXPTIME"] == 30.0 and h["OBJECT"] == "M 94"
    assert list(h["HISTORY"]) == ["older step", HISTORY]
    assert img.meta == fits_src.meta

    # and back again: XISF -> XISF and XISF -> FITS keep the same keywords
    again = read_image(write_image(tmp_path / "again.xisf", img.data, like=img))
    np.testing.assert_array_equal(again.data, data)
    assert again.meta == img.meta
    as_fits = read_image(write_image(tmp_path / "again.fits", img.data, like=img))
    assert as_fits.header["MYKEY"] == "kept" and as_fits.data.dtype == dtype


def test_xisf_properties_are_kept(tmp_path):
    from xisf import XISF

    data = np.full((6, 5, 1), 1234, dtype=np.uint16)
    props = {
        "Instrument:Camera:Name": {"id": "Instrument:Camera:Name", "type": "String", "value": "PI Cam"},
        "Instrument:ExposureTime": {"id": "Instrument:ExposureTime", "type": "Float32", "value": 120.0},
    }
    src = tmp_path / "pi.xisf"
    XISF.write(str(src), data, image_metadata={"XISFProperties": props})
    img = read_image(src)
    assert img.data.shape == (6, 5)
    assert img.meta.instrument == "PI Cam" and img.meta.exposure == 120.0
    out = read_image(write_image(tmp_path / "pi_dn.xisf", img.data, like=img))
    assert out.xisf_properties["Instrument:Camera:Name"]["value"] == "PI Cam"


def test_never_overwrites_input_or_existing_file(tmp_path):
    data = np.ones((4, 4), dtype=np.uint16)
    src = _write_source(tmp_path / "in.fits", data, fits.Header())
    before = src.read_bytes()
    img = read_image(src)
    with pytest.raises(InputError, match="read from"):
        write_image(src, data * 2, like=img, overwrite=True)
    assert src.read_bytes() == before

    existing = tmp_path / "out.fits"
    existing.write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists"):
        write_image(existing, data, like=img)
    assert existing.read_bytes() == b"precious"
    write_image(existing, data, like=img, overwrite=True)
    np.testing.assert_array_equal(read_image(existing).data, data)


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(InputError):
        write_image(tmp_path / "bad.fits", np.zeros((2, 2, 2, 2), dtype=np.float32))
    with pytest.raises(InputError):
        write_image(tmp_path / "bad.xisf", np.zeros((2, 4, 4), dtype=np.float32))  # 2 channels
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_existing_file(tmp_path, monkeypatch):
    import siril_denoise.io as sio

    target = tmp_path / "out.fits"
    write_image(target, np.ones((4, 4), dtype=np.uint16))
    before = target.read_bytes()

    def half_write(tmp, data, header):
        Path(tmp).write_bytes(b"SIMPLE  =  half")
        raise KeyboardInterrupt

    monkeypatch.setattr(sio, "_write_fits", half_write)
    with pytest.raises(KeyboardInterrupt):
        write_image(target, np.zeros((4, 4), dtype=np.uint16), overwrite=True)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.fits"]


def test_read_errors_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "missing.fits")
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="unsupported"):
        read_image(tmp_path / "x.png")
    (tmp_path / "garbage.fits").write_bytes(b"this is not a FITS file at all" * 10)
    with pytest.raises(InputError, match="corrupt"):
        read_image(tmp_path / "garbage.fits")
    (tmp_path / "garbage.xisf").write_bytes(b"XISF0100" + b"\x00" * 40)
    with pytest.raises(InputError, match="corrupt"):
        read_image(tmp_path / "garbage.xisf")

    full = tmp_path / "full.fits"
    fits.PrimaryHDU(np.zeros((200, 200), dtype=np.uint16)).writeto(full)
    (tmp_path / "trunc.fits").write_bytes(full.read_bytes()[: 2880 * 5])
    with pytest.raises(InputError, match="truncated"):
        read_image(tmp_path / "trunc.fits")

    fits.HDUList([fits.PrimaryHDU()]).writeto(tmp_path / "empty.fits")
    with pytest.raises(InputError, match="no image"):
        read_image(tmp_path / "empty.fits")


def test_meta_mapping_and_dict_round_trip():
    h = _header(EGAIN=0.8, RDNOISE=1.6, STACKCNT=12, LIVETIME=360.0, PEDESTAL=-500, **{"SET-TEMP": -10.0})
    m = image_meta_from_header(h)
    assert (m.instrument, m.gain, m.offset, m.egain, m.read_noise) == ("Test Cam", 120, 30, 0.8, 1.6)
    assert (m.exposure, m.temperature, m.set_temperature, m.filter) == (30.0, -10.5, -10.0, "Ha")
    assert (m.xbinning, m.ybinning, m.stackcnt, m.livetime, m.pedestal) == (1, 1, 12, 360.0, -500)
    assert m.date_obs == "2025-04-09T20:56:14" and m.object == "M 94" and m.is_stack
    assert ImageMeta.from_dict(m.to_dict()) == m
    # plain dicts (the Siril adapter's keywords) work too; NCOMBINE and CVF are aliases
    d = image_meta_from_header({"ncombine": 1, "cvf": 1.2, "exposure": 10})
    assert d.stackcnt == 1 and not d.is_stack and d.egain == 1.2 and d.exposure == 10
    assert image_meta_from_header({}) == ImageMeta()


@pytest.mark.parametrize(
    "pattern, kw, expected",
    [
        ("RGGB", {}, "RGGB"),
        ("GRBG", {"xoffset": 1}, "RGGB"),
        ("GRBG", {"yoffset": 1}, "BGGR"),
        ("RGGB", {"xoffset": 1, "yoffset": 1}, "BGGR"),
        ("RGGB", {"row_order": "BOTTOM-UP", "height": 100}, "GBRG"),
        ("RGGB", {"row_order": "BOTTOM-UP", "height": 101}, "RGGB"),
        ("RGGB", {"row_order": "TOP-DOWN", "height": 100}, "RGGB"),
        ("none", {}, None),
    ],
)
def test_bayer_pattern_adjustment(pattern, kw, expected):
    assert bayer_pattern_for_array(pattern, **kw) == expected


def test_bayer_pattern_from_header_uses_roworder_and_offsets():
    h = fits.Header([("NAXIS2", 1080), ("BAYERPAT", "RGGB"), ("ROWORDER", "BOTTOM-UP"), ("XBAYROFF", 1)])
    assert image_meta_from_header(h).bayer_pattern == "BGGR"


def test_expand_inputs(tmp_path):
    lights = tmp_path / "lights"
    lights.mkdir()
    for name in ("b.fits", "a.fit", "c.xisf", "notes.txt"):
        (lights / name).write_bytes(b"")
    got = expand_inputs([str(lights / "*"), str(lights / "a.fit"), str(lights / "*.fit")])
    assert got == [lights / "a.fit", lights / "b.fits", lights / "c.xisf"]
    assert expand_inputs([str(lights)]) == got
    with pytest.raises(InputError, match="matches"):
        expand_inputs([str(lights / "*.fts")])
    with pytest.raises(InputError, match="not found"):
        expand_inputs([str(tmp_path / "nope.fits")])
    with pytest.raises(InputError):
        expand_inputs([])


def test_output_names_drop_compression_and_never_clobber(tmp_path):
    assert split_name("m94.FITS.gz") == ("m94", ".FITS") and split_name("a.b.xisf") == ("a.b", ".xisf")
    assert output_for_image("in/m94.fits.bz2", str(tmp_path)) == tmp_path / "m94_dn.fits"
    assert output_for_image("m94.fits", str(tmp_path / "x.xisf")) == tmp_path / "x.xisf"
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    pairs = plan_outputs([one / "a.fits", two / "b.fits.gz"], tmp_path / "out", "dn_", overwrite=False)
    assert [dst.name for _, dst in pairs] == ["dn_a.fits", "dn_b.fits"] and not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="both be written"):
        plan_outputs([one / "a.fits", two / "a.fits"], tmp_path / "out", "dn_", overwrite=False)
    with pytest.raises(InputError, match="prefix is empty"):
        plan_outputs([one / "a.fits"], one, "", overwrite=False)


@pytest.mark.skipif(not SEESTAR.exists(), reason="real Seestar frames not present")
def test_real_seestar_frame():
    img = read_image(SEESTAR)
    # NAXIS1 = 1080, NAXIS2 = 1920: a portrait (H, W) = (1920, 1080) array.
    assert img.data.dtype == np.uint16 and img.data.shape == (1920, 1080)
    m = img.meta
    assert m.bayer_pattern == "GRBG"
    assert m.instrument == "Seestar S50" and m.gain == 80 and m.exposure == 10.0
    assert m.filter == "IRCUT" and m.object == "M 94" and 20 < m.temperature < 30
    assert m.xbinning == 1 and not m.is_stack and m.date_obs.startswith("2025-04-09")
    # GRBG on the array as read: the two green sites ([0,0], [1,1]) share a level
    # that differs from the red ([0,1]) and blue ([1,0]) sites.
    med = {(y, x): np.median(img.data[y::2, x::2]) for y in (0, 1) for x in (0, 1)}
    assert abs(med[0, 0] - med[1, 1]) < 0.1 * abs(med[0, 0] - med[0, 1])
    assert abs(med[0, 0] - med[1, 1]) < 0.1 * abs(med[0, 0] - med[1, 0])


@pytest.mark.skipif(not SAAO.exists(), reason="real SAAO frame not present")
def test_real_saao_gain_is_electrons_per_adu():
    img = read_image(SAAO)
    assert img.data.dtype == np.uint16 and img.data.shape == (520, 536)
    # "GAIN = 1.9 / e-/ADU": a conversion factor, not a gain setting.
    assert img.meta.egain == pytest.approx(1.9) and img.meta.gain is None
    assert img.meta.read_noise == pytest.approx(5.0)
    assert img.meta.exposure == pytest.approx(150.04)


@pytest.mark.skipif(not APOGEE.exists(), reason="real Apogee frame not present")
def test_real_apogee_int16_keeps_negative_values():
    img = read_image(APOGEE)
    assert img.data.dtype == np.float32 and img.data.shape == (512, 512)
    assert (img.data < 0).any()
    raw = fits.getdata(APOGEE)
    np.testing.assert_array_equal(img.data, raw.astype(np.float32))


def test_written_file_has_ordinary_permissions(tmp_path):
    import os

    out = write_image(tmp_path / "p.fits", np.zeros((4, 4), dtype=np.float32))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
