"""Noise estimation, the Poisson–Gaussian model and the Anscombe transform."""

import numpy as np
import pytest

from siril_denoise.noise import (
    NoiseModel,
    Normaliser,
    anscombe,
    estimate_noise_model,
    estimate_sigma,
    inverse_anscombe,
    mad_sigma,
)
from siril_denoise.synthetic import bright_mono, faint_mono


def test_estimate_sigma_ignores_gradients_and_stars():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:256, :256]
    img = 100 + 0.5 * xx + 0.2 * yy + rng.normal(0, 4.0, (256, 256))
    for _ in range(30):
        y0, x0 = rng.integers(10, 246, 2)
        img += 2000 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 3.0)
    assert estimate_sigma(img) == pytest.approx(4.0, rel=0.05)


def test_estimate_sigma_per_channel_along_channel_axis():
    rng = np.random.default_rng(2)
    chw = rng.normal(50.0, 1.0, (3, 64, 80)) * np.array([1.0, 2.0, 5.0])[:, None, None]
    per_plane = [estimate_sigma(p) for p in chw]
    got = estimate_sigma(chw, channel_axis=0)
    assert got.shape == (3,) and got.tolist() == per_plane  # the same numbers as one call per plane
    assert got == pytest.approx([1.0, 2.0, 5.0], rel=0.05)
    assert estimate_sigma(np.moveaxis(chw, 0, -1), channel_axis=-1).tolist() == per_plane
    mask = np.zeros((64, 80), dtype=bool)
    mask[:, :40] = True
    chw[:, :, 40:] *= 10.0  # outside the mask: must not count
    assert estimate_sigma(chw, mask, channel_axis=0) == pytest.approx([1.0, 2.0, 5.0], rel=0.08)
    own = np.stack([mask, ~mask, mask])  # one mask per channel
    assert estimate_sigma(chw, own, channel_axis=0)[1] == pytest.approx(20.0, rel=0.08)
    with pytest.raises(ValueError, match="channel_axis"):
        estimate_sigma(chw)


def test_mad_sigma_is_the_scaled_median_absolute_deviation():
    """The estimator the inline ``1.4826·MAD`` copies computed (layout, pairs, protect): the same numbers."""
    rng = np.random.default_rng(3)
    for v in (rng.normal(3.0, 2.0, 1001), rng.standard_cauchy(500), rng.normal(0, 1, (30, 40)).astype(np.float32)):
        inline = 1.4826 * np.median(np.abs(v - np.median(v)))
        assert mad_sigma(v) == pytest.approx(inline, rel=2e-6)  # the constant's last digits: 1.482602...
    v = rng.normal(0.0, 2.0, 10_000)
    v[:1000] = 1e6  # 10 % hot pixels: the standard deviation becomes 3e5
    assert mad_sigma(v) == pytest.approx(2.0, rel=0.2)
    assert np.isnan(mad_sigma(np.zeros(0)))


@pytest.mark.parametrize("make", [faint_mono, bright_mono])
def test_noise_model_gets_the_background_variance(make):
    s = make((256, 256), 3)
    x = s.frames[0].astype(np.float32)[None]
    nm = estimate_noise_model(x)
    cam = s.camera
    a_true = 1 / cam.gain
    c_true = (cam.read_noise / cam.gain) ** 2 - a_true * cam.pedestal
    sky = float(np.median(s.truth[0]))
    assert nm.signal_dependent
    assert nm.a[0] * sky + nm.c[0] == pytest.approx(a_true * sky + c_true, rel=0.08)


def test_gaussian_noise_is_not_signal_dependent():
    x = np.random.default_rng(2).normal(1000, 5, (1, 200, 200)).astype(np.float32)
    nm = estimate_noise_model(x)
    assert not nm.signal_dependent
    assert Normaliser.fit(x, nm).transform == "linear"


@pytest.mark.parametrize("lam", [0.3, 1.0, 4.0, 20.0, 150.0, 600.0])
def test_inverse_anscombe_is_unbiased_on_poisson_data(lam):
    rng = np.random.default_rng(3)
    d = anscombe(rng.poisson(lam, 2_000_000).astype(np.float64)).mean()
    assert float(inverse_anscombe(np.array([d]))[0]) == pytest.approx(lam, rel=0.01, abs=0.005)


def test_inverse_anscombe_continues_below_zero_without_clipping():
    vals = inverse_anscombe(np.array([0.0, 0.5, 1.0]))
    assert np.all(np.diff(vals) > 0) and vals[0] < 0


def test_gat_stabilises_poisson_gaussian_noise_and_round_trips():
    rng = np.random.default_rng(4)
    levels = np.array([5.0, 50.0, 500.0, 5000.0])  # electrons
    gain, read, ped = 0.5, 3.0, 200.0  # e-/ADU, e-, ADU
    e = rng.poisson(np.repeat(levels, 100_000)) + rng.normal(0, read, levels.size * 100_000)
    x = (e / gain + ped).astype(np.float32).reshape(1, levels.size, -1)
    a, c = 1 / gain, (read / gain) ** 2 - ped / gain
    norm = Normaliser.fit(x, NoiseModel(np.array([a]), np.array([c]), np.array([1.0]), True), "gat")
    z = norm.forward(x)
    assert np.allclose(z[0].std(axis=1), 1.0, atol=0.05)
    back = norm.inverse(z, unbiased=False)
    np.testing.assert_allclose(back, x, rtol=1e-4, atol=0.05)


def test_normaliser_round_trips_through_its_dict():
    x = np.random.default_rng(5).normal(100, 3, (2, 32, 32)).astype(np.float32)
    n = Normaliser.fit(x, estimate_noise_model(x), "linear")
    m = Normaliser.from_dict(n.to_dict())
    np.testing.assert_allclose(m.inverse(m.forward(x)), x, rtol=1e-5)
