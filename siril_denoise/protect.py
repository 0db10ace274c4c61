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
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .measure import background_mask
from .noise import NoiseModel, mad_sigma

__all__ = ["restore_structure", "restore_background_level"]

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
