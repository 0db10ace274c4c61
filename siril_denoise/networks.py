"""Denoising networks, in a registry by name.

Every network maps a float32 batch ``(N, C, H, W)`` in the normalised
domain (noise σ ≈ 1, sky near 0; see :class:`siril_denoise.noise.Normaliser`)
to the denoised estimate of the same shape. All are residual: they predict
the noise and subtract it, so an untrained network is the identity and the
flux is kept by construction of the starting point. ``multiple`` is the
factor H and W must be divisible by (the tiler pads to it).

- ``zsn2n``: the tiny Zero-Shot Noise2Noise net (Mansour & Heckel, CVPR
  2023): two 3×3 convolutions of 48 channels and a 1×1, LeakyReLU(0.2);
  ≈ 22k parameters for one channel.
- ``dncnn``: DnCNN-style plain stack of 3×3 convolutions (Zhang et al., TIP
  2017), without batch normalisation (it buys little for residual learning
  and makes small-batch training and tiling depend on batch statistics).
- ``unet``: a small 3-level U-Net (Ronneberger et al. 2015) with average
  pooling and nearest upsampling, LeakyReLU; the default for Noise2Noise.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["NETWORKS", "network_names", "build_network", "forward_flops_per_pixel", "ZSN2NNet", "DnCNN", "UNet"]


class ZSN2NNet(nn.Module):
    """``depth`` 3×3 convs (48 ch; the paper's net has 2) + 1×1, predicting the noise; output = x − noise."""

    multiple = 1

    def __init__(self, channels: int, features: int = 48, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for k in range(depth):
            layers += [nn.Conv2d(channels if k == 0 else features, features, 3, padding=1), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers, nn.Conv2d(features, channels, 1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


class DnCNN(nn.Module):
    """Plain residual CNN: ``depth`` 3×3 convolutions of ``features`` channels."""

    multiple = 1

    def __init__(self, channels: int, depth: int = 12, features: int = 48) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, features, 3, padding=1), nn.LeakyReLU(0.1)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.LeakyReLU(0.1)]
        layers.append(nn.Conv2d(features, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1)
    )


class UNet(nn.Module):
    """A U-Net of ``levels`` poolings; H and W must be multiples of ``multiple``.

    With ``unshuffle`` the image is first folded into 2×2 pixel blocks
    (``pixel_unshuffle``: C → 4C channels at half resolution, as FFDNet
    does), the U-Net runs there, and the predicted noise is unfolded back:
    a quarter of the convolution FLOPs per pixel for the same width, and
    twice the receptive field.
    """

    def __init__(self, channels: int, features: int = 32, levels: int = 3, unshuffle: bool = False) -> None:
        super().__init__()
        self.fold = 2 if unshuffle else 1
        self.multiple = 2**levels * self.fold
        inner = channels * self.fold**2
        f = [features * 2**i for i in range(levels + 1)]
        self.enc = nn.ModuleList([_block(inner, f[0])] + [_block(f[i], f[i + 1]) for i in range(levels)])
        self.pool = nn.AvgPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec = nn.ModuleList([_block(f[i + 1] + f[i], f[i]) for i in reversed(range(levels))])
        self.out = nn.Conv2d(f[0], inner, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = nn.functional.pixel_unshuffle(x, self.fold) if self.fold > 1 else x
        for i, enc in enumerate(self.enc):
            h = enc(h)
            if i < len(self.enc) - 1:
                skips.append(h)
                h = self.pool(h)
        for dec in self.dec:
            h = dec(torch.cat([self.up(h), skips.pop()], dim=1))
        noise = self.out(h)
        return x - (nn.functional.pixel_shuffle(noise, self.fold) if self.fold > 1 else noise)


#: Every network by name: the only list of network names.
NETWORKS: dict[str, Callable[..., nn.Module]] = {"zsn2n": ZSN2NNet, "dncnn": DnCNN, "unet": UNet}


def network_names() -> tuple[str, ...]:
    """The names :func:`build_network` accepts, in registry order."""
    return tuple(NETWORKS)


def build_network(name: str, channels: int, **kwargs) -> nn.Module:
    """Build a network by registry name for ``channels`` input/output channels."""
    try:
        factory = NETWORKS[name]
    except KeyError:
        raise ValueError(f"Unknown network {name!r}; choose one of {', '.join(NETWORKS)}") from None
    return factory(channels, **kwargs)


def forward_flops_per_pixel(net: nn.Module, channels: int, size: int = 64) -> float:
    """Multiply-adds × 2 of the convolutions of one forward pass, per input pixel.

    Counted on a ``size``×``size`` input (a multiple of ``net.multiple``) by
    hooks on every ``Conv2d``; activations, pooling and upsampling are left
    out (a few per cent). A training step costs about 3× this per pixel
    (forward, and the backward pass's two products).
    """
    m = getattr(net, "multiple", 1)
    size = max(m, size // m * m)
    total = [0]

    def hook(mod: nn.Conv2d, inp, out) -> None:
        kh, kw = mod.kernel_size
        total[0] += out.numel() * (mod.in_channels // mod.groups) * kh * kw

    handles = [mod.register_forward_hook(hook) for mod in net.modules() if isinstance(mod, nn.Conv2d)]
    try:
        p = next(net.parameters())
        with torch.no_grad():
            net(torch.zeros(1, channels, size, size, dtype=p.dtype, device=p.device))
    finally:
        for h in handles:
            h.remove()
    return 2.0 * total[0] / (size * size)


# The blind-spot methods' networks (Noise2Void, Self2Self) live in their own module.
from .blindspot import N2V2UNet, Self2SelfNet  # noqa: E402

NETWORKS.update({"n2v2": N2V2UNet, "s2s": Self2SelfNet})
