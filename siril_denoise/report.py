"""The quality report: did denoising clean the sky without touching the signal?

Measured without ground truth, from the input (``before``) and the result
(``after``) alone, so it runs on users' data; the benchmark uses the same
functions against the truth. What it checks (design.md, "lessons"):

* background noise, per pixel and after 4×4 binning (a denoiser that only
  removes pixel-to-pixel noise leaves blotches the binned figure reveals);
* background level: the sky must not be darkened or lifted (limit 0.05 σ of
  the input noise);
* no new zero or clipped pixels;
* star fluxes by aperture photometry, all stars and the faintest third
  (limits 1 % and 10 %);
* the removed part ``before - after`` should look like noise: zero mean over
  the sky and no correlation with the image's structure.

All images are float arrays in the input's data units (ADU for 16-bit data,
[0, 1] for float data). Pass raw CFA frames as their packed same-colour
planes (2×2 Bayer blocks → 4 channels), so that neighbouring pixels share a
colour. Pixel coordinates are numpy's: ``x`` column, ``y`` row, pixel
centres at integers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from siril_denoise.noise import estimate_sigma

__all__ = [
    "QualityReport",
    "quality_report",
    "measured_region",
    "background_mask",
    "find_stars",
    "aperture_flux",
    "psnr",
    "display_stretch",
    "stretch_params_from",
]

# design.md limits
MAX_BACKGROUND_SHIFT_SIGMA = 0.05
MAX_STAR_FLUX_CHANGE = 0.01
MAX_FAINT_STAR_FLUX_CHANGE = 0.10
MIN_NOISE_REDUCTION = 1.2


# --------------------------------------------------------------------------
# Background
# --------------------------------------------------------------------------

def _interp_matrix(n_out: int, n_grid: int, block: int) -> np.ndarray:
    """Linear interpolation weights ``(n_out, n_grid)`` from tile centres to pixels (edges held)."""
    pos = np.clip((np.arange(n_out) - (block - 1) / 2.0) / block, 0.0, n_grid - 1)
    lo = np.minimum(np.floor(pos).astype(int), max(n_grid - 2, 0))
    frac = pos - lo
    m = np.zeros((n_out, n_grid), dtype=np.float32)
    m[np.arange(n_out), lo] = 1.0 - frac
    if n_grid > 1:
        m[np.arange(n_out), lo + 1] += frac
    return m


def _sorted_medians(rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Median of the first ``counts[i]`` values of each row once sorted (the rest are +inf).

    Equals ``np.nanmedian`` of rows whose invalid entries are NaN, in one
    vectorised sort instead of a Python loop over rows.
    """
    s = np.sort(rows, axis=1)
    i = np.arange(s.shape[0])
    return (s[i, (counts - 1) // 2] + s[i, counts // 2]) / s.dtype.type(2)


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_dilation(mask, iterations=...)`` with its default cross, by array shifts (faster)."""
    out = mask
    for _ in range(iterations):
        m, out = out, out.copy()
        out[1:] |= m[:-1]
        out[:-1] |= m[1:]
        out[:, 1:] |= m[:, :-1]
        out[:, :-1] |= m[:, 1:]
    return out


def _checkerboard(shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``(H, W)``, True where ``row + column`` is even."""
    black = np.zeros(shape, dtype=bool)
    black[0::2, 0::2] = True
    black[1::2, 1::2] = True
    return black


def _smooth_background(image: np.ndarray, valid: np.ndarray, block: int | None = None) -> np.ndarray:
    """Large-scale background, float32 ``(H, W)``.

    Medians of ``block``×``block`` tiles over the ``valid`` pixels (a tile
    with under a tenth valid takes the median of the others), a 3×3 median
    over tiles, then bilinear interpolation between tile centres.
    """
    h, w = image.shape
    if block is None:
        block = int(np.clip(min(h, w) // 8, 16, 128))
    nby, nbx = -(-h // block), -(-w // block)
    # Invalid pixels become +inf: after sorting each tile they come last, and
    # the first ``count`` values are the valid ones in order.
    padded = np.full((nby * block, nbx * block), np.inf, dtype=np.float32)
    padded[:h, :w] = np.where(valid & np.isfinite(image), image, np.float32(np.inf))
    tiles = padded.reshape(nby, block, nbx, block).transpose(0, 2, 1, 3).reshape(nby, nbx, -1)
    del padded
    counts = np.isfinite(tiles).sum(axis=2)
    grid = np.full((nby, nbx), np.nan)
    ok = counts >= max(block * block // 10, 1)
    if ok.any():
        grid[ok] = _sorted_medians(tiles[ok], counts[ok])
        fill = np.nanmedian(grid)
    else:
        fill = float(np.median(image[np.isfinite(image)])) if np.isfinite(image).any() else 0.0
    del tiles
    grid = np.where(np.isfinite(grid), grid, fill)
    grid = ndimage.median_filter(grid, size=3, mode="nearest").astype(np.float32)
    return _interp_matrix(h, nby, block) @ grid @ _interp_matrix(w, nbx, block).T


def _gaussian_noise_factor(s: float) -> float:
    """Std of white unit noise after a 2-D Gaussian filter of width ``s`` px."""
    return 1.0 / (2.0 * math.sqrt(math.pi) * s)


def _structure(resid: np.ndarray, use: np.ndarray, den: np.ndarray, threshold: float, grow: int) -> np.ndarray:
    """Where the residual, smoothed over 1.5 px using only the ``use`` pixels, exceeds ``threshold``; grown.

    ``den`` is the same smoothing of ``use`` itself (``gaussian_filter(use, 1.5)``),
    passed in because it does not change between calls.
    """
    num = ndimage.gaussian_filter(np.where(use, resid, np.float32(0)), 1.5)
    found = num > threshold * np.maximum(den, 1e-6)
    return _dilate(found, grow) if grow > 0 else found


def background_mask(image2d: np.ndarray, *, nsigma: float = 3.0, grow: int = 3) -> np.ndarray:
    """Boolean ``(H, W)`` mask of sky pixels.

    Excluded: stars and bright structure (where the image, smoothed over
    1.5 px, rises ``nsigma`` times the noise of that smoothing above the
    large-scale background), grown by ``grow`` px; isolated outliers beyond
    5 σ (hot pixels, cosmic rays); non-finite pixels; pixels at the image's
    maximum (clipped). Works on uint16 and float data of any scale.

    Whether a pixel is sky is decided from the pixels of the *other* colour
    of a checkerboard, never from its own value, so the noise of the kept
    pixels stays zero-mean: a mean over the mask is an unbiased sky level
    (selecting pixels by their own noisy value would bias it by a few
    hundredths of σ, the size of the limit the report checks). If fewer than
    2 % of the pixels would remain, the faintest 30 % (smoothed) are returned.
    """
    x = np.asarray(image2d, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"background_mask expects a 2-D image, got shape {x.shape}")
    finite = np.isfinite(x)
    if not finite.any():
        return finite
    all_finite = bool(finite.all())
    top = np.max(x) if all_finite else np.nanmax(np.where(finite, x, -np.inf))
    base = finite & (x < top)
    sigma = estimate_sigma(x if all_finite else np.where(finite, x, np.nanmedian(x[finite])))
    if not np.isfinite(sigma) or sigma <= 0:
        return base
    black = _checkerboard(x.shape)
    # the smoothing uses half the pixels: its noise is sqrt(2) higher
    threshold = nsigma * sigma * _gaussian_noise_factor(1.5) * math.sqrt(2.0)
    use_black, use_white = base & black, base & ~black
    den_black = ndimage.gaussian_filter(use_black.astype(np.float32), 1.5)
    den_white = ndimage.gaussian_filter(use_white.astype(np.float32), 1.5)
    mask = base
    for _ in range(2):
        bkg = _smooth_background(x, mask)
        resid = np.where(finite, x - bkg, np.float32(0))
        del bkg
        from_black = _structure(resid, use_black, den_black, threshold, grow)
        from_white = _structure(resid, use_white, den_white, threshold, grow)
        structure = np.where(black, from_white, from_black)
        del from_black, from_white
        mask = base & ~structure & (np.abs(resid) < 5.0 * sigma)
    if mask.sum() < max(100, 0.02 * x.size):
        smooth = ndimage.gaussian_filter(resid, 1.5)
        mask = base & (smooth <= np.percentile(smooth[base], 30))
    return mask


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
# Stars
# --------------------------------------------------------------------------

def find_stars(
    image2d: np.ndarray,
    *,
    nsigma: float = 8.0,
    max_stars: int = 500,
    border: int = 10,
    exclude_above: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect point sources; returns ``(x, y)`` float arrays, brightest first.

    A star is a local maximum (7×7) of a difference of Gaussians (1 px minus
    4 px, which keeps point sources and drops the sky and smooth nebulosity)
    that stands ``nsigma`` times the noise of that filter above zero. The
    position is the centroid of the filtered image around the peak. Sources
    within ``border`` px of an edge, and those with a pixel at or above
    ``exclude_above`` within 2 px of the peak (saturated), are dropped.
    """
    x = np.asarray(image2d, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"find_stars expects a 2-D image, got shape {x.shape}")
    finite = np.isfinite(x)
    fill = float(np.median(x[finite])) if finite.any() else 0.0
    x = np.where(finite, x, fill)
    sigma = estimate_sigma(x)
    empty = (np.zeros(0), np.zeros(0))
    if not np.isfinite(sigma) or sigma <= 0:
        return empty
    s1, s2 = 1.0, 4.0
    dog = ndimage.gaussian_filter(x, s1) - ndimage.gaussian_filter(x, s2)
    dog_noise = sigma * math.sqrt(
        1 / (4 * math.pi * s1**2) + 1 / (4 * math.pi * s2**2) - 1 / (math.pi * (s1**2 + s2**2))
    )
    peaks = (dog == ndimage.maximum_filter(dog, size=7)) & (dog > nsigma * dog_noise)
    h, w = x.shape
    b = max(int(border), 2)
    peaks[:b] = peaks[-b:] = False
    peaks[:, :b] = peaks[:, -b:] = False
    py, px = np.nonzero(peaks)
    if exclude_above is not None and py.size:
        local_max = ndimage.maximum_filter(x, size=5)[py, px]
        keep = local_max < exclude_above
        py, px = py[keep], px[keep]
    order = np.argsort(dog[py, px])[::-1][:max_stars]
    py, px = py[order], px[order]
    # centroid of the positive filtered image in a 5×5 window
    offs = np.arange(-2, 3)
    wy = py[:, None, None] + offs[None, :, None]
    wx = px[:, None, None] + offs[None, None, :]
    win = np.clip(dog[wy, wx], 0.0, None)
    tot = win.sum(axis=(1, 2))
    cy = py + (win * offs[None, :, None]).sum(axis=(1, 2)) / tot
    cx = px + (win * offs[None, None, :]).sum(axis=(1, 2)) / tot
    return cx.astype(np.float64), cy.astype(np.float64)


def aperture_flux(
    image2d: np.ndarray, x: np.ndarray, y: np.ndarray, r_ap: float, r_in: float, r_out: float
) -> np.ndarray:
    """Background-subtracted aperture fluxes, in data units × pixels.

    For each ``(x, y)``: the sum of the pixels whose centres lie within
    ``r_ap`` px, minus their count times the local background, the mean of
    the annulus ``r_in <= r <= r_out``. The estimate is linear in the image,
    so the flux change a denoiser causes is exactly the photometry of what it
    removed, whatever the noise level (a clipped or median background would
    treat a noisy input and a clean output differently). NaN where the
    annulus leaves the image or any pixel in it is non-finite. Returns
    float64 ``(N,)``.
    """
    img = np.asarray(image2d)
    xs = np.atleast_1d(np.asarray(x, dtype=np.float64))
    ys = np.atleast_1d(np.asarray(y, dtype=np.float64))
    h, w = img.shape
    r = int(math.ceil(r_out))
    offs = np.arange(-r, r + 1)
    out = np.full(xs.shape, np.nan)
    for i, (xc, yc) in enumerate(zip(xs, ys)):
        ix, iy = int(round(xc)), int(round(yc))
        if ix - r < 0 or iy - r < 0 or ix + r >= w or iy + r >= h:
            continue
        cut = img[iy - r: iy + r + 1, ix - r: ix + r + 1].astype(np.float64)
        d2 = (offs[:, None] + iy - yc) ** 2 + (offs[None, :] + ix - xc) ** 2
        ap = d2 <= r_ap**2
        ann = (d2 >= r_in**2) & (d2 <= r_out**2)
        if not np.isfinite(cut[ap | ann]).all():
            continue
        out[i] = cut[ap].sum() - ap.sum() * cut[ann].mean()
    return out


def estimate_fwhm(image: np.ndarray, x: np.ndarray, y: np.ndarray, n: int = 20) -> float:
    """Median FWHM (px) of up to ``n`` stars, from the area above half their peak."""
    h, w = image.shape
    r = 8
    widths = []
    for xc, yc in zip(x[:n], y[:n]):
        ix, iy = int(round(xc)), int(round(yc))
        if ix - r < 0 or iy - r < 0 or ix + r >= w or iy + r >= h:
            continue
        cut = image[iy - r: iy + r + 1, ix - r: ix + r + 1]
        edge = np.concatenate([cut[0], cut[-1], cut[:, 0], cut[:, -1]])
        c = cut - np.median(edge)
        peak = c[r - 1: r + 2, r - 1: r + 2].max()
        if peak <= 0:
            continue
        lab, _ = ndimage.label(c >= peak / 2)
        area = (lab == lab[r, r]).sum() if lab[r, r] else (c >= peak / 2).sum()
        widths.append(2.0 * math.sqrt(area / math.pi))
    return float(np.median(widths)) if widths else 3.0


# --------------------------------------------------------------------------
# Scores against a known truth (benchmark)
# --------------------------------------------------------------------------

def psnr(x: np.ndarray, truth: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range² / mean((x - truth)²))``."""
    err = np.mean((np.asarray(x, dtype=np.float64) - np.asarray(truth, dtype=np.float64)) ** 2)
    return float("inf") if err == 0 else float(10.0 * np.log10(data_range**2 / err))


def stretch_params_from(truth: np.ndarray) -> dict[str, float]:
    """Black point, white point and softening of a display stretch, from the noise-free truth.

    black: 0.1st percentile of the truth (just under the faintest sky);
    white: its maximum; soft: 1/1000 of the range, where the stretch turns
    from linear (faint sky and its noise) to logarithmic (stars). Derive them
    once per scene and stretch every method's output with the same values.
    """
    t = np.asarray(truth, dtype=np.float64)
    black = float(np.percentile(t, 0.1))
    white = float(t.max())
    if white <= black:
        white = black + 1.0
    return {"black": black, "white": white, "soft": (white - black) / 1000.0}


def display_stretch(x: np.ndarray, *, black: float, white: float, soft: float | None = None) -> np.ndarray:
    """Asinh display stretch: ``asinh((x - black) / soft) / asinh((white - black) / soft)``.

    Maps ``black`` to 0 and ``white`` to 1; not clipped, so noise below the
    black point still counts in a PSNR on the stretched image. ``soft``
    defaults to ``(white - black) / 1000``. Returns float64.
    """
    if soft is None:
        soft = (white - black) / 1000.0
    x = np.asarray(x, dtype=np.float64)
    return np.arcsinh((x - black) / soft) / np.arcsinh((white - black) / soft)


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


def measured_region(shape: tuple[int, int], max_pixels: int = 8_000_000) -> tuple[slice, slice]:
    """Rows and columns :func:`quality_report` measures on an image of ``shape`` ``(H, W)``.

    The whole image up to ``max_pixels`` pixels; above, the centred crop of
    the same aspect ratio holding about ``max_pixels`` pixels.
    """
    h, w = shape
    if h * w <= max_pixels:
        return slice(0, h), slice(0, w)
    scale = math.sqrt(max_pixels / (h * w))
    ch_, cw_ = max(int(h * scale), 1), max(int(w * scale), 1)
    y0, x0 = (h - ch_) // 2, (w - cw_) // 2
    return slice(y0, y0 + ch_), slice(x0, x0 + cw_)


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
        structure = ac - _smooth_background(ac, mask)
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
        r_ap = max(2.0, 2.0 * fwhm)
        r_in, r_out = r_ap + 2.0, r_ap + 2.0 + max(4.0, 2.0 * fwhm)
        fb = aperture_flux(lum_b, sx, sy, r_ap, r_in, r_out)
        fa = aperture_flux(lum_a, sx, sy, r_ap, r_in, r_out)
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
