"""Real frames: the Seestar M94 session against its 11-frame stack.

Each method denoises the session's reference frame (raw GRBG mosaic); the
result is 2×2-superpixel-summed (the sum of the 4 packed CFA planes, as the
stack was made) and compared with ``stack11_superpixel.fits`` pixel for
pixel: sky RMS difference after matching levels, star aperture fluxes of
stars found in the stack, and the quality report's noise reduction.

Stars are scored where one sub can measure them: found in the stack and
with an expected aperture SNR of at least :data:`MIN_SNR` in the reference
frame (stack flux against the frame's own noise model, as the synthetic
scenes choose theirs with :func:`~siril_denoise.bench.metrics.aperture_snr`);
"faint" is SNR below :data:`FAINT_SNR`. Most stars the stack reveals sit
under that limit in a 10 s sub (their raw aperture fluxes are off by ~40 %
from noise alone); their median ratio is a column of its own, "all stack
stars", so what a denoiser does to invisible stars stays on record.
Siril's own NL-Bayes results (``siril-denoise/*.fits``) and the raw frame
are rows too. Skips cleanly (a note, no rows) when the data are absent.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

from siril_denoise.layout import to_working
from siril_denoise.noise import estimate_sigma
from siril_denoise.measure import aperture_flux, aperture_radii, background_mask, estimate_fwhm, find_stars
from siril_denoise.report import quality_report

from .baselines import BASELINES
from .metrics import aperture_snr
from .runner import LABELS, LEARNED, measured, run_learned
from .siril_baseline import NotApplicable
from .table import _num, markdown_table

SESSION = "seestar-m94-20250410"
REFERENCE = "Light_M 94_10.0s_IRCUT_20250409-225627.fit"
STACK = "stack11_superpixel.fits"
PATTERN = "GRBG"
SIRIL_ROWS = {"siril-nlbayes": ("Siril 1.4.4 denoise (NL-Bayes)", "ref-225627_siril-denoise.fits"),
              "siril-nlbayes-vst": ("Siril 1.4.4 denoise -vst", "ref-225627_siril-denoise-vst.fits")}
#: Half-side of the central crop (superpixels) used by ``--quick``.
QUICK_HALF = 128
#: Stars scored: expected aperture SNR in the reference frame at least this.
MIN_SNR = 5.0
#: "Faint" stars: SNR from MIN_SNR up to this.
FAINT_SNR = 10.0

COLUMNS = [
    ("sky RMS vs stack", "sky_rms_vs_stack", _num(".1f")),
    ("sky RMS vs stack 4×4", "sky_rms_vs_stack_binned", _num(".1f")),
    ("noise ↓ px", "noise_reduction", _num(".1f")),
    ("noise ↓ 4×4", "noise_reduction_binned", _num(".1f")),
    ("flux/stack med", "flux_ratio_median", _num(".3f")),
    ("flux RMS err", "flux_rms_error", _num(".3f")),
    ("faint flux/stack", "faint_flux_ratio_median", _num(".3f")),
    ("faint RMS err", "faint_flux_rms_error", _num(".3f")),
    ("all stack stars", "all_flux_ratio_median", _num(".3f")),
    ("time s", "seconds", _num(".1f")),
]


def _read(path: Path) -> np.ndarray:
    from siril_denoise.io import read_image

    return np.asarray(read_image(path).data, dtype=np.float32)


def _bin4(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[0] // 4 * 4, x.shape[1] // 4 * 4
    return x[:h, :w].reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3))


class StackComparison:
    """Scores of superpixel images against the stack, with the stars and sky chosen once."""

    def __init__(self, stack: np.ndarray, count: np.ndarray, raw_work: np.ndarray) -> None:
        self.stack = stack.astype(np.float64)
        full = count >= count.max()
        self.sky = background_mask(stack) & full & np.isfinite(stack)
        self.sky_binned = _bin4(self.sky.astype(np.float64)) == 1.0
        saturated = ndimage.maximum_filter(raw_work.max(axis=0), size=5) >= 0.98 * 65535
        x, y = find_stars(stack, exclude_above=None)
        ok = full[np.round(y).astype(int), np.round(x).astype(int)] & \
            ~saturated[np.round(y).astype(int), np.round(x).astype(int)]
        self.x, self.y = x[ok], y[ok]
        self.radii = aperture_radii(estimate_fwhm(stack, self.x, self.y))
        self.flux_stack = aperture_flux(self.stack, self.x, self.y, *self.radii)
        self.raw_flux = aperture_flux(raw_work.sum(axis=0).astype(np.float64), self.x, self.y, *self.radii)
        self.snr = aperture_snr(self.flux_stack, raw_work, self.radii, packed=True)
        self.found = np.isfinite(self.flux_stack) & (self.flux_stack > 0)
        self.good = self.found & (self.snr >= MIN_SNR)
        self.faint = self.good & (self.snr < FAINT_SNR)

    def score(self, work: np.ndarray) -> dict:
        """Scores of a denoised working image (4 packed planes, ADU)."""
        sp = work.sum(axis=0).astype(np.float64)
        d = sp - self.stack
        offset = float(np.median(d[self.sky]))
        rms = math.sqrt(float(np.mean((d[self.sky] - offset) ** 2)))
        db = _bin4(d)[self.sky_binned] - offset
        rms_b = math.sqrt(float(np.mean(db**2)))
        f = aperture_flux(sp, self.x, self.y, *self.radii)
        q = f / self.flux_stack
        qr = f / self.raw_flux
        ok = self.good & np.isfinite(q)
        okr = ok & np.isfinite(qr) & (self.raw_flux > 0)

        def med(v: np.ndarray, m: np.ndarray) -> float | None:
            return float(np.median(v[m])) if m.any() else None

        def rms_of(v: np.ndarray, m: np.ndarray) -> float | None:
            return math.sqrt(float(np.mean(v[m] ** 2))) if m.any() else None

        return {
            "sky_rms_vs_stack": rms, "sky_rms_vs_stack_binned": rms_b, "level_offset": offset,
            "sky_noise": estimate_sigma(sp, self.sky),
            "n_stars": int(ok.sum()), "n_faint": int((ok & self.faint).sum()),
            "flux_ratio_median": med(q, ok), "flux_rms_error": rms_of(q - 1, ok),
            "faint_flux_ratio_median": med(q, ok & self.faint), "faint_flux_rms_error": rms_of(q - 1, ok & self.faint),
            "all_flux_ratio_median": med(q, self.found & np.isfinite(q)),
            "flux_vs_raw_median": med(qr, okr), "faint_flux_vs_raw_median": med(qr, okr & self.faint),
        }


def run_real(root: Path, methods: list[str], *, quick: bool = False, time_budget: float | None = None,
             seed: int = 0, steps: int | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """The real-frame rows. Returns ``{"rows", "markdown", "skipped"}``; ``skipped`` holds why, when absent."""
    folder = Path(root) / SESSION
    paths = sorted(folder.glob("Light_*.fit"))
    if not (folder / STACK).exists() or not (folder / REFERENCE).exists() or len(paths) < 3:
        msg = f"real frames not found under {folder}: skipped"
        return {"rows": [], "markdown": f"### real: {msg}\n", "skipped": msg}
    from astropy.io import fits

    with fits.open(folder / STACK) as hdul:
        stack = np.asarray(hdul[0].data, dtype=np.float32)
        count = np.asarray(hdul[1].data)
    frames = [_read(p) for p in paths]
    ref_index = [p.name for p in paths].index(REFERENCE)
    frames.insert(0, frames.pop(ref_index))  # the reference first
    crop = (slice(None), slice(None))
    if quick:  # a central crop, on even full-resolution offsets so the Bayer pattern is kept
        cy, cx = stack.shape[0] // 2, stack.shape[1] // 2
        sy, sx = slice(cy - QUICK_HALF, cy + QUICK_HALF), slice(cx - QUICK_HALF, cx + QUICK_HALF)
        stack, count = stack[sy, sx], count[sy, sx]
        crop = (slice(2 * sy.start, 2 * sy.stop), slice(2 * sx.start, 2 * sx.stop))
    frames = [np.ascontiguousarray(f[crop]) for f in frames]
    raw_work = to_working(frames[0], PATTERN)[0]
    cmp = StackComparison(stack, count, raw_work)

    def row(key: str, label: str, work: np.ndarray, seconds: float | None = None) -> dict:
        r = {"method": key, "label": label, **cmp.score(work), "seconds": seconds}
        rep = quality_report(raw_work, work, saturation=65535.0)
        r.update(noise_reduction=rep.noise_reduction_overall, noise_reduction_binned=rep.noise_reduction_binned_overall,
                 new_zero=rep.new_zero_pixels, new_clipped=rep.new_clipped_pixels)
        return r

    rows = [row("input", "raw reference frame", raw_work)]
    for key, (label, name) in SIRIL_ROWS.items():
        if (folder / "siril-denoise" / name).exists():
            data = _read(folder / "siril-denoise" / name)[crop]
            rows.append(row(key, label, to_working(data, PATTERN)[0]))
    for m in methods:
        if m == "mean" or any(r["method"] == m for r in rows):
            continue  # the stack itself is the mean of the frames; Siril's rows come from its saved results
        if progress:
            progress(f"real: {m}")
        try:
            if m in LEARNED:
                (out, _), seconds, _ = measured(lambda: run_learned(
                    m, frames, PATTERN, None, time_budget=time_budget, seed=seed, steps=steps))
                work = to_working(out, PATTERN)[0]
            else:
                work, seconds, _ = measured(lambda: BASELINES[m](raw_work, True))
        except NotApplicable as exc:
            rows.append({"method": m, "label": LABELS.get(m, m), "note": f"n/a: {exc}"})
            continue
        except Exception as exc:
            rows.append({"method": m, "label": LABELS.get(m, m), "note": f"failed: {exc}"})
            continue
        rows.append(row(m, LABELS.get(m, m), work, seconds))
    shape = "×".join(map(str, frames[0].shape[::-1]))
    md = (f"### real: Seestar M94 reference frame ({shape} raw GRBG{', central crop' if quick else ''}), "
          f"{len(frames)} frames, vs the 11-frame superpixel stack ({len(cmp.x)} stars found in the stack, "
          f"{int(cmp.good.sum())} measurable in one sub (SNR ≥ {MIN_SNR:g}), {int(cmp.faint.sum())} of them faint "
          f"(SNR < {FAINT_SNR:g}))\n\n"
          + markdown_table(rows, COLUMNS) + "\n\nSky RMS vs stack: RMS of (superpixel result − stack) over the "
          "stack's sky, after removing the median offset (the stack's own noise, ideally ~1/√11 of a frame's, "
          "sets the floor). Star aperture fluxes of the stars one sub can measure: median of the result's flux over "
          "the stack's, and the RMS of (ratio − 1), bias and scatter together (the raw frame's own value is its "
          "photometric noise plus any offset between its fluxes and the stack's; a result under it sits "
          "closer to the stack); the same for the faint ones; last, the median ratio over every star found in the "
          "stack, most of them below the noise of one sub.\n")
    return {"rows": rows, "markdown": md, "skipped": None}
