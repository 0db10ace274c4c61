"""The measuring toolkit: sky mask, stars, aperture photometry, PSNR and display stretch."""

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from siril_denoise import measure
from siril_denoise import synthetic as sy
from siril_denoise.measure import (
    aperture_flux,
    aperture_radii,
    background_mask,
    display_stretch,
    find_stars,
    psnr,
    stretch_params_from,
)

PACKAGE = Path(measure.__file__).parent


def test_background_mask_excludes_stars_and_keeps_sky_noise_unbiased():
    s = sy.bright_mono(512, seed=1)
    frame, truth = s.frames[0], s.truth[0].astype(np.float64)
    mask = background_mask(frame)
    assert 0.3 < mask.mean() < 0.95
    bright = s.stars.flux_e > np.percentile(s.stars.flux_e, 50)
    inside = (s.stars.x > 2) & (s.stars.x < 509) & (s.stars.y > 2) & (s.stars.y < 509) & bright
    ys, xs = np.round(s.stars.y[inside]).astype(int), np.round(s.stars.x[inside]).astype(int)
    assert not mask[ys, xs].any()
    noise = frame - truth
    # pixels are not chosen by their own noise, so the sky mean is not biased
    # (choosing them by their own value biases it by ~0.02 sigma here)
    assert abs(noise[mask].mean()) < 0.008 * noise[mask].std()
    # the same sky on a [0, 1] float scale gives (nearly) the same mask
    assert (background_mask(frame / 65535.0) == mask).mean() > 0.99


def test_find_stars_finds_real_stars_and_not_noise():
    s = sy.faint_mono(192, seed=2)
    x, y = find_stars(s.frames[0])
    assert len(x) >= 10
    d = np.hypot(x[:, None] - s.stars.x[None], y[:, None] - s.stars.y[None]).min(axis=1)
    assert np.mean(d < 1.0) > 0.9
    flat = np.random.default_rng(0).poisson(100.0, (192, 192)).astype(np.float32)
    assert len(find_stars(flat)[0]) <= 1


def test_aperture_flux_recovers_a_moffat_star():
    rng = np.random.default_rng(0)
    sky = sy.make_sky((64, 64), rng=rng, sky_e=50.0, galaxies_per_megapixel=0, nebula_sigma=0, gradient=0)
    star = sy.Stars(x=np.array([31.4]), y=np.array([30.7]), flux_e=np.array([1e5]), fwhm=np.array([3.0]))
    img = dataclasses.replace(sky, stars=star).render()
    r_ap, beta = 8.0, sky.beta
    alpha = sy.moffat_alpha(3.0, beta)
    enclosed = 1.0 - (1.0 + r_ap**2 / alpha**2) ** (1.0 - beta)
    flux = aperture_flux(img, star.x, star.y, r_ap, 12.0, 18.0)
    assert flux[0] == pytest.approx(1e5 * enclosed, rel=0.01)
    assert np.isnan(aperture_flux(img, [2.0], [2.0], 3.0, 5.0, 8.0)[0])  # annulus off the image


def test_psnr_and_display_stretch():
    truth = np.linspace(0.0, 10.0, 100)
    assert psnr(truth + 1.0, truth, data_range=10.0) == pytest.approx(20.0)
    p = stretch_params_from(truth)
    out = display_stretch(truth, **p)
    assert display_stretch(np.array([p["black"]]), **p)[0] == 0.0 and out[-1] == pytest.approx(1.0)
    assert np.all(np.diff(out) > 0) and out[0] < 0  # below the black point is not clipped
    # faint values are lifted: 1 % of the range shows well above 1 % of the display
    assert display_stretch(np.array([p["black"] + 0.01 * (p["white"] - p["black"])]), **p)[0] > 0.3


def test_sky_mask_with_nan_and_clipped_pixels_matches_the_plain_definition():
    """The faster mask (sorted tile medians, shift dilation) keeps its meaning: NaN and clipped pixels are never sky."""
    s = sy.bright_mono((300, 260), seed=3)
    x = s.frames[0].astype(np.float32)
    x[40:60, 30:90] = np.nan
    x[200, 100:104] = x.max()
    m = background_mask(x)
    assert not m[40:60, 30:90].any() and not m[200, 100:104].any()
    assert 0.3 < m.mean() < 0.95
    seed = np.zeros((50, 50), dtype=bool)
    seed[[0, 10, 25, 49], [3, 49, 25, 0]] = True
    assert np.array_equal(measure._dilate(seed, 3), ndimage.binary_dilation(seed, iterations=3))
    rows = np.random.default_rng(0).random((6, 400)).astype(np.float32)
    counts = np.array([400, 399, 250, 41, 40, 1])
    with_nan = rows.copy()
    with_inf = rows.copy()
    for i, n in enumerate(counts):
        keep = np.random.default_rng(i).permutation(400)[:n]
        drop = np.setdiff1d(np.arange(400), keep)
        with_nan[i, drop], with_inf[i, drop] = np.nan, np.inf
    np.testing.assert_array_equal(measure._sorted_medians(with_inf, counts), np.nanmedian(with_nan, axis=1))


def test_aperture_radii_follow_the_fwhm_with_floors():
    assert aperture_radii(0.5) == (2.0, 4.0, 8.0)  # small stars: the 2 px and 4 px floors
    assert aperture_radii(3.0) == (6.0, 8.0, 14.0)


def _imported_names(path: Path, module: str) -> set[str]:
    """Names ``path`` imports from ``siril_denoise.<module>`` (absolute or relative), '*' for the module itself."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == module:
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and module in {a.name for a in node.names}:
            names.add("*")
        elif isinstance(node, ast.Import) and any(a.name.endswith("." + module) for a in node.names):
            names.add("*")
    return names


def test_processing_and_the_benchmark_measure_with_measure_not_with_the_report():
    """The report sits on top: processing code and the benchmark take their measurements from ``measure``."""
    assert _imported_names(PACKAGE / "measure.py", "report") == set()
    assert _imported_names(PACKAGE / "protect.py", "report") == set()
    assert "background_mask" in _imported_names(PACKAGE / "protect.py", "measure")
    for path in (PACKAGE / "pipeline.py", PACKAGE / "bench" / "metrics.py", PACKAGE / "bench" / "real.py"):
        assert _imported_names(path, "report") <= {"QualityReport", "quality_report"}, path
