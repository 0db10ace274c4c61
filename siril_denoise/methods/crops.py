"""Random crops from a list of images (the sampler of the single-image methods)."""

from __future__ import annotations

import numpy as np


def random_crops(images: list[np.ndarray], rng: np.random.Generator, crop: int, batch: int) -> np.ndarray:
    """Draw ``batch`` crops of ``crop``×``crop`` pixels uniformly from ``images``.

    Args:
        images: float32 arrays ``(C, H, W)``; an image smaller than ``crop``
            gives crops of its own (even-sized) extent instead.
        crop: side in pixels (made even).

    Returns:
        float32 ``(batch, C, crop', crop')``.
    """
    c = min([crop] + [min(im.shape[1:]) for im in images])
    c -= c % 2
    out = np.empty((batch, images[0].shape[0], c, c), dtype=np.float32)
    for b in range(batch):
        im = images[rng.integers(len(images))]
        y = rng.integers(0, im.shape[1] - c + 1)
        x = rng.integers(0, im.shape[2] - c + 1)
        out[b] = im[:, y : y + c, x : x + c]
    return out
