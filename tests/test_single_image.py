"""The single-image (zero-shot) path's post-processing: star flux kept, noise model of float data."""

from __future__ import annotations

import numpy as np
import pytest

from siril_denoise.layout import to_working
from siril_denoise.measure import aperture_flux, aperture_radii
from siril_denoise.noise import NoiseModel
from siril_denoise.protect import restore_sources, restore_structure

SKY, SIGMA, FWHM = 100.0, 10.0, 2.5


def _faint_field(seed: int = 0, n: int = 144, size: int = 300):
    """Mono sky with ``n`` faint Gaussian stars (aperture SNR ~6-12); returns truth, noisy, star x, y, fluxes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    grid = np.stack(np.meshgrid(np.arange(16, size - 12, 24), np.arange(16, size - 12, 24)), -1).reshape(-1, 2)[:n]
    x = grid[:, 0] + rng.uniform(-0.5, 0.5, len(grid))
    y = grid[:, 1] + rng.uniform(-0.5, 0.5, len(grid))
    r_ap = aperture_radii(FWHM)[0]
    flux = rng.uniform(6, 12, len(grid)) * SIGMA * np.sqrt(np.pi) * r_ap  # SNR 6-12 in the aperture
    s = FWHM / 2.3548
    stars = np.zeros((size, size))
    for xc, yc, f in zip(x, y, flux):
        stars += f / (2 * np.pi * s * s) * np.exp(-((xx - xc) ** 2 + (yy - yc) ** 2) / (2 * s * s))
    truth = SKY + stars
    noisy = truth + rng.normal(0, SIGMA, truth.shape)
    return truth[None].astype(np.float32), noisy[None].astype(np.float32), stars[None], x, y, flux


def _flux_change(out, noisy, x, y, flux) -> float:
    """Median over stars of the aperture flux of (out − input) over the true flux (linear, so noise-free)."""
    d = aperture_flux((out - noisy)[0].astype(np.float64), x, y, *aperture_radii(FWHM))
    return float(np.median(d / flux))


def test_restore_sources_gives_back_faint_star_flux_the_residual_test_misses():
    truth, noisy, stars, x, y, flux = _faint_field()
    nm = NoiseModel(np.zeros(1), np.full(1, SIGMA**2), np.full(1, SIGMA), False)
    # A network that smooths well but takes a third of every faint star, as ZS-N2N did on the Seestar frame.
    rng = np.random.default_rng(1)
    den = (truth - stars.astype(np.float32) / 3 + rng.normal(0, SIGMA / 10, truth.shape)).astype(np.float32)
    d = den
    for scale in (1.5, 0.7):
        d, _ = restore_structure(noisy, d, nm, scale=scale)
    assert _flux_change(d, noisy, x, y, flux) < -0.02  # not significant in the removed part: beyond the 1 % limit
    out, frac = restore_sources(noisy, d, nm)
    assert abs(_flux_change(out, noisy, x, y, flux)) < 0.01
    assert 0 < frac < 0.6
    # the sky away from the stars keeps the network's low noise
    far = np.ones(truth.shape[1:], bool)
    for xc, yc in zip(x, y):
        far[max(int(yc) - 8, 0): int(yc) + 9, max(int(xc) - 8, 0): int(xc) + 9] = False
    assert np.std((out - truth)[0][far]) < 0.2 * SIGMA


def test_restore_sources_leaves_pure_noise_alone():
    rng = np.random.default_rng(2)
    noisy = (SKY + rng.normal(0, SIGMA, (1, 128, 128))).astype(np.float32)
    den = np.full_like(noisy, SKY) + rng.normal(0, 1.0, noisy.shape).astype(np.float32)
    nm = NoiseModel(np.zeros(1), np.full(1, SIGMA**2), np.full(1, SIGMA), False)
    out, frac = restore_sources(noisy, den, nm)
    assert frac < 0.01
    assert np.std(out - SKY) < 1.5


def test_protect_keeps_faint_star_flux_through_the_pipeline():
    from siril_denoise.pipeline import _protect_and_finish

    truth, noisy, stars, x, y, flux = _faint_field(seed=3)
    data = np.clip(noisy[0], 0, 65535).astype(np.uint16)
    work, info = to_working(data, None)
    nm = NoiseModel(np.zeros(1), np.full(1, SIGMA**2), np.full(1, SIGMA), False)
    rng = np.random.default_rng(4)
    den = (truth - stars.astype(np.float32) / 3 + rng.normal(0, SIGMA / 10, truth.shape)).astype(np.float32)
    out, report = _protect_and_finish(work, den, nm, info, 1.0, True)
    assert abs(_flux_change(to_working(out, None)[0], work, x, y, flux)) < 0.01
    assert report.noise_reduction_overall > 3


def test_uint16_and_float32_copies_of_a_frame_are_denoised_alike():
    """The same frame as uint16 ADU and as Siril's float32 (ADU / 65535): same noise model, same result.

    The float copy used to ignore the header's gain (EGAIN) and fit its own
    model, and the fit's ranking of integer levels broke ties differently
    once divided by 65535.
    """
    from siril_denoise import synthetic as sy
    from siril_denoise.pipeline import _noise_and_normaliser, denoise_image

    u16 = sy.faint_mono((96, 96), 0, n_frames=1).frames[0]
    f32 = (u16.astype(np.float32) / np.float32(65535)).astype(np.float32)
    for meta in (None, {"egain": 0.5}):
        (nu, _), (nf, _) = (_noise_and_normaliser(*to_working(d, None), meta) for d in (u16, f32))
        assert nf.a[0] * 65535 == pytest.approx(nu.a[0], rel=1e-4)
        assert nf.c[0] * 65535**2 == pytest.approx(nu.c[0], rel=1e-4)
    assert nu.a[0] == pytest.approx(1 / 0.5)
    runs = {name: denoise_image(d, method="zsn2n", use_gpu=False, max_steps=10, seed=0, meta=meta, threads=1)
            for name, d in (("u16", u16), ("f32", f32))}
    diff = runs["f32"].data.astype(np.float64) * 65535 - runs["u16"].data
    assert np.sqrt(np.mean(diff**2)) < 0.1 * runs["u16"].report.noise_in_overall


def _registered_noise(shape, rng, subs: int = 16) -> np.ndarray:
    """Mean of ``subs`` white-noise frames each shifted by a random sub-pixel offset (bilinear), as a stack's noise."""
    from scipy import ndimage

    return sum(ndimage.shift(rng.normal(size=shape), rng.uniform(-0.5, 0.5, 2), order=1, mode="reflect")
               for _ in range(subs)) / subs


def test_noise_correlation_tells_registered_noise_from_white_noise():
    from siril_denoise.pipeline import CORRELATED_NOISE, noise_correlation

    rng = np.random.default_rng(1)
    assert noise_correlation(rng.normal(size=(1, 256, 256))) < 0.03
    assert noise_correlation(_registered_noise((256, 256), rng)[None]) > CORRELATED_NOISE
    # stars on a white-noise sky are structure, not correlated noise
    truth, noisy, *_ = _faint_field()
    assert noise_correlation(noisy) < 0.05


def test_a_stack_with_correlated_noise_is_denoised_with_a_clear_note():
    from siril_denoise.pipeline import denoise_image

    rng = np.random.default_rng(2)
    img = (0.05 + 0.002 * _registered_noise((96, 96), rng)).astype(np.float32)
    r = denoise_image(img, method="zsn2n", use_gpu=False, max_steps=5, seed=0, threads=1)
    assert any("correlated between neighbouring pixels" in w and "use Noise2Void" in w for w in r.warnings)
    assert r.model_metadata["training"]["noise_correlation"] > 0.15
    white = (0.05 + 0.002 * rng.normal(size=(96, 96))).astype(np.float32)
    r = denoise_image(white, method="zsn2n", use_gpu=False, max_steps=5, seed=0, threads=1)
    assert not any("correlated" in w for w in r.warnings)


def test_the_default_single_image_method_is_the_measured_one_and_the_log_says_why(tmp_path):
    import sys
    from pathlib import Path

    from siril_denoise import usecases
    from siril_denoise.methods import default_single_image_method, single_image_methods

    for is_stack in (None, False, True):
        for cfa in (None, "RGGB"):
            name, why = default_single_image_method(is_stack, cfa)
            assert name in single_image_methods() and why
    assert default_single_image_method(True, None)[0] == "n2v" and "stack" in default_single_image_method(True, None)[1]
    assert "RGGB" in default_single_image_method(False, "RGGB")[1]
    assert usecases.Options().zero_shot == default_single_image_method(False, None)[0]
    sys.path.insert(0, str(Path(__file__).parent))
    from test_usecases import MemoryHost

    host = MemoryHost(tmp_path)
    d = usecases.pick_denoiser(host, usecases.Options(), 3, {"stackcnt": 20}, None)
    assert (d.method, d.model) == ("n2v", None) and "Noise2Void" in host.text()
    d = usecases.pick_denoiser(host, usecases.Options(zero_shot="nb2nb"), 3, {"stackcnt": 20}, None)
    assert d.method == "nb2nb"  # a method the caller chose is kept
    assert usecases.pick_denoiser(host, usecases.Options(), 2, {"stackcnt": 1}, "RGGB").method == "zsn2n"
