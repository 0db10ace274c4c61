"""The quality report: did denoising clean the sky without touching the signal?

Measured without ground truth, from the input (``before``) and the result
(``after``) alone, so it runs on users' data; the measurements are
:mod:`siril_denoise.measure`'s, which the benchmark uses against the truth.
What it checks (design.md, "lessons"):

* background noise, per pixel and after 4×4 binning (a denoiser that only
  removes pixel-to-pixel noise leaves blotches the binned figure reveals);
* background level: the sky must not be darkened or lifted (limit 0.05 σ of
  the input noise);
* no new zero or clipped pixels;
* star fluxes by aperture photometry, all stars and the faintest third
  (limits 1 % and 10 %);
* the removed part ``before - after`` should look like noise: zero mean over
  the sky and no correlation with the image's structure.

Images are float arrays in the input's data units; raw CFA frames as their
packed same-colour planes (see :mod:`siril_denoise.measure`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from siril_denoise.measure import (
    aperture_flux,
    aperture_radii,
    background_mask,
    estimate_fwhm,
    find_stars,
    measured_region,
    smooth_background,
)
from siril_denoise.noise import estimate_sigma

__all__ = ["QualityReport", "quality_report"]

# design.md limits
MAX_BACKGROUND_SHIFT_SIGMA = 0.05
MAX_STAR_FLUX_CHANGE = 0.01
MAX_FAINT_STAR_FLUX_CHANGE = 0.10
MIN_NOISE_REDUCTION = 1.2


def _clipped_mean(values: np.ndarray, centre: float, half_width: float) -> float:
    """Mean of the values within ``centre ± half_width`` (NaN if none)."""
    v = values[np.abs(values - centre) <= half_width]
    return float(v.mean(dtype=np.float64)) if v.size else float("nan")


def _bin(image: np.ndarray, k: int) -> np.ndarray:
    h, w = image.shape[0] // k * k, image.shape[1] // k * k
    return image[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))


def _bin_mask(mask: np.ndarray, k: int) -> np.ndarray:
    h, w = mask.shape[0] // k * k, mask.shape[1] // k * k
    return mask[:h, :w].reshape(h // k, k, w // k, k).all(axis=(1, 3))


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------

def _nan_to_none(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_nan_to_none(u) for u in v]
    return v


@dataclass
class QualityReport:
    """What denoising did to an image, measured without ground truth.

    Noise figures are :func:`~siril_denoise.noise.estimate_sigma` over the
    sky pixels, in data units; the binned reductions compare the same on 4×4
    block means (white noise drops 4× there, correlated leftovers do not).
    ``*_sigma`` values are in units of the input's background noise of the
    same channel. Lists hold one value per channel; the scalar fields
    summarise all channels. Star flux ratios are after/before on the sum of
    the channels; None when no usable stars were found.
    """

    channels: int
    saturation: float
    noise_in: list[float]
    noise_out: list[float]
    noise_reduction: list[float]
    noise_reduction_binned: list[float]
    background_shift_sigma: list[float]
    residual_mean_sigma: list[float]
    residual_structure_corr: list[float]
    noise_in_overall: float
    noise_out_overall: float
    noise_reduction_overall: float
    noise_reduction_binned_overall: float
    new_zero_pixels: int
    new_clipped_pixels: int
    n_stars: int
    star_flux_ratio: float | None
    faint_star_flux_ratio: float | None
    background_fraction: float
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no limit was broken."""
        return not self.warnings

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN becomes None)."""
        return {k: _nan_to_none(v) for k, v in asdict(self).items()}

    def as_text(self) -> str:
        """A short multi-line report for Siril's log and the command line."""
        unit = " ADU" if self.saturation > 1.0 else ""
        names = ["R", "G", "B"] if self.channels == 3 else [f"ch{i}" for i in range(self.channels)]
        lines = ["Quality report (input → result)"]
        lines.append(
            f"  Background noise: {self.noise_in_overall:.4g} → {self.noise_out_overall:.4g}{unit} "
            f"({self.noise_reduction_overall:.1f}× lower per pixel, "
            f"{self.noise_reduction_binned_overall:.1f}× after 4×4 binning)"
        )
        if self.channels > 1:
            per = ", ".join(f"{n} {r:.1f}×" for n, r in zip(names, self.noise_reduction))
            lines.append(f"    per channel: {per}")
        shifts = ", ".join(f"{v:+.3f}" for v in self.background_shift_sigma)
        lines.append(f"  Background level change: {shifts} σ (limit ±{MAX_BACKGROUND_SHIFT_SIGMA} σ)")
        if self.star_flux_ratio is None:
            lines.append("  Star flux: no unsaturated stars found to measure")
        else:
            faint = (
                f", faintest third {100 * (self.faint_star_flux_ratio - 1):+.1f} %"
                if self.faint_star_flux_ratio is not None else ""
            )
            lines.append(
                f"  Star flux ({self.n_stars} stars): median {100 * (self.star_flux_ratio - 1):+.1f} %{faint}"
            )
        corr = ", ".join(f"{v:.2f}" for v in self.residual_structure_corr)
        means = ", ".join(f"{v:+.3f}" for v in self.residual_mean_sigma)
        lines.append(f"  Removed part: mean over the sky {means} σ, correlation with the image {corr}")
        lines.append(f"  New zero pixels: {self.new_zero_pixels}; new clipped pixels: {self.new_clipped_pixels}")
        if self.warnings:
            lines.append("  Warnings:")
            lines.extend(f"  - {w}" for w in self.warnings)
        else:
            lines.append("  All checks passed.")
        return "\n".join(lines)


def _ratio(num: float, den: float) -> float:
    """num / den; inf for a zero denominator, NaN when either is undefined."""
    if not (math.isfinite(num) and math.isfinite(den)):
        return float("nan")
    if den == 0:
        return float("inf") if num != 0 else float("nan")
    return num / den


def _rms(values: list[float]) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


def _as_chw(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"expected an (H, W) or (C, H, W) image, got shape {a.shape}")
    return a.astype(np.float32, copy=False)


def _residual_correlation(resid: np.ndarray, structure: np.ndarray, where: np.ndarray) -> float:
    """Pearson correlation of the removed part with the image structure over the ``where`` pixels.

    Measured where the image has structure (off the sky mask): there, noise
    that was removed is uncorrelated with the signal (≈ 0), while flattened
    stars or blurred detail give a clearly positive value (0.5 for a 1.5 px
    blur, ~1 for uniformly dimmed stars).
    """
    r = resid[where].astype(np.float64)
    s = structure[where].astype(np.float64)
    if r.size < 3:
        return 0.0
    r = r - r.mean()
    s = s - s.mean()
    den = math.sqrt(float((r * r).sum()) * float((s * s).sum()))
    return float((r * s).sum() / den) if den > 0 else 0.0


def quality_report(
    before: np.ndarray,
    after: np.ndarray,
    *,
    saturation: float | None = None,
    star_positions: tuple[np.ndarray, np.ndarray] | None = None,
    max_pixels: int = 8_000_000,
    sky_masks: np.ndarray | None = None,
) -> QualityReport:
    """Compare a denoised image with its input.

    Args:
        before: the input, float32 ``(C, H, W)`` (or ``(H, W)``) in data units.
        after: the denoised result, same shape and units.
        saturation: the clipping level in data units; default 65535 when the
            input's maximum exceeds 1, else 1.0.
        star_positions: optional ``(x, y)`` of stars to measure; by default
            stars are detected in ``before`` (sum of channels).
        max_pixels: images larger than this are measured (noise, sky level,
            stars, residual) on a centred crop of this many pixels, which is
            statistically plenty and keeps a 24-megapixel frame to seconds;
            new zero and clipped pixels are always counted over the whole image.
        sky_masks: optional boolean ``(C, H, W)``: the sky mask of each
            channel of ``before``, when the caller has it already (the
            pipeline computes it once for the report and for
            :func:`~siril_denoise.protect.restore_background_level`). Only
            its :func:`measured_region` is read, and there it must equal
            ``background_mask`` of that region of ``before``. By default it
            is computed here.

    Returns:
        A :class:`QualityReport`; its ``warnings`` list every design limit broken.
    """
    b = _as_chw(before)
    a = _as_chw(after)
    if a.shape != b.shape:
        raise ValueError(f"before {b.shape} and after {a.shape} differ in shape")
    if sky_masks is not None:
        sky_masks = np.asarray(sky_masks, dtype=bool).reshape(b.shape)
    if saturation is None:
        saturation = 65535.0 if float(np.nanmax(b)) > 1.0 else 1.0
    c = b.shape[0]
    new_zero = int(np.count_nonzero((a <= 0) & (b > 0)))
    new_clip = int(np.count_nonzero((a >= saturation) & (b < saturation)))

    rows, cols = measured_region(b.shape[1:], max_pixels)
    if (rows.stop - rows.start, cols.stop - cols.start) != b.shape[1:]:
        y0, x0 = rows.start, cols.start
        b = b[:, rows, cols]
        a = a[:, rows, cols]
        if sky_masks is not None:
            sky_masks = sky_masks[:, rows, cols]
        if star_positions is not None:
            px, py = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in star_positions)
            star_positions = (px - x0, py - y0)

    noise_in, noise_out, bin_in, bin_out, shift, res_mean, res_corr, sky_frac = ([] for _ in range(8))
    for ch in range(c):
        bc = b[ch]
        ac = a[ch]
        mask = (background_mask(bc) if sky_masks is None else sky_masks[ch]) & np.isfinite(ac)
        sky_frac.append(float(mask.mean()))
        s_in = estimate_sigma(bc, mask)
        noise_in.append(s_in)
        noise_out.append(estimate_sigma(ac, mask))
        binned_mask = _bin_mask(mask, 4)
        bin_in.append(estimate_sigma(_bin(bc, 4), binned_mask))
        bin_out.append(estimate_sigma(_bin(ac, 4), binned_mask))
        # sky level: means over the same sky pixels, clipped to the same window
        level = float(np.median(bc[mask])) if mask.any() else float("nan")
        half = 5.0 * s_in
        shift.append(_ratio(_clipped_mean(ac[mask], level, half) - _clipped_mean(bc[mask], level, half), s_in))
        resid = bc - ac
        res_mean.append(_ratio(_clipped_mean(resid[mask], 0.0, half), s_in))
        valid = np.isfinite(bc) & np.isfinite(ac)
        structure = ac - smooth_background(ac, mask)
        res_corr.append(_residual_correlation(resid, structure, valid & ~mask))

    red = [_ratio(i, o) for i, o in zip(noise_in, noise_out)]
    red_bin = [_ratio(i, o) for i, o in zip(bin_in, bin_out)]
    noise_in_all = _rms(noise_in)
    noise_out_all = _rms(noise_out)
    red_all = _ratio(noise_in_all, noise_out_all)
    red_bin_all = _ratio(_rms(bin_in), _rms(bin_out))

    # stars, on the sum of the channels
    lum_b = b[0] if c == 1 else b.sum(axis=0)
    lum_a = a[0] if c == 1 else a.sum(axis=0)
    if star_positions is None:
        sx, sy = find_stars(lum_b)
        # drop stars with a pixel near saturation in any channel
        saturated = ndimage.maximum_filter(b.max(axis=0), size=5) >= 0.98 * saturation
        keep = ~saturated[np.round(sy).astype(int), np.round(sx).astype(int)]
        sx, sy = sx[keep], sy[keep]
    else:
        sx, sy = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in star_positions)
    ratio = faint_ratio = None
    n_used = 0
    if sx.size:
        fwhm = estimate_fwhm(lum_b, sx, sy)
        radii = aperture_radii(fwhm)
        fb = aperture_flux(lum_b, sx, sy, *radii)
        fa = aperture_flux(lum_a, sx, sy, *radii)
        good = np.isfinite(fb) & np.isfinite(fa) & (fb > 0)
        n_used = int(good.sum())
        if n_used:
            q = fa[good] / fb[good]
            ratio = float(np.median(q))
            if n_used >= 3:
                order = np.argsort(fb[good])
                faint_ratio = float(np.median(q[order[: max(n_used // 3, 1)]]))

    warnings = _warnings(red_all, shift, new_zero, new_clip, ratio, faint_ratio, c)
    return QualityReport(
        channels=c, saturation=float(saturation),
        noise_in=noise_in, noise_out=noise_out, noise_reduction=red, noise_reduction_binned=red_bin,
        background_shift_sigma=shift, residual_mean_sigma=res_mean, residual_structure_corr=res_corr,
        noise_in_overall=noise_in_all, noise_out_overall=noise_out_all,
        noise_reduction_overall=red_all, noise_reduction_binned_overall=red_bin_all,
        new_zero_pixels=new_zero, new_clipped_pixels=new_clip, n_stars=n_used,
        star_flux_ratio=ratio, faint_star_flux_ratio=faint_ratio,
        background_fraction=float(np.mean(sky_frac)), warnings=warnings,
    )


def _warnings(red, shift, new_zero, new_clip, ratio, faint_ratio, c) -> list[str]:
    names = ["R", "G", "B"] if c == 3 else [f"channel {i}" for i in range(c)]
    out = []
    for i, s in enumerate(shift):
        if abs(s) > MAX_BACKGROUND_SHIFT_SIGMA:
            where = f" ({names[i]})" if c > 1 else ""
            verb = "darkened" if s < 0 else "brightened"
            out.append(
                f"Background {verb} by {abs(s):.2f} σ of the input noise{where} "
                f"(limit {MAX_BACKGROUND_SHIFT_SIGMA} σ): the sky level was not preserved."
            )
    if new_zero:
        out.append(f"{new_zero} pixels became zero or negative that were not before.")
    if new_clip:
        out.append(f"{new_clip} pixels reached saturation that were not saturated before.")
    if ratio is not None and abs(ratio - 1) > MAX_STAR_FLUX_CHANGE:
        out.append(
            f"Star fluxes changed by {100 * (ratio - 1):+.1f} % (median; limit "
            f"±{100 * MAX_STAR_FLUX_CHANGE:.0f} %)."
        )
    if faint_ratio is not None and abs(faint_ratio - 1) > MAX_FAINT_STAR_FLUX_CHANGE:
        out.append(
            f"Faint-star fluxes changed by {100 * (faint_ratio - 1):+.1f} % (median of the faintest "
            f"third; limit ±{100 * MAX_FAINT_STAR_FLUX_CHANGE:.0f} %)."
        )
    if red < MIN_NOISE_REDUCTION:
        out.append(f"Little effect: background noise only {red:.2f}× lower.")
    return out
