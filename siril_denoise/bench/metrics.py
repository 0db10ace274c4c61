"""Scores of one denoised image against the known truth.

Every figure uses the same measurements as the per-result report users see
(:mod:`siril_denoise.measure`, :mod:`siril_denoise.report`): the same noise
estimate, sky mask, aperture photometry, PSNR and display stretch. Arrays are in the engine's
working layout, float ``(C, H, W)`` in data units; raw Bayer frames as their
4 packed same-colour planes (stars are then measured on the sum of the
planes, the 2×2 superpixel).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

from siril_denoise.noise import estimate_noise_model, estimate_sigma
from siril_denoise.measure import (
    aperture_flux,
    aperture_radii,
    background_mask,
    display_stretch,
    estimate_fwhm,
    psnr,
    stretch_params_from,
)
from siril_denoise.report import quality_report

#: Stars scored for flux: aperture signal-to-noise above this (in the input).
MIN_STAR_SNR = 20.0
#: "Faint" stars: SNR between MIN_STAR_SNR and this.
FAINT_STAR_SNR = 50.0


def luminance(work: np.ndarray) -> np.ndarray:
    """Sum of the channels (the superpixel for packed CFA planes), float64 ``(H, W)``."""
    return np.asarray(work, dtype=np.float64).sum(axis=0)


def aperture_snr(flux: np.ndarray, noisy: np.ndarray, radii: tuple[float, float, float], packed: bool) -> np.ndarray:
    """Expected signal-to-noise of aperture fluxes ``flux`` measured on ``noisy``.

    ``flux`` (data units × px) is the clean flux (from a truth or a stack);
    ``noisy`` the frame it would be measured on, working layout. The noise is
    that of the frame's Poisson–Gaussian model
    (:func:`siril_denoise.noise.estimate_noise_model`): shot noise of the star
    plus the sky noise of the aperture and of its background annulus, summed
    over the channels (the superpixel for packed CFA planes).
    """
    noisy = np.asarray(noisy, dtype=np.float32)
    model = estimate_noise_model(noisy, shared_channels=packed)
    a = float(np.mean(model.a))
    sky_var = float(np.sum(estimate_sigma(noisy, channel_axis=0) ** 2))
    r_ap, r_in, r_out = radii
    n_ap = math.pi * r_ap**2
    n_ann = math.pi * (r_out**2 - r_in**2)
    var = max(a, 0.0) * np.maximum(flux, 0.0) + n_ap * (1.0 + n_ap / n_ann) * sky_var
    return flux / np.sqrt(var)


class StarSet:
    """The stars scored in one scene, with their true fluxes and signal-to-noise.

    Built once per scene from the truth and the noisy input (working layout):
    positions are the scene's star list (frame-0 full-resolution pixels,
    halved for packed CFA planes); stars near saturation or the border, and
    those with an aperture SNR under :data:`MIN_STAR_SNR`, are dropped. The
    SNR uses the Poisson–Gaussian noise model of the input
    (:func:`siril_denoise.noise.estimate_noise_model`): shot noise of the
    star plus the sky noise of the aperture and of its background annulus.
    """

    def __init__(self, truth: np.ndarray, noisy: np.ndarray, x: np.ndarray, y: np.ndarray, fwhm: float,
                 saturation: float, packed: bool = False) -> None:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if packed:
            x, y, fwhm = (x - 0.5) / 2.0, (y - 0.5) / 2.0, fwhm / 2.0
        self.fwhm = fwhm
        self.radii = aperture_radii(fwhm)
        lum_t = luminance(truth)
        h, w = lum_t.shape
        inside = (x >= 0) & (y >= 0) & (x <= w - 1) & (y <= h - 1)
        x, y = x[inside], y[inside]
        near_sat = ndimage.maximum_filter(np.asarray(truth).max(axis=0), size=7) >= 0.98 * saturation
        free = ~near_sat[np.round(y).astype(int), np.round(x).astype(int)]
        x, y = x[free], y[free]
        flux = aperture_flux(lum_t, x, y, *self.radii)
        snr = aperture_snr(flux, noisy, self.radii, packed)
        keep = np.isfinite(flux) & (flux > 0) & (snr > MIN_STAR_SNR)
        order = np.argsort(flux[keep])[::-1]  # brightest first
        self.x, self.y = x[keep][order], y[keep][order]
        self.flux_true, self.snr = flux[keep][order], snr[keep][order]

    def __len__(self) -> int:
        return len(self.x)

    def flux_errors(self, work: np.ndarray) -> np.ndarray:
        """Relative aperture-flux error ``(F - F_true) / F_true`` of each star in ``work``."""
        return aperture_flux(luminance(work), self.x, self.y, *self.radii) / self.flux_true - 1.0


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def background_bias(out: np.ndarray, truth: np.ndarray, noisy: np.ndarray) -> float:
    """Sky-level error of ``out`` in units of the input noise (signed; the channel with the largest |bias|).

    Per channel: the mean of ``out − truth`` over the sky pixels of the
    input (:func:`siril_denoise.measure.background_mask`, which excludes
    stars, hot pixels and cosmic rays), divided by the input's noise there.
    """
    worst = 0.0
    for k in range(noisy.shape[0]):
        mask = background_mask(noisy[k])
        sigma = estimate_sigma(noisy[k], mask)
        if not mask.any() or not sigma > 0:
            continue
        b = float(np.mean(out[k][mask].astype(np.float64) - truth[k][mask])) / sigma
        if abs(b) > abs(worst):
            worst = b
    return worst


def sky_error_reduction(out: np.ndarray, truth: np.ndarray, noisy: np.ndarray) -> float:
    """RMS error of the input over that of ``out``, both against the truth, over the input's sky pixels.

    A truth-based noise reduction that no estimator can flatter: smoothing
    filters hide their correlated leftovers from a pixel-scale noise estimate,
    not from this.
    """
    num = den = 0.0
    for k in range(noisy.shape[0]):
        mask = background_mask(noisy[k])
        num += float(np.sum((noisy[k][mask].astype(np.float64) - truth[k][mask]) ** 2))
        den += float(np.sum((out[k][mask].astype(np.float64) - truth[k][mask]) ** 2))
    return math.sqrt(num / den) if den > 0 else float("inf")


def score(out: np.ndarray, truth: np.ndarray, noisy: np.ndarray, stars: StarSet, *,
          saturation: float, data_range: float) -> dict:
    """All truth-based scores of one result (working layout, data units).

    Returns a dict: ``psnr_linear`` (dB, peak ``data_range``),
    ``psnr_stretched`` and ``ssim_stretched`` (after one asinh display
    stretch derived from the truth, the same for every method),
    ``noise_reduction`` and ``noise_reduction_binned`` (input sky noise over
    output sky noise, per pixel and on 4×4 means, from the quality report),
    ``sky_error_reduction`` (see :func:`sky_error_reduction`),
    ``bias_sigma`` (see :func:`background_bias`), ``flux_err_median`` and
    ``flux_err_p90`` (relative star aperture-flux error vs truth: signed
    median and 90th percentile of its magnitude, SNR > 20 stars),
    ``faint_flux_err_median`` (20 < SNR < 50), ``fwhm_ratio`` (median FWHM of
    the 20 brightest scored stars, result over truth), ``new_zero`` and
    ``new_clipped`` pixels, ``n_stars``.
    """
    out = np.asarray(out, dtype=np.float32)
    truth = np.asarray(truth, dtype=np.float32)
    noisy = np.asarray(noisy, dtype=np.float32)
    params = stretch_params_from(truth)
    st_t = display_stretch(truth, **params)
    st_o = display_stretch(out, **params)
    if out.shape[0] > 1:
        ssim = structural_similarity(st_o, st_t, data_range=1.0, channel_axis=0)
    else:
        ssim = structural_similarity(st_o[0], st_t[0], data_range=1.0)
    rep = quality_report(noisy, out, saturation=saturation)
    res = {
        "psnr_linear": psnr(out, truth, data_range),
        "psnr_stretched": psnr(st_o, st_t, 1.0),
        "ssim_stretched": float(ssim),
        "noise_reduction": _finite(rep.noise_reduction_overall),
        "noise_reduction_binned": _finite(rep.noise_reduction_binned_overall),
        "sky_error_reduction": sky_error_reduction(out, truth, noisy),
        "bias_sigma": background_bias(out, truth, noisy),
        "new_zero": rep.new_zero_pixels,
        "new_clipped": rep.new_clipped_pixels,
        "n_stars": len(stars),
        "flux_err_median": None, "flux_err_p90": None, "faint_flux_err_median": None, "fwhm_ratio": None,
    }
    if len(stars):
        err = stars.flux_errors(out)
        ok = np.isfinite(err)
        if ok.any():
            res["flux_err_median"] = float(np.median(err[ok]))
            res["flux_err_p90"] = float(np.percentile(np.abs(err[ok]), 90))
            faint = ok & (stars.snr < FAINT_STAR_SNR)
            if faint.any():
                res["faint_flux_err_median"] = float(np.median(err[faint]))
        f_t = estimate_fwhm(luminance(truth), stars.x, stars.y)
        f_o = estimate_fwhm(luminance(out), stars.x, stars.y)
        res["fwhm_ratio"] = float(f_o / f_t) if f_t > 0 else None
    return res
