"""Zero-Shot Noise2Noise (Mansour & Heckel, CVPR 2023).

Two half-resolution views of one noisy image y, made by fixed stride-2
kernels, share the signal and carry independent noise:

    D1(y) = (y[0::2, 0::2] + y[1::2, 1::2]) / 2,   D2(y) = (y[0::2, 1::2] + y[1::2, 0::2]) / 2

With f the denoiser,

    L_res  = ½ (‖f(D1) − D2‖² + ‖f(D2) − D1‖²)
    L_cons = ½ (‖f(D1) − D1(f(y))‖² + ‖f(D2) − D2(f(y))‖²)
    L      = L_res + L_cons

The views are made in data units and the squared errors are measured there,
variance-weighted (:mod:`.domain`), so the method keeps flux; the network
sees the views variance-stabilised. The consistency term ties the
half-resolution behaviour to the full resolution the network is applied at.
Pixel noise must be independent between neighbours: registration
resampling breaks this (use raw frames, or ``n2n`` across frames).

Example:
    >>> import numpy as np, torch
    >>> from siril_denoise.networks import build_network
    >>> from siril_denoise.noise import NoiseModel, Normaliser
    >>> img = np.random.default_rng(0).normal(100, 5, size=(1, 32, 32)).astype("float32")
    >>> nm = NoiseModel(np.zeros(1), np.full(1, 25.0), np.full(1, 5.0), False)
    >>> m = ZeroShotN2N([img], Normaliser.fit(img, nm))
    >>> batch = [torch.from_numpy(b) for b in m.sample(np.random.default_rng(1), 16, 2)]
    >>> float(m.loss(build_network("zsn2n", 1), batch).detach()) > 0
    True
"""

from __future__ import annotations

import numpy as np
import torch

from ..noise import Normaliser
from .crops import random_crops
from .domain import LinearDomain
from .registry import TrainingData


def downsample_pair(y):
    """The two fixed diagonal 2×2 averages of ``y`` ``(..., H, W)`` (H, W even)."""
    d1 = (y[..., 0::2, 0::2] + y[..., 1::2, 1::2]) / 2
    d2 = (y[..., 0::2, 1::2] + y[..., 1::2, 0::2]) / 2
    return d1, d2


class ZeroShotN2N:
    """ZS-N2N on crops of one or more images (data units, ``(C, H, W)``)."""

    #: forward passes per sample: (fraction of the crop's pixels, with gradient); for FLOP counts
    passes = ((0.25, True), (0.25, True), (1.0, True))

    def __init__(self, images: list[np.ndarray], normaliser: Normaliser) -> None:
        self.images = images
        self.domain = LinearDomain(normaliser)

    def sample(self, rng: np.random.Generator, crop: int, batch: int) -> tuple[np.ndarray, ...]:
        y = random_crops(self.images, rng, crop, batch)
        d1, d2 = downsample_pair(y)
        f = self.domain.forward_np
        return f(y), f(d1), f(d2), d1, d2

    def validation(self, rng: np.random.Generator, crop: int, batch: int, n: int) -> list[tuple[np.ndarray, ...]]:
        return [self.sample(rng, crop, batch) for _ in range(n)]

    def loss(self, net: torch.nn.Module, batch) -> torch.Tensor:
        zy, z1, z2, d1, d2 = batch
        dom = self.domain
        f1, f2 = net(z1), net(z2)
        l_res = 0.5 * (dom.loss(f1, d2) + dom.loss(f2, d1))
        full, _ = dom.to_linear(net(zy))
        g1, g2 = downsample_pair(full)
        l_cons = 0.5 * (dom.loss(f1, g1) + dom.loss(f2, g2))
        return l_res + l_cons


def build(data: TrainingData) -> ZeroShotN2N:
    """ZeroShotN2N on crops of all of ``data.frames`` (the registry's builder)."""
    return ZeroShotN2N(data.frames, data.normaliser)
