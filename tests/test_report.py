"""The quality report: the checks a user relies on to trust (or refuse) a result."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from siril_denoise import synthetic as sy
from siril_denoise.measure import background_mask, measured_region
from siril_denoise.report import quality_report

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture(scope="module")
def faint():
    """A faint mono sub (uint16 as float32), its truth, and its star layer alone."""
    s = sy.faint_mono(192, seed=0)
    no_stars = dataclasses.replace(s.sky, stars=sy.Stars(*(np.zeros(0),) * 4))
    stars_only = s.truth[0] - s.camera.truth(no_stars.render())
    return s.frames[0].astype(np.float32), s.truth[0], stars_only


def test_pair_with_known_noise_reduction_and_no_bias(faint):
    before, truth, _ = faint
    after = truth + 0.25 * (before - truth)  # a denoiser that leaves a quarter of the noise
    r = quality_report(before, after)
    assert r.noise_reduction_overall == pytest.approx(4.0, rel=0.05)
    assert r.noise_reduction_binned_overall == pytest.approx(4.0, rel=0.15)
    assert abs(r.background_shift_sigma[0]) < 0.03
    assert r.star_flux_ratio == pytest.approx(1.0, abs=0.01)
    assert r.faint_star_flux_ratio == pytest.approx(1.0, abs=0.05)
    assert r.n_stars >= 10
    assert abs(r.residual_structure_corr[0]) < 0.15
    assert r.warnings == [] and r.ok


def test_darkened_result_is_flagged(faint):
    before, truth, _ = faint
    sigma = quality_report(before, truth).noise_in[0]
    r = quality_report(before, truth - 0.2 * sigma)
    assert r.background_shift_sigma[0] == pytest.approx(-0.2, abs=0.04)
    assert any("darkened" in w for w in r.warnings)


def test_new_zero_and_clipped_pixels_are_counted_and_flagged(faint):
    before, truth, _ = faint
    after = truth.copy()
    after[10, 10:15] = 0.0
    after[100, 20:23] = 65535.0
    r = quality_report(before, after)
    assert r.new_zero_pixels == 5
    assert r.new_clipped_pixels >= 3  # truth may itself reach saturation where the noisy frame did not
    assert any("became zero" in w for w in r.warnings)
    assert any("saturation" in w for w in r.warnings)


def test_star_flux_change_detects_a_twenty_percent_dimming(faint):
    before, truth, stars_only = faint
    r = quality_report(before, truth - 0.2 * stars_only)
    assert r.star_flux_ratio == pytest.approx(0.8, abs=0.02)
    assert r.faint_star_flux_ratio == pytest.approx(0.8, abs=0.06)
    assert r.residual_structure_corr[0] > 0.5  # the removed part looks like the stars
    assert any("Star fluxes changed by -2" in w for w in r.warnings)
    assert not any("Background" in w for w in r.warnings)


def test_doing_nothing_is_reported_as_little_effect(faint):
    before, _, _ = faint
    r = quality_report(before, before.copy())
    assert r.noise_reduction_overall == pytest.approx(1.0)
    assert r.background_shift_sigma == [0.0] and r.star_flux_ratio == 1.0
    assert [w for w in r.warnings if "Little effect" in w]


def test_blur_shows_in_the_binned_noise_and_star_flux(faint):
    from scipy import ndimage

    before, _, _ = faint
    r = quality_report(before, ndimage.gaussian_filter(before, 1.5))
    # pixel-to-pixel noise almost gone, but blotches remain at a coarser scale
    assert r.noise_reduction_overall > 10 * r.noise_reduction_binned_overall / 2
    assert r.star_flux_ratio < 0.99


def test_colour_float_image_gets_one_figure_per_channel():
    s = sy.rgb_stack(96, seed=1)
    before, truth = s.frames[0], s.truth[0]
    r = quality_report(before, truth + 0.5 * (before - truth))
    assert r.channels == 3 and r.saturation == 1.0
    assert len(r.noise_in) == len(r.background_shift_sigma) == 3
    assert r.noise_reduction == pytest.approx([2.0, 2.0, 2.0], rel=0.08)
    assert "per channel: R" in r.as_text()


def test_report_reads_as_text_and_serialises(faint):
    before, truth, _ = faint
    r = quality_report(before, truth - 2.0)
    text = r.as_text()
    assert "Background noise" in text and "Star flux" in text and "Warnings" in text
    d = json.loads(json.dumps(r.to_dict()))
    assert d["warnings"] == r.warnings and d["n_stars"] == r.n_stars


def test_large_images_are_measured_on_a_crop_but_counted_whole():
    rng = np.random.default_rng(0)
    before = rng.normal(1000.0, 10.0, (400, 400)).astype(np.float32)
    after = np.full_like(before, 1000.0)
    after[0, 0] = 0.0  # a corner outside the measured crop
    r = quality_report(before, after, max_pixels=40_000)
    assert r.new_zero_pixels == 1
    assert r.noise_in_overall == pytest.approx(10.0, rel=0.05)


@pytest.mark.skipif(not (REAL / "seestar-m94-20250410").is_dir(), reason="real frames not present")
def test_real_frame_flags_nl_bayes_star_loss():
    from astropy.io import fits

    d = REAL / "seestar-m94-20250410"
    raw = fits.getdata(d / "Light_M 94_10.0s_IRCUT_20250409-225627.fit").astype(np.float32)
    den = fits.getdata(d / "siril-denoise" / "ref-225627_siril-denoise.fits").astype(np.float32)

    def planes(x):  # CFA -> four same-colour planes, as the engine works on them
        return np.stack([x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]])

    r = quality_report(planes(raw), planes(den))
    assert r.noise_reduction_binned_overall > 5  # it does clean the sky...
    assert r.star_flux_ratio < 0.9 and r.faint_star_flux_ratio < r.star_flux_ratio  # ...at the stars' cost
    assert any("Faint-star" in w for w in r.warnings)


def test_shared_sky_masks_give_the_same_report(faint):
    """The pipeline computes the sky masks once for the background restore and the report."""
    from siril_denoise.pipeline import sky_masks

    before, truth, _ = faint
    after = truth + 0.3 * (before - truth)
    b = before[None]
    assert quality_report(b, after[None], sky_masks=sky_masks(b)) == quality_report(b, after[None])
    # above max_pixels only the measured centre is read, and it matches a mask computed there
    big = np.tile(b, (1, 2, 2))
    big_after = np.tile(after[None], (1, 2, 2))
    masks = np.zeros(big.shape, dtype=bool)
    rows, cols = measured_region(big.shape[1:], 40_000)
    masks[0, rows, cols] = background_mask(big[0, rows, cols])
    assert (quality_report(big, big_after, max_pixels=40_000, sky_masks=masks)
            == quality_report(big, big_after, max_pixels=40_000))
