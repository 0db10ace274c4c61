"""Networks of the blind-spot methods: Noise2Void (N2V2) and Self2Self.

Both predict a pixel from its neighbours. Their output is a fixed, blind
estimate plus a learned correction:

    f(x) = ring(x) + g(x)

``ring`` is the mean of the pixel's 3×3 neighbours, centre excluded (with
a faint 5×5 outer ring so that a neighbourhood is never empty), so an
untrained network is a mild local mean that never copies the noisy pixel
itself, keeps flux (a local mean moves light, it does not remove it) and
never returns a flat or empty image; ``g``'s last convolution starts at 0.
(The project's other networks start as the identity, x − noise; for a
blind-spot method the identity is the one answer that must not be learnt.)

- :class:`N2V2UNet`: a U-Net without its top-level skip connection (Höck et
  al., N2V2, 2022): the full-resolution decoder sees only upsampled
  features, so the centre pixel, which training replaces, cannot be copied
  through a full-resolution shortcut and no checkerboard appears. Pooling is
  2×2 averaging (a box blur before subsampling, not max-pooling's aliasing).
- :class:`Self2SelfNet`: the Self2Self network (Quan et al., CVPR 2020):
  partial convolutions (Liu et al. 2018) in the first encoder block read a
  Bernoulli-masked input, dropout in the decoder. Its ``forward`` is the
  dropout ensemble, computed inside the network (and so inside the exported
  ONNX graph) from ``ensemble`` fixed masks; see :class:`Self2SelfNet`.

Every tensor is float32 ``(N, C, H, W)`` in the normalised domain (noise
σ ≈ 1, sky near 0); masks are ``(N, 1, H, W)`` with 1 = pixel kept.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ring_kernel", "ring_mean", "PartialConv2d", "N2V2UNet", "Self2SelfNet", "ensemble_masks"]

#: Weight of the outer 5×5 ring relative to the 3×3 ring in :func:`ring_mean`.
OUTER = 0.01


def ring_kernel() -> torch.Tensor:
    """The 5×5 neighbour weights of :func:`ring_mean`: 1 on the 3×3 ring, ``OUTER`` beyond, 0 at the centre."""
    k = torch.full((5, 5), OUTER)
    k[1:4, 1:4] = 1.0
    k[2, 2] = 0.0
    return k


def ring_mean(x: torch.Tensor, keep: torch.Tensor | None = None, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean of each pixel's kept neighbours, the pixel itself excluded.

    Args:
        x: ``(N, C, H, W)``.
        keep: ``(N, 1, H, W)`` 0/1 (None: all kept). Dropped pixels and the
            zero padding beyond the border do not count.
        kernel: the 5×5 weights (default :func:`ring_kernel`).

    Returns:
        ``(N, C, H, W)``; 0 where no neighbour in the 5×5 window is kept.
    """
    n, c = x.shape[0], x.shape[1]
    k = (ring_kernel() if kernel is None else kernel).to(dtype=x.dtype, device=x.device)
    if keep is None:
        keep = torch.ones_like(x[:, :1])
    num = F.conv2d(x * keep, k.expand(c, 1, 5, 5), padding=2, groups=c)
    den = F.conv2d(keep, k.view(1, 1, 5, 5), padding=2)
    return num / torch.clamp(den, min=1e-6) * (den > 0).to(x.dtype)


class PartialConv2d(nn.Module):
    """Partial convolution (Liu et al. 2018) with a single-channel mask, 'same' padding.

    ``forward(x, mask) -> (y, new_mask)``: the convolution of ``x·mask``,
    rescaled by (window size / kept pixels in the window) so that the output
    does not depend on how many inputs were dropped; 0 where no input is
    kept; ``new_mask`` is 1 where at least one input was kept.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.register_buffer("ones", torch.ones(1, 1, kernel_size, kernel_size), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            count = F.conv2d(mask, self.ones, padding=self.conv.padding)
            valid = (count > 0).to(x.dtype)
            ratio = self.ones.numel() / torch.clamp(count, min=1.0) * valid
        y = self.conv(x * mask)
        return (y * ratio + self.bias.view(1, -1, 1, 1)) * valid, valid


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1))


class N2V2UNet(nn.Module):
    """U-Net for Noise2Void without the top-level skip: ``f(x) = ring(x) + g(x)``.

    ``levels`` 2×2 average poolings; H and W must be multiples of
    ``multiple`` = 2**levels. Deeper skips are kept; the top one is not.
    """

    def __init__(self, channels: int, features: int = 32, levels: int = 2) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError("N2V2UNet needs at least one level")
        self.multiple = 2**levels
        f = [features * 2**i for i in range(levels + 1)]
        self.enc = nn.ModuleList([_block(channels, f[0])] + [_block(f[i], f[i + 1]) for i in range(levels)])
        # Decoder level i gets the upsampled level i+1 and, except at the top (i = 0), the encoder's skip.
        self.dec = nn.ModuleList([_block(f[i + 1] + (f[i] if i > 0 else 0), f[i]) for i in reversed(range(levels))])
        self.out = nn.Conv2d(f[0], channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.register_buffer("kernel", ring_kernel(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for i, enc in enumerate(self.enc):
            h = enc(h)
            if i < len(self.enc) - 1:
                skips.append(h)
                h = F.avg_pool2d(h, 2)
        for dec in self.dec:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            skip = skips.pop()
            if skips:  # not the top level
                h = torch.cat([h, skip], dim=1)
            h = dec(h)
        return ring_mean(x, None, self.kernel) + self.out(h)


def ensemble_masks(members: int, dropped: int, period: int, seed: int = 0) -> np.ndarray:
    """Input keep-masks of the ensemble: ``(members, 1, period, period)`` float32 0/1.

    Every pixel of the period is dropped in exactly ``dropped`` members
    (a random subset, drawn independently per pixel), so each member drops
    a pixel with probability ``dropped / members``, independently across
    pixels, and the ensemble has the same number of blind predictions for
    every pixel.
    """
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((period * period, members)), axis=1)
    keep = np.ones((period * period, members), dtype=np.float32)
    np.put_along_axis(keep, order[:, :dropped], 0.0, axis=1)
    return np.ascontiguousarray(keep.T.reshape(members, 1, period, period))


def _tile(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Repeat a periodic ``(..., p, p)`` mask over ``(..., h, w)``."""
    p = mask.shape[-1]
    reps = [1] * (mask.dim() - 2) + [h // p + 1, w // p + 1]
    return mask.repeat(*reps)[..., :h, :w]


class Self2SelfNet(nn.Module):
    """Self2Self: partial-convolution encoder, dropout decoder, in-network dropout ensemble.

    ``member(x, keep)``: one prediction from the pixels ``keep`` marks,
    ``ring(x, keep) + g(x·keep)``, with random decoder dropout (rate
    ``dropout``) in training mode and none in eval mode. This is what
    training and validation use.

    ``forward(x)``: the dropout ensemble, what the exported model computes.
    ``ensemble`` members, each with a fixed input keep-mask and fixed
    decoder dropout masks (periodic with ``period`` px, stored as buffers,
    so the ONNX graph holds them as constants and is deterministic:
    onnxruntime reproduces torch exactly). Every pixel is dropped in exactly
    ``ensemble·drop`` members and its output is the mean of those members'
    predictions only, so no output pixel ever depends on its own noisy
    value, as in training, where the loss is on dropped pixels only.

    Args:
        channels: planes C.
        features, levels: U-Net width and depth (2×2 average pooling).
        drop: input drop probability (Bernoulli), training and ensemble.
        dropout: decoder dropout rate.
        ensemble: members of the inference ensemble (cost: that many
            forward passes per image).
        period: side of the periodic masks, a multiple of 2**levels.
    """

    def __init__(self, channels: int, features: int = 32, levels: int = 2, drop: float = 0.3,
                 dropout: float = 0.3, ensemble: int = 10, period: int = 32, seed: int = 1234) -> None:
        super().__init__()
        self.multiple = 2**levels
        if period % self.multiple:
            raise ValueError(f"period {period} must be a multiple of {self.multiple}")
        dropped = int(round(drop * ensemble))
        if not 1 <= dropped < ensemble:
            raise ValueError(f"drop={drop} with ensemble={ensemble} drops no pixel or all of them in the ensemble")
        self.drop, self.dropout, self.ensemble, self.dropped = drop, dropout, ensemble, dropped
        f = [features * 2**i for i in range(levels + 1)]
        self.pconv = nn.ModuleList([PartialConv2d(channels, f[0]), PartialConv2d(f[0], f[0])])
        self.enc = nn.ModuleList([_block(f[i], f[i + 1]) for i in range(levels)])
        self.dec = nn.ModuleList([_block(f[i + 1] + f[i], f[i]) for i in reversed(range(levels))])
        self.out = nn.Conv2d(f[0], channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.act = nn.LeakyReLU(0.1)
        self.register_buffer("kernel", ring_kernel(), persistent=False)
        self.register_buffer("keep_masks", torch.from_numpy(ensemble_masks(ensemble, dropped, period, seed)))
        # Fixed dropout masks of every decoder input, per member: (ensemble, channels, p_l, p_l),
        # values 0 or 1/(1 - rate).
        g = torch.Generator().manual_seed(seed + 1)
        self._drop_names = []
        for j, i in enumerate(reversed(range(levels))):
            p = period // 2**i
            m = (torch.rand(ensemble, f[i + 1] + f[i], p, p, generator=g) >= dropout).float() / (1.0 - dropout)
            name = f"drop_masks_{j}"
            self.register_buffer(name, m)
            self._drop_names.append(name)

    def member(self, x: torch.Tensor, keep: torch.Tensor, drop_masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """One blind prediction from the kept pixels (``keep`` ``(N, 1, H, W)``, 1 = kept)."""
        h, m = self.pconv[0](x, keep)
        h = self.act(h)
        h, m = self.pconv[1](h, m)
        h = self.act(h)
        skips = []
        for enc in self.enc:
            skips.append(h)
            h = enc(F.avg_pool2d(h, 2))
        for j, dec in enumerate(self.dec):
            h = torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skips.pop()], dim=1)
            if drop_masks is not None:
                h = h * drop_masks[j]
            elif self.training and self.dropout > 0:
                h = F.dropout(h, self.dropout, training=True)
            h = dec(h)
        return ring_mean(x, keep, self.kernel) + self.out(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hh, ww = x.shape[2], x.shape[3]
        # All members' masks tiled at once (fewer graph nodes than per member).
        keeps = _tile(self.keep_masks, hh, ww)
        n = len(self._drop_names)
        drops = [_tile(getattr(self, name), hh // 2 ** (n - 1 - j), ww // 2 ** (n - 1 - j))
                 for j, name in enumerate(self._drop_names)]
        total = torch.zeros_like(x)
        for k in range(self.ensemble):
            keep = keeps[k : k + 1]
            total = total + (1.0 - keep) * self.member(x, keep, [d[k : k + 1] for d in drops])
        return total / float(self.dropped)

