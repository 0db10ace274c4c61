"""The camera simulator and synthetic scenes: known truth the benchmark can trust."""

import dataclasses

import numpy as np
import pytest

from siril_denoise import synthetic as sy


def test_flat_field_statistics_match_the_camera():
    cam = sy.Camera(gain=2.0, read_noise=5.0, pedestal=300.0)
    e = np.full((256, 256), 1000.0)
    frame = cam.expose(e, np.random.default_rng(0))
    assert frame.dtype == np.uint16 and frame.shape == e.shape
    x = frame.astype(np.float64)
    # mean: e / gain + pedestal; variance: (shot + read) / gain^2 + quantisation
    assert x.mean() == pytest.approx(1000.0 / 2.0 + 300.0, rel=0.002)
    assert x.var() == pytest.approx((1000.0 + 25.0) / 4.0 + 1.0 / 12.0, rel=0.03)
    np.testing.assert_allclose(cam.truth(e), 800.0)


def test_camera_clips_to_the_16_bit_range():
    cam = sy.Camera(gain=1.0, read_noise=5.0, pedestal=0.0)
    dark = cam.expose(np.zeros((64, 64)), np.random.default_rng(0))
    assert dark.min() == 0 and (dark == 0).mean() > 0.3  # negative read noise is clipped, not wrapped
    bright = cam.expose(np.full((8, 8), 1e6), np.random.default_rng(0))
    assert (bright == 65535).all()


def test_frames_are_repeatable_from_the_seed():
    a, b, c = sy.faint_mono(64, seed=3), sy.faint_mono(64, seed=3), sy.faint_mono(64, seed=4)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.truth, b.truth)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("pattern", sy.BAYER_PATTERNS)
def test_bayer_mosaic_puts_each_colour_where_the_pattern_says(pattern):
    rgb = np.stack([np.full((6, 8), v) for v in (10.0, 20.0, 30.0)])
    plane = sy.mosaic(rgb, pattern)
    value = {"R": 10.0, "G": 20.0, "B": 30.0}
    for r in range(6):
        for c in range(8):
            assert plane[r, c] == value[pattern[(r % 2) * 2 + (c % 2)]]


def test_bayer_session_frames_are_cfa_with_fixed_hot_pixels():
    s = sy.bayer_session(64, seed=1, n_frames=3, pattern="GRBG", hot_pixel_fraction=2e-3)
    assert s.frames.shape == (3, 64, 64) and s.frames.dtype == np.uint16
    assert s.truth.shape == (3, 64, 64) and s.truth_e.shape == (3, 3, 64, 64)
    np.testing.assert_allclose(s.truth[0], s.camera.to_adu(sy.mosaic(s.truth_e[0], "GRBG")), rtol=1e-6)
    hot = s.camera.hot_pixels((64, 64))
    assert 0 < np.count_nonzero(hot) == int(round(2e-3 * 64 * 64))
    np.testing.assert_array_equal(hot, s.camera.hot_pixels((64, 64)))  # same camera, same defects
    where = hot > 1000
    for i in range(3):  # present in every frame, far above the sky
        assert np.all(s.frames[i][where] > s.truth[i][where] + 300)


def test_cosmic_rays_differ_from_frame_to_frame():
    cam = sy.Camera(read_noise=0.0, pedestal=0.0, cosmic_rays=2000.0)
    rng = np.random.default_rng(0)
    hits = [cam.cosmic_ray_hits((128, 128), rng) > 0 for _ in range(2)]
    assert hits[0].any() and hits[1].any() and not np.array_equal(hits[0], hits[1])


def test_faint_preset_has_background_snr_near_two():
    s = sy.faint_mono(128, seed=0)
    cam = s.camera
    sky_e = float(s.sky.sky_e[0])
    sky = s.truth[0] < np.percentile(s.truth[0], 50)  # the faint half: sky, not stars
    noise_e = (s.frames[0][sky] - s.truth[0][sky].astype(np.float64)).std() * cam.gain
    assert sky_e / noise_e == pytest.approx(2.0, abs=0.15)


def test_stars_span_decades_and_some_saturate():
    s = sy.bright_mono(128, seed=0)
    flux = s.stars.flux_e
    assert flux.max() / flux.min() > 1e3
    assert (s.frames[0] == s.camera.adu_max).any()
    assert len(s.stars) == len(s.stars.x) == len(s.stars.fwhm)


def _centroid(img, x, y, r=7):
    ix, iy = int(round(x)), int(round(y))
    cut = img[iy - r: iy + r + 1, ix - r: ix + r + 1]
    yy, xx = np.mgrid[-r: r + 1, -r: r + 1]
    return ix + (cut * xx).sum() / cut.sum(), iy + (cut * yy).sum() / cut.sum()


def test_session_homographies_map_a_star_to_its_true_position():
    rng = np.random.default_rng(5)
    sky = sy.make_sky((48, 48), rng=rng, sky_e=0.0, galaxies_per_megapixel=0, nebula_sigma=0,
                      gradient=0, margin=4)
    star = sy.Stars(x=np.array([23.3]), y=np.array([21.6]), flux_e=np.array([1e5]), fwhm=np.array([3.0]))
    sky = dataclasses.replace(sky, stars=star)
    s = sy.make_session(sky, sy.Camera(), 5, rng=rng, dither=3, subpixel=True)
    assert np.abs(s.shifts[1:]).max() > 0.5 and (s.shifts[1:] % 1 != 0).any()
    for i in range(5):
        fx, fy = _centroid(s.truth_e[i], 23.3 - s.shifts[i, 0], 21.6 - s.shifts[i, 1])
        rx, ry, w = s.homographies[i] @ [fx, fy, 1.0]
        assert (rx / w, ry / w) == pytest.approx((23.3, 21.6), abs=0.03)


def test_integer_dither_shifts_the_sky_exactly():
    rng = np.random.default_rng(2)
    sky = sy.make_sky((64, 64), rng=rng, gradient=0, margin=5)
    s = sy.make_session(sky, sy.Camera(), 3, rng=rng, dither=5, sky_jitter=0,
                        transparency_jitter=0, seeing_jitter=0)
    for i in (1, 2):
        dx, dy = s.shifts[i].astype(int)
        assert (dx, dy) != (0, 0)
        ys, xs = slice(max(0, -dy), 64 - max(0, dy)), slice(max(0, -dx), 64 - max(0, dx))
        ref = s.truth_e[0][ys.start + dy: ys.stop + dy, xs.start + dx: xs.stop + dx]
        np.testing.assert_allclose(s.truth_e[i][ys, xs], ref, rtol=1e-5, atol=1e-3)


def test_session_conditions_vary_within_the_stated_ranges():
    s = sy.faint_mono(64, seed=2, n_frames=8, dither=2)
    assert s.frames.shape == (8, 64, 64)
    assert s.sky_scale[0] == s.transparency[0] == 1.0 and np.all(s.shifts[0] == 0)
    assert np.all(np.abs(s.sky_scale - 1) <= 0.03) and np.all(np.abs(s.transparency - 1) <= 0.03)
    assert np.all(np.abs(s.fwhm / s.fwhm[0] - 1) <= 0.15) and np.ptp(s.fwhm) > 0
    assert np.all(np.abs(s.shifts) <= 2)


def test_rgb_stack_is_a_clean_float_image_in_unit_range():
    s = sy.rgb_stack(64, seed=0)
    img, truth = s.frames[0], s.truth[0]
    assert img.shape == (3, 64, 64) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1 and s.data_range == 1.0
    noise = np.median(np.abs(img - truth)) * 1.4826
    assert 0 < noise < 1e-3
    assert not np.allclose(truth[0], truth[2])  # colour, not three copies


def test_demo_frame_is_noisy_uint16_around_its_truth():
    noisy, truth, stars = sy.demo_frame(size=64, seed=0)
    assert noisy.shape == truth.shape == (64, 64)
    assert noisy.dtype == np.uint16 and truth.dtype == np.float32
    assert len(stars) > 0
    diff = noisy - truth.astype(np.float64)
    sky = truth < np.percentile(truth, 50)
    assert abs(diff[sky].mean()) < 0.2 * diff[sky].std()
