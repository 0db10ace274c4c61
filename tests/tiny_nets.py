"""Tiny torch networks shared by the export and inference tests."""

import torch
from torch import nn


class PoolNet(nn.Module):
    """Conv + (avg-pool, upsample) branch + conv: needs even sizes, small receptive field."""

    multiple = 2

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.a = nn.Conv2d(channels, 4, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.b = nn.Conv2d(8, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x):
        h = self.act(self.a(x))
        return self.b(torch.cat([h, self.up(self.pool(h))], 1)) + x
