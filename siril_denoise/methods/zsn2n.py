"""Zero-Shot Noise2Noise (Mansour & Heckel, CVPR 2023).

Two half-resolution views of one noisy image y, made by fixed stride-2
kernels, share the signal and carry independent noise:

    D1(y) = (y[0::2, 0::2] + y[1::2, 1::2]) / 2,   D2(y) = (y[0::2, 1::2] + y[1::2, 0::2]) / 2

With f the denoiser (here: the network's output, a residual net),

    L_res  = ½ (‖f(D1) − D2‖² + ‖f(D2) − D1‖²)
    L_cons = ½ (‖f(D1) − D1(f(y))‖² + ‖f(D2) − D2(f(y))‖²)
    L      = L_res + L_cons

The consistency term ties the half-resolution behaviour to the full
resolution the network is applied at. Pixel noise must be independent
between neighbours: registration resampling breaks this (use raw frames,
or ``n2n`` across frames).

Example:
    >>> import numpy as np, torch
    >>> from siril_denoise.networks import build_network
    >>> m = ZeroShotN2N([np.random.default_rng(0).normal(size=(1, 32, 32)).astype("float32")])
    >>> batch = [torch.from_numpy(b) for b in m.sample(np.random.default_rng(1), 16, 2)]
    >>> float(m.loss(build_network("zsn2n", 1), batch)) > 0
    True
"""

from __future__ import annotations

import numpy as np
import torch

from .crops import random_crops


def downsample_pair(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two fixed diagonal 2×2 averages of ``y`` ``(N, C, H, W)`` (H, W even)."""
    d1 = (y[..., 0::2, 0::2] + y[..., 1::2, 1::2]) / 2
    d2 = (y[..., 0::2, 1::2] + y[..., 1::2, 0::2]) / 2
    return d1, d2


class ZeroShotN2N:
    """ZS-N2N on crops of one or more images in the normalised domain."""

    name = "zsn2n"
    inverse = "unbiased"

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = images

    def sample(self, rng: np.random.Generator, crop: int, batch: int) -> tuple[np.ndarray]:
        return (random_crops(self.images, rng, crop, batch),)

    def validation(self, rng: np.random.Generator, crop: int, batch: int, n: int) -> list[tuple[np.ndarray]]:
        return [self.sample(rng, crop, batch) for _ in range(n)]

    def loss(self, net: torch.nn.Module, batch) -> torch.Tensor:
        (y,) = batch
        d1, d2 = downsample_pair(y)
        f1, f2 = net(d1), net(d2)
        l_res = 0.5 * (torch.mean((f1 - d2) ** 2) + torch.mean((f2 - d1) ** 2))
        g1, g2 = downsample_pair(net(y))
        l_cons = 0.5 * (torch.mean((f1 - g1) ** 2) + torch.mean((f2 - g2) ** 2))
        return l_res + l_cons
