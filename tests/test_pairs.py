"""Session frames → Noise2Noise pairs: geometry, masks, photometry, registration."""

from pathlib import Path

import numpy as np
import pytest
from scipy.special import erf

from siril_denoise import pairs
from siril_denoise.errors import InputError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
M94 = REAL / "seestar-m94-20250410"


# ---------------------------------------------------------------- helpers


def similarity(deg: float, tx: float, ty: float, centre=(0.0, 0.0)) -> np.ndarray:
    """Rotation by ``deg`` about ``centre`` (x, y), then translation (tx, ty)."""
    t = np.deg2rad(deg)
    r = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])
    c = np.array([[1, 0, centre[0]], [0, 1, centre[1]], [0, 0, 1.0]])
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]]) @ c @ r @ np.linalg.inv(c)


def star_field(shape, h_to_ref=np.eye(3), *, n_stars=80, fwhm=2.5, sky=100.0, seed=0, channels=1):
    """Noise-free frame (C, H, W) of pixel-integrated Gaussian stars on a flat sky.

    Star positions are drawn in reference coordinates and placed in this frame
    through ``inv(h_to_ref)``, so frames made with different homographies see
    the same sky exactly.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    ref_xy = np.stack([rng.uniform(-20, w + 20, n_stars), rng.uniform(-20, h + 20, n_stars)], 1)
    flux = 10 ** rng.uniform(2.5, 4.5, n_stars)
    p = np.c_[ref_xy, np.ones(n_stars)] @ np.linalg.inv(h_to_ref).T
    xy = p[:, :2] / p[:, 2:]
    s = np.sqrt(2) * fwhm / 2.3548
    x, y = np.arange(w), np.arange(h)
    img = np.full((h, w), sky)
    for (cx, cy), f in zip(xy, flux):
        ex = (erf((x + 0.5 - cx) / s) - erf((x - 0.5 - cx) / s)) / 2
        ey = (erf((y + 0.5 - cy) / s) - erf((y - 0.5 - cy) / s)) / 2
        img += f * np.outer(ey, ex)
    return np.repeat(img[None], channels, 0).astype(np.float32)


def noisy(frame, sigma, seed):
    rng = np.random.default_rng(seed)
    return (frame + rng.normal(0, sigma, frame.shape)).astype(np.float32)


def pack_cfa(raw: np.ndarray) -> np.ndarray:
    """2×2 CFA blocks → 4 half-resolution planes (C=4, H/2, W/2)."""
    return np.stack([raw[0::2, 0::2], raw[0::2, 1::2], raw[1::2, 0::2], raw[1::2, 1::2]]).astype(np.float32)


# ---------------------------------------------------------------- input checks


def test_single_frame_or_mixed_shapes_point_to_single_image_methods():
    f = np.ones((1, 32, 32), np.float32)
    with pytest.raises(InputError, match="zsn2n"):
        pairs.PairSampler([f], [np.eye(3)])
    with pytest.raises(InputError, match="different shapes"):
        pairs.PairSampler([f, np.ones((1, 32, 40), np.float32)], [np.eye(3)] * 2)
    with pytest.raises(InputError, match="zsn2n"):
        pairs.PairSampler([f, f, f], [np.eye(3)] * 3, indices=[1])


# ---------------------------------------------------------------- geometry


def test_warped_target_matches_input_for_known_homography():
    shape = (160, 160)
    hs = [np.eye(3), similarity(0.15, -6.37, 4.81, centre=(80, 80))]
    frames = [star_field(shape, h, seed=1) for h in hs]
    sampler = pairs.PairSampler(frames, hs)
    for i, j in [(0, 1), (1, 0)]:
        inp, tgt, ok = sampler.pair(i, j, 20, 24, 112)
        assert ok.all()  # interior crop: inside both footprints
        peak = inp.max() - 100
        err = np.abs(tgt - inp).max() / peak
        assert err < 0.02, err  # cubic spline: < 2 % of the brightest star's peak
    # A wrong geometry is caught by the same measure.
    wrong = pairs.PairSampler(frames, [np.eye(3), np.eye(3)])
    inp, tgt, _ = wrong.pair(0, 1, 20, 24, 112)
    assert np.abs(tgt - inp).max() / peak > 0.2


def test_integer_translation_is_an_exact_copy():
    rng = np.random.default_rng(0)
    base = rng.normal(1000, 30, (2, 80, 90)).astype(np.float32)
    shifted = np.zeros_like(base)
    shifted[:, 3:, :85] = base[:, :-3, 5:]  # frame 1 pixel (x, y) = frame 0 (x + 5, y - 3)
    h1 = np.array([[1, 0, 5], [0, 1, -3], [0, 0, 1.0]])
    vals, ok = pairs.warp_crop(base, np.linalg.inv(np.eye(3)) @ h1, 10, 10, 40)
    np.testing.assert_array_equal(vals, shifted[:, 10:50, 10:50])
    assert ok.all()


def test_zero_borders_are_masked():
    shape = (96, 96)
    clean = star_field(shape, seed=2)
    a = noisy(clean, 5, 1)
    b = noisy(clean, 5, 2)
    b[:, :, :20] = 0  # resampled frame: empty left border
    with_hole = b.copy()
    with_hole[:, 40, 50] = 0  # an isolated zero inside stays valid
    valid = pairs.zero_border_mask(with_hole)
    assert not valid[:, :20].any() and valid[:, 20:].all()
    assert pairs.zero_border_mask(a) is None

    sampler = pairs.PairSampler([a, b], [np.eye(3)] * 2)
    margin = 20 + pairs.ZERO_BORDER_MARGIN
    for i, j in sampler.pairs:
        inp, tgt, ok = sampler.pair(i, j, 0, 0, 96)
        assert not ok[:, :margin].any()
        m = pairs.ZERO_BORDER_MARGIN  # masked frames also keep this far from the image edge
        assert ok[m:-m, margin:-m].all()
        assert np.isfinite(tgt).all()
    rng = np.random.default_rng(3)
    inp, tgt, mask = sampler.sample(rng, 32, 16)
    assert (inp[mask > 0] != 0).all() and (tgt[mask > 0] > 50).all()


def test_photometric_normalisation_recovers_scale_and_sky_offset():
    shape = (192, 192)
    clean = star_field(shape, n_stars=120, seed=4)
    a_true, b_true = 1.03, 37.0
    fi = noisy(clean, 3, 10)
    fj = noisy(a_true * clean + b_true, 3, 11)
    sampler = pairs.PairSampler([fi, fj], [np.eye(3)] * 2)
    st = {(s.i, s.j): s for s in sampler.stats}
    assert st[(0, 1)].scale[0] == pytest.approx(a_true, abs=0.005)
    assert st[(0, 1)].offset[0] == pytest.approx(b_true, abs=2.0)
    assert st[(1, 0)].scale[0] == pytest.approx(1 / a_true, abs=0.005)
    # The normalised target keeps the input's own level and star flux.
    inp, tgt, ok = sampler.pair(0, 1, 0, 0, 192)
    assert np.median(tgt - inp) == pytest.approx(0, abs=0.5)
    bright = clean[0] > 1000
    assert tgt[0][bright].sum() / inp[0][bright].sum() == pytest.approx(1.0, abs=0.005)
    d = sampler.pair_stats()[0]
    assert set(d) == {"i", "j", "overlap", "scale", "offset"} and d["overlap"] > 0.9


def test_held_out_frame_is_never_used():
    rng = np.random.default_rng(5)
    # Frame k sits at level 1000·(k + 1): a crop's median tells its frame.
    frames = [rng.normal(1000 * (k + 1), 10, (1, 64, 64)).astype(np.float32) for k in range(4)]
    sampler = pairs.PairSampler(frames, [np.eye(3)] * 4, indices=[0, 1, 3])
    assert all(2 not in p for p in sampler.pairs)
    assert len(sampler.pairs) == 6
    inp, tgt, mask = sampler.sample(np.random.default_rng(0), 16, 64)
    levels = np.round(np.median(inp, axis=(1, 2, 3)) / 1000)
    assert set(levels) == {1, 2, 4}


def test_sample_shapes_and_crop_too_large():
    frames = [noisy(star_field((64, 64), channels=4, seed=6), 5, k) for k in range(3)]
    sampler = pairs.PairSampler(frames, [np.eye(3)] * 3)
    inp, tgt, mask = sampler.sample(np.random.default_rng(1), 24, 5)
    for arr in (inp, tgt, mask):
        assert arr.shape == (5, 4, 24, 24) and arr.dtype == np.float32
    with pytest.raises(InputError, match="smaller crop"):
        sampler.sample(np.random.default_rng(1), 65, 1)


def test_cfa_homography_conversion():
    h_full = similarity(0.12, 13.4, -7.9, centre=(500, 300))
    h_packed = pairs.full_to_packed_homography(h_full)
    # A packed pixel (u, v) is the 2×2 block centred at full-res (2u + .5, 2v + .5).
    uv = np.array([[0.0, 0.0], [100.0, 37.0], [250.5, 400.25]])
    full = pairs._apply(h_full, 2 * uv + 0.5)
    np.testing.assert_allclose(pairs._apply(h_packed, uv), (full - 0.5) / 2, atol=1e-9)
    np.testing.assert_allclose(pairs.packed_to_full_homography(h_packed), h_full, atol=1e-12)
    # An even full-res shift is a whole packed-pixel shift.
    even = np.array([[1, 0, 6], [0, 1, -4], [0, 0, 1.0]])
    np.testing.assert_allclose(pairs.full_to_packed_homography(even)[:2, 2], [3, -2], atol=1e-12)


# ---------------------------------------------------------------- registration


def test_register_recovers_sub_pixel_shift_and_rotation():
    shape = (200, 220)
    hs = [similarity(0.0, 7.3, -4.6), np.eye(3), similarity(0.15, -12.25, 3.7, centre=(110, 100))]
    frames = [noisy(star_field(shape, h, seed=7), 5, k) for k, h in enumerate(hs)]
    found = pairs.register(frames)  # reference: the middle frame
    corners = np.array([[0, 0], [219, 0], [0, 199], [219, 199.0]])
    for h, e in zip(hs, found):
        err = np.abs(pairs._apply(h, corners) - pairs._apply(e, corners)).max()
        assert err < 0.1, err
    np.testing.assert_array_equal(found[1], np.eye(3))


def test_register_falls_back_to_phase_correlation_without_stars():
    yy, xx = np.mgrid[0:128, 0:128]
    # Smooth nebulosity, no stars; frame 1 sees it shifted by (+4.5, -2.25) px.
    def sky(dx, dy):
        x, y = xx - dx, yy - dy
        return 500 + 300 * np.exp(-((x - 60) ** 2 + (y - 70) ** 2) / 400) + 200 * np.exp(-((x - 90) ** 2 + (y - 30) ** 2) / 150)
    f0 = noisy(sky(0, 0)[None], 2, 0)
    f1 = noisy(sky(4.5, -2.25)[None], 2, 1)
    h = pairs.register([f0, f1], ref=0)[1]
    # Frame 1 pixel (x, y) shows the sky at frame 0's (x - 4.5, y + 2.25).
    np.testing.assert_allclose(h[:2, 2], [-4.5, 2.25], atol=0.15)

    pure_noise = noisy(np.full((1, 128, 128), 500.0), 2, 9)
    with pytest.raises(InputError, match="Frame 1 could not be registered"):
        pairs.register([f0, pure_noise], ref=0)


# ---------------------------------------------------------------- real frames


@pytest.mark.skipif(not M94.is_dir(), reason="real Seestar M94 frames not present")
def test_real_seestar_frames_register_and_pair_up():
    from astropy.io import fits

    files = sorted(M94.glob("Light_*.fit"))
    assert len(files) == 11
    frames = [pack_cfa(fits.getdata(f).astype(np.float32)) for f in files]
    hs = pairs.register(frames)  # packed geometry: 4 × 960 × 540
    for h in hs:
        rot = np.degrees(np.arctan2(h[1, 0], h[0, 0]))
        assert abs(rot) < 0.2 and np.abs(h[:2, 2]).max() < 40  # packed px
    sampler = pairs.PairSampler(frames, hs)
    assert min(s.overlap for s in sampler.stats) > 0.8

    ref, size, y0, x0 = 5, 384, 288, 78

    def star_peak_corr(s, j):
        inp, tgt, ok = s.pair(ref, j, y0, x0, size)
        lum_i, lum_j = inp.sum(0), tgt.sum(0)
        from scipy import ndimage
        peaks = (lum_i == ndimage.maximum_filter(lum_i, 5)) & ok
        top = np.argsort(lum_i[peaks])[-30:]
        return np.corrcoef(lum_i[peaks][top], lum_j[peaks][top])[0, 1]

    for j in (0, 1, 10):  # the two farthest frames and a near one
        assert star_peak_corr(sampler, j) > 0.9
    # Without registration the same stars do not line up.
    unregistered = pairs.PairSampler(frames, [np.eye(3)] * 11, indices=[1, 5])
    assert star_peak_corr(unregistered, 1) < 0.5


def test_mean_of_several_targets_keeps_the_signal_and_lowers_the_noise():
    """``targets=K`` averages K partner frames into one target: same expectation (the clean crop),
    noise variance about K times lower, never frame i itself."""
    shape, sigma = (96, 96), 5.0
    clean = star_field(shape, n_stars=0, sky=100.0)  # flat sky: the flux ratios' own noise stays out
    frames = [noisy(clean, sigma, seed=s) for s in range(6)]
    s = pairs.PairSampler(frames, [np.eye(3)] * 6)
    for k, (lo, hi) in ((1, (0.9, 1.1)), (4, (0.2, 0.3))):
        inp, tgt, mask = s.sample(np.random.default_rng(0), 32, 16, targets=k)
        assert mask.min() == 1.0  # identity homographies: every pixel valid
        var_t = np.var(tgt - inp) - sigma**2  # Var(t − x) = Var(t) + σ² (independent noise)
        assert lo < var_t / sigma**2 < hi, (k, var_t / sigma**2)
        assert abs(float(np.mean(tgt - inp))) < 0.2  # same level: no bias


def test_n2n_averages_targets_for_mono_but_not_for_packed_cfa_frames():
    """The registry's n2n options: mean targets on mono/RGB frames, one target each on packed raw CFA
    planes (measured worse there: half-pixel shifts of the planes make warped stars inexact)."""
    from siril_denoise.methods import METHODS, TrainingData, n2n
    from siril_denoise.noise import NoiseModel, Normaliser

    rng = np.random.default_rng(5)
    frames = [rng.normal(1000, 10, (4, 48, 48)).astype(np.float32) for _ in range(4)]
    nm = NoiseModel(np.zeros(4), np.full(4, 100.0), np.full(4, 10.0), True)
    norm = Normaliser.fit(frames[0], nm)
    options = METHODS["n2n"].method_options
    assert options["targets"] > 1
    assert n2n.build(TrainingData(frames, norm, [np.eye(3)] * 4, options=options)).targets == options["targets"]
    assert n2n.build(TrainingData(frames, norm, [np.eye(3)] * 4, options=options, cfa="RGGB")).targets == 1
