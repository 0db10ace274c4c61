"""The full-frame passes of apply work in row bands: the result must not depend on the band height."""

import numpy as np
import pytest
from scipy import ndimage

from siril_denoise import noise, protect
from siril_denoise import synthetic as sy
from siril_denoise.noise import Normaliser, estimate_noise_model, estimate_sigma


@pytest.fixture(scope="module")
def frame():
    """A faint mono sub taller than a few small bands, with odd sides, and a blurred 'denoised' version."""
    x = sy.faint_mono((203, 171), seed=4).frames[0].astype(np.float32)[None]
    return x, ndimage.gaussian_filter(x, (0, 1.3, 1.3)).astype(np.float32)


def _with_bands(monkeypatch, rows, fn):
    monkeypatch.setattr(noise, "BAND_ROWS", rows)
    monkeypatch.setattr(protect, "_BAND", rows)
    return fn()


@pytest.mark.parametrize("rows", [6, 32])
def test_noise_model_and_transforms_do_not_depend_on_the_band(frame, monkeypatch, rows):
    x, _ = frame

    def run():
        nm = estimate_noise_model(x)
        out = [nm.a, nm.c, nm.sigma, np.array([estimate_sigma(x[0])])]
        for transform in ("gat", "linear"):
            norm = Normaliser.fit(x, nm, transform)
            z = norm.forward(x)
            out += [norm.offset, z, norm.inverse(0.8 * z, True), norm.inverse(0.8 * z, False)]
        return out

    whole = _with_bands(monkeypatch, 10**6, run)
    banded = _with_bands(monkeypatch, rows, run)
    for w, b in zip(whole, banded):
        np.testing.assert_array_equal(w, b)


@pytest.mark.parametrize("rows", [5, 40])
def test_restore_structure_does_not_depend_on_the_band(frame, monkeypatch, rows):
    x, den = frame
    nm = estimate_noise_model(x)
    for scale in (1.5, 0.7):
        whole, f_whole = _with_bands(monkeypatch, 10**6, lambda: protect.restore_structure(x, den, nm, scale=scale))
        banded, f_banded = _with_bands(monkeypatch, rows, lambda: protect.restore_structure(x, den, nm, scale=scale))
        np.testing.assert_array_equal(whole, banded)
        assert f_whole == f_banded > 0.01  # it did restore something (star cores)


def test_large_frames_fit_the_noise_model_on_spread_rows_without_losing_accuracy(monkeypatch):
    """Above NOISE_MODEL_PIXELS the model is measured on bands of rows; the noise it predicts stays the frame's."""
    rng = np.random.default_rng(0)
    h, w = 1400, 1200
    level = 300.0 + 2000.0 * np.linspace(0.0, 1.0, w)[None, :] * np.linspace(0.2, 1.0, h)[:, None]  # electrons
    x = ((rng.poisson(level) + rng.normal(0.0, 4.0, level.shape)) / 0.8 + 100.0).astype(np.float32)[None]
    monkeypatch.setattr(noise, "NOISE_MODEL_PIXELS", 500_000)
    rows = noise.sample_rows(h, w, noise.NOISE_MODEL_PIXELS)
    assert rows is not None and 0.3e6 < rows.size * w <= 0.6e6 and rows[0] % 2 == 0
    sampled = estimate_noise_model(x)
    monkeypatch.setattr(noise, "NOISE_MODEL_PIXELS", 10**9)
    whole = estimate_noise_model(x)
    for xl in (np.percentile(x, 5), np.percentile(x, 95)):  # predicted noise at the faint and bright end
        assert np.sqrt(sampled.variance(np.full((1, 1, 1), xl))) == pytest.approx(
            np.sqrt(whole.variance(np.full((1, 1, 1), xl))), rel=0.02)
    true_a = 1 / 0.8  # ADU per electron
    assert sampled.a[0] == pytest.approx(true_a, rel=0.05) and whole.a[0] == pytest.approx(true_a, rel=0.05)
