"""Give back what the denoiser removed that is not noise.

The part a denoiser removes, ``r = x − x̂``, should be noise: zero mean and
no structure. Around stars it often is not: smoothing in the
variance-stabilised (square-root-like) domain lowers the peaks, and a
network trained briefly on one image blurs them; both take flux away. This
step tests the removed part for significance and puts back its significant,
smooth component:

    rn = r / sqrt(var(x̂))                  (unit variance where r is noise)
    L  = G_s * rn                           (Gaussian low-pass, std σ_L = 1/(2·sqrt(π)·s) for white rn)
    w  = smoothstep(|L| / σ_L; t0, t1)      (0 where L is compatible with noise)
    x̂' = x̂ + w · (G_s * r)

Where the removed part is pure noise, w ≈ 0 and nothing changes; where
signal was removed (star cores, sharp edges), its local mean comes back, so
aperture fluxes are kept. The cost is a little low-frequency noise kept
right at those places, where the signal's own photon noise dominates anyway.

A faint star's loss is never significant in the removed part (a third of
an SNR-5 star is 1.7 σ over its whole aperture), so :func:`restore_sources`
decides where from the signal instead: around the compact sources the
denoised image shows, the smoothed removed part comes back whatever its
significance. The pipeline runs :func:`restore_structure`, then
:func:`restore_background_level`, then :func:`restore_sources`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .measure import background_mask
from .noise import NoiseModel, mad_sigma

__all__ = ["restore_structure", "restore_sources", "restore_background_level"]

#: Rows per band of :func:`restore_structure`'s float64 work space.
_BAND = 256


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def restore_structure(
    x: np.ndarray,
    denoised: np.ndarray,
    noise: NoiseModel,
    *,
    scale: float = 1.5,
    thresholds: tuple[float, float] = (2.0, 3.5),
) -> tuple[np.ndarray, float]:
    """Put back the significant, smooth part of what was removed.

    Args:
        x: the input, float32 ``(C, H, W)`` in data units.
        denoised: the denoiser's output, same shape and units.
        noise: the input's noise model (variance ``a·x + c`` per channel).
        scale: Gaussian low-pass std in pixels.
        thresholds: significance (in σ of the low-passed normalised
            residual) where restoring starts and where it is complete.

    Returns:
        ``(restored, fraction)``: the corrected image (float32, same shape)
        and the fraction of pixels where anything was given back.
    """
    out = denoised.astype(np.float32, copy=True)
    sigma_l = 1.0 / (2.0 * np.sqrt(np.pi) * scale)
    lo, hi = thresholds
    # Row bands with a halo of the Gaussian's radius (scipy: int(4·s + 0.5))
    # give exactly the full-frame filter inside each band, with float64 work
    # space of a band instead of the frame.
    halo = int(4.0 * float(scale) + 0.5)
    height = x.shape[1]
    touched = 0
    for k in range(x.shape[0]):
        floor = max(float(noise.sigma[k]) ** 2, 1e-30) * 0.25
        for y0 in range(0, height, _BAND):
            y1 = min(y0 + _BAND, height)
            a0, a1 = max(y0 - halo, 0), min(y1 + halo, height)
            inner = slice(y0 - a0, y1 - a0)
            r = x[k, a0:a1].astype(np.float64) - denoised[k, a0:a1]
            var = noise.a[k] * denoised[k, a0:a1] + noise.c[k]
            rn = r / np.sqrt(np.maximum(var, floor))
            significance = np.abs(ndimage.gaussian_filter(rn, scale, mode="reflect")[inner]) / sigma_l
            hit = significance > lo  # elsewhere the weight is 0 and nothing changes
            if not hit.any():
                continue
            w = _smoothstep(significance[hit], lo, hi)
            smooth = ndimage.gaussian_filter(r, scale, mode="reflect")[inner]
            out[k, y0:y1][hit] += (w * smooth[hit]).astype(np.float32)
            touched += int(np.count_nonzero(hit))
    return out, touched / x.size


def restore_background_level(x: np.ndarray, denoised: np.ndarray,
                             masks: np.ndarray | None = None) -> tuple[np.ndarray, list[float]]:
    """Give back any constant sky-level change, per channel.

    Over the sky the removed part must average to zero; a briefly trained
    network can shift it by a few hundredths of the noise. The mean of the
    removed part over the sky (pixels chosen by
    :func:`siril_denoise.measure.background_mask`, which does not select
    pixels by their own noisy value) is added back. Its own error is
    σ/sqrt(number of sky pixels), negligible.

    ``masks``: the sky masks of ``x``'s channels, boolean ``(C, H, W)``,
    when the caller has them (they are the quality report's too); by default
    computed here with :func:`~siril_denoise.measure.background_mask`.

    Returns:
        ``(corrected, offsets)``: float32 image and the offset added to each
        channel, in data units.
    """
    out = denoised.astype(np.float32, copy=True)
    offsets = []
    for k in range(x.shape[0]):
        mask = background_mask(x[k]) if masks is None else masks[k]
        if mask.sum() < 100:
            offsets.append(0.0)
            continue
        r = x[k][mask].astype(np.float64) - denoised[k][mask]
        s = mad_sigma(r)
        r = r[np.abs(r - np.median(r)) <= 6 * max(s, 1e-30)]
        off = float(r.mean()) if r.size else 0.0
        out[k] += np.float32(off)
        offsets.append(off)
    return out, offsets


#: Difference-of-Gaussians scales (px) of :func:`restore_sources`' source detection (as ``measure.find_stars``).
_DOG = (1.0, 4.0)


def _fwhm_of(denoised: np.ndarray, inv_sigma: np.ndarray, side: int = 1024) -> float:
    """Median star FWHM (px) on the channel sum of a central crop of at most ``side``² px; 2 px without stars."""
    from .measure import estimate_fwhm, find_stars

    h, w = denoised.shape[1:]
    rows = slice(max((h - side) // 2, 0), max((h - side) // 2, 0) + min(side, h))
    cols = slice(max((w - side) // 2, 0), max((w - side) // 2, 0) + min(side, w))
    lum = np.zeros((rows.stop - rows.start, cols.stop - cols.start), dtype=np.float32)
    for k in range(denoised.shape[0]):
        lum += denoised[k, rows, cols] * inv_sigma[k]
    sx, sy = find_stars(lum)
    if sx.size == 0:
        return 2.0
    return float(np.clip(estimate_fwhm(lum, sx, sy), 1.0, 8.0))


def restore_sources(
    x: np.ndarray,
    denoised: np.ndarray,
    noise: NoiseModel,
    *,
    threshold: float = 3.0,
    fwhm: float | None = None,
    grow: int | None = None,
    scale: float | None = None,
) -> tuple[np.ndarray, float]:
    """Give a source's removed flux back wherever the denoised image shows a compact source.

    :func:`restore_structure` only gives back what is *significant in the
    removed part*. A faint star that one sub measures at an aperture SNR of
    5-10 can lose a third of its flux to a network without the loss being
    significant anywhere (a third of SNR 5 is 1.7 σ over the whole
    aperture), and the real Seestar frame lost 18 % of its stars' flux that
    way (docs/benchmark.md, "Single image: star flux"). This step decides
    *where* from the signal instead: a compact source is where the
    difference of Gaussians (1 px − 4 px) of the denoised image, summed
    over channels in units of each channel's input noise, exceeds
    ``threshold`` times the input's noise of that filter. The denoised image
    is used because its noise is several times lower than the input's, so
    faint stars stand out in it. The mask is grown by ``grow`` px (to cover
    the stars' photometric apertures and their background annuli), softened,
    and there the smooth part of the removed signal is added back:

        x̂' = x̂ + w · (G_scale * (x − x̂))

Run it after :func:`restore_background_level`: a sky offset between input
and result would otherwise be pasted onto the stars with the rest.

    Aperture fluxes of the sources then equal the input's (the input's
    photometric scatter, no more, no less); the sky elsewhere is untouched.

    Args:
        x: the input, float32 ``(C, H, W)`` in data units.
        denoised: the denoiser's output, same shape and units.
        noise: the input's noise model (its per-channel sky ``sigma``).
        threshold: detection level in units of the input's noise of the
            difference of Gaussians of the channel sum (> 0).
        fwhm: the stars' FWHM in px; by default measured on the denoised
            image (its central 1024×1024 at most; 2 px when no star is found).
        grow: dilation of the source mask in px (≥ 0); default
            ``ceil(2·fwhm) + 2`` (at most 16).
        scale: std in px of the Gaussian that smooths what is given back;
            default ``0.6·fwhm`` within [0.7, 2]. Sharper stars need a
            smaller one, or the flux given back spreads out of their
            apertures; a larger one gives back less noise (on the synthetic
            faint sub, 0.7 px cost 0.9 dB of stretched PSNR, 1.5 px 0.1 dB).

    Returns:
        ``(restored, fraction)``: float32 image, same shape, and the
        fraction of pixels in the source mask.
    """
    out = denoised.astype(np.float32, copy=True)
    channels, height = x.shape[0], x.shape[1]
    s1, s2 = _DOG
    inv = (1.0 / np.maximum(np.asarray(noise.sigma, dtype=np.float64), 1e-30)).astype(np.float32)
    if fwhm is None:
        fwhm = _fwhm_of(denoised, inv)
    if grow is None:
        grow = min(int(math.ceil(2.0 * fwhm)) + 2, 16)
    if scale is None:
        scale = float(np.clip(0.6 * fwhm, 0.7, 2.0))
    # Noise of the filter for unit white noise in each of the summed channels.
    dog_noise = math.sqrt(channels) * math.sqrt(
        1 / (4 * math.pi * s1**2) + 1 / (4 * math.pi * s2**2) - 1 / (math.pi * (s1**2 + s2**2)))
    # Each band sees the filters' full support: DoG (4·s2), dilation, the softening and the smoothing.
    halo = int(4 * s2 + 0.5) + int(grow) + 2 * int(4 * max(scale, 1.0) + 0.5) + 2
    inside = 0
    for y0 in range(0, height, _BAND):
        y1 = min(y0 + _BAND, height)
        a0, a1 = max(y0 - halo, 0), min(y1 + halo, height)
        inner = slice(y0 - a0, y1 - a0)
        lum = np.zeros((a1 - a0, x.shape[2]), dtype=np.float32)
        for k in range(channels):
            lum += denoised[k, a0:a1] * inv[k]
        dog = ndimage.gaussian_filter(lum, s1, mode="reflect") - ndimage.gaussian_filter(lum, s2, mode="reflect")
        mask = dog > threshold * dog_noise
        if not mask.any():
            continue
        if grow:
            mask = ndimage.binary_dilation(mask, iterations=int(grow))
        weight = np.clip(1.5 * ndimage.gaussian_filter(mask.astype(np.float32), 1.0, mode="reflect"), 0.0, 1.0)[inner]
        hit = weight > 0
        if not hit.any():
            continue
        inside += int(np.count_nonzero(mask[inner]))
        for k in range(channels):
            r = x[k, a0:a1] - denoised[k, a0:a1]
            smooth = ndimage.gaussian_filter(r, scale, mode="reflect")[inner]
            out[k, y0:y1][hit] += weight[hit] * smooth[hit]
    return out, inside / (height * x.shape[2])
