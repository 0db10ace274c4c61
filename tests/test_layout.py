"""Siril layouts to the working form and back; Bayer packing."""

import numpy as np
import pytest

from siril_denoise.errors import InputError
from siril_denoise.layout import from_working, pack_cfa, to_working, unpack_cfa
from siril_denoise.synthetic import mosaic

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "data",
    [
        RNG.integers(0, 65536, (37, 41), dtype=np.uint16),
        RNG.integers(0, 65536, (3, 36, 40), dtype=np.uint16),
        RNG.random((37, 41), dtype=np.float32),
        (RNG.random((3, 36, 40), dtype=np.float32) - 0.1),  # negatives kept
        RNG.random((1, 40, 40), dtype=np.float32),
    ],
    ids=["u16-mono", "u16-rgb", "f32-mono", "f32-rgb-neg", "f32-1ch"],
)
def test_round_trip_keeps_values_dtype_and_layout(data):
    work, info = to_working(data)
    assert work.dtype == np.float32 and work.ndim == 3
    back = from_working(work, info)
    assert back.dtype == data.dtype and back.shape == data.shape
    np.testing.assert_array_equal(back, data)


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
@pytest.mark.parametrize("shape", [(40, 48), (41, 48), (40, 49), (41, 49)])
def test_cfa_round_trip_any_pattern_and_odd_sizes(pattern, shape):
    data = RNG.integers(0, 65536, shape, dtype=np.uint16)
    work, info = to_working(data, pattern)
    assert work.shape == (4, (shape[0] + 1) // 2, (shape[1] + 1) // 2)
    np.testing.assert_array_equal(from_working(work, info), data)


def test_cfa_planes_hold_one_colour_each():
    rgb = np.stack([np.full((8, 8), v, np.float32) for v in (10.0, 20.0, 30.0)])
    planes = pack_cfa(mosaic(rgb, "GRBG"))
    # Plane order follows the pattern string: G, R, B, G.
    assert [float(p.mean()) for p in planes] == [20.0, 10.0, 30.0, 20.0]
    np.testing.assert_array_equal(unpack_cfa(planes, (8, 8)), mosaic(rgb, "GRBG"))


def test_uint16_output_is_rounded_and_limited_float_is_not_clipped():
    data = np.full((20, 20), 100, np.uint16)
    data[0, 0] = 101
    work, info = to_working(data)
    work[0, 1, 1] = 70000.4
    work[0, 2, 2] = -3.0
    out = from_working(work, info)
    assert out[1, 1] == 65535 and out[2, 2] == 0
    fdata = np.linspace(0, 1, 400, dtype=np.float32).reshape(20, 20)
    fwork, finfo = to_working(fdata)
    fwork[0, 0, 0] = 1.5
    assert from_working(fwork, finfo)[0, 0] == np.float32(1.5)


@pytest.mark.parametrize(
    "data, words",
    [
        (np.where(np.eye(32) > 0, np.nan, 0.5).astype(np.float32), "NaN"),
        (np.full((32, 32), 7, np.uint16), "constant"),
        (RNG.random((8, 8), dtype=np.float32), "too small"),
        (RNG.random((32, 32, 3), dtype=np.float32), "channel-last"),
        (RNG.random((2, 32, 32, 3), dtype=np.float32), "shape"),
    ],
)
def test_bad_input_gets_a_clear_message(data, words):
    with pytest.raises(InputError, match=words):
        to_working(data)


def test_pattern_on_colour_image_or_unknown_pattern_is_refused():
    with pytest.raises(InputError, match="raw"):
        to_working(RNG.random((3, 32, 32), dtype=np.float32), "RGGB")
    with pytest.raises(InputError, match="Unknown Bayer pattern"):
        to_working(RNG.random((32, 32), dtype=np.float32), "RGBX")


def test_a_resampled_mosaic_is_told_from_a_raw_one():
    from siril_denoise.layout import is_raw_mosaic, mosaic_noise_correlation

    rng = np.random.default_rng(3)
    sky = np.tile(np.array([[1290.0, 1060.0], [1030.0, 1285.0]]), (64, 64))
    raw = sky + rng.normal(0, 30, sky.shape)
    assert mosaic_noise_correlation(raw) < 0.02 and is_raw_mosaic(raw)
    shifted = 0.7 * raw + 0.3 * np.roll(raw, 1, axis=0)  # resampled by 0.3 px, sites mixed
    assert mosaic_noise_correlation(shifted) > 0.2 and not is_raw_mosaic(shifted)
