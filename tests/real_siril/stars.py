"""How well homographies align the stars of real frames (for the real-Siril tests).

Stars are found with ``sep`` on a 2x2 box sum of each frame, which turns a raw
Bayer mosaic into a smooth full-resolution luminance (the same half-pixel
offset in every frame, so it cancels). A frame's stars mapped onto the
reference frame through ``inv(H_ref) @ H_k`` should land on the reference's
own stars: the median distance is the alignment error in pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def star_positions(path: Path, count: int = 60) -> np.ndarray:
    """(x, y) of up to ``count`` of the brightest unflagged stars, array pixels (rows from the top)."""
    import sep
    from astropy.io import fits

    data = np.asarray(fits.getdata(path), dtype=np.float64)
    if data.ndim == 3:
        data = data.mean(axis=0)
    lum = np.ascontiguousarray(data[:-1, :-1] + data[1:, :-1] + data[:-1, 1:] + data[1:, 1:])
    bkg = sep.Background(lum)
    objs = sep.extract(lum - bkg, 8, err=bkg.globalrms, minarea=10)
    objs = objs[objs["flag"] == 0]
    objs = objs[np.argsort(-objs["flux"])][:count]
    return np.stack([objs["x"], objs["y"]], axis=1)


def _apply(h: np.ndarray, xy: np.ndarray) -> np.ndarray:
    p = np.c_[xy, np.ones(len(xy))] @ np.asarray(h, dtype=np.float64).T
    return p[:, :2] / p[:, 2:]


def star_offset(frame_xy: np.ndarray, ref_xy: np.ndarray, h: np.ndarray,
                match_px: float = 3.0) -> tuple[float, int]:
    """Median distance (px) from ``frame_xy`` mapped by ``h`` to the nearest ``ref_xy`` star,
    over the stars that land within ``match_px``, and how many did (inf, 0 when none)."""
    mapped = _apply(h, frame_xy)
    dist = np.hypot(*(mapped[:, None, :] - ref_xy[None, :, :]).transpose(2, 0, 1)).min(axis=1)
    near = dist[dist < match_px]
    return (float(np.median(near)) if len(near) else float("inf")), int(len(near))


def offsets_to_reference(files: list[Path], homographies: list[np.ndarray], ref: int) -> list[tuple[float, int]]:
    """For every frame but ``ref``: (median star offset px, matched stars) on frame ``ref``."""
    ref_xy = star_positions(files[ref])
    to_ref = np.linalg.inv(np.asarray(homographies[ref], dtype=np.float64))
    return [star_offset(star_positions(f), ref_xy, to_ref @ np.asarray(h, dtype=np.float64))
            for k, (f, h) in enumerate(zip(files, homographies)) if k != ref]
