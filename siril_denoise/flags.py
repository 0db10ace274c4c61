"""Flags that ``siril-denoise`` and the Siril scripts' ``pyscript`` flags share, written once.

:func:`add_inference_flags` adds ``--strength``, ``--tile`` and ``--overlap``
with the defaults of :class:`~siril_denoise.usecases.Options` and range
checks at parse time (a bad value is a usage error naming the range).
:func:`number` makes such a checked argparse type.
"""

from __future__ import annotations

import argparse
from typing import Callable

from .usecases import MAX_TILE, MIN_TILE, Options


def number(kind: type, lo: float, hi: float | None = None, *, open_lo: bool = False,
           what: str = "") -> Callable[[str], float]:
    """An argparse type: a ``kind`` (int or float) in [lo, hi] (above lo when ``open_lo``; no upper
    bound when ``hi`` is None); ``what`` is the message for a value out of range."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if (value <= lo if open_lo else value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(what or f"must be greater than {lo:g}, got {text}")
        return value

    return parse


strength = number(float, 0.0, 1.0, what="must be between 0 (original) and 1 (fully denoised)")
tile = number(int, MIN_TILE, MAX_TILE, what=f"must be {MIN_TILE} to {MAX_TILE} pixels")


def add_inference_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--strength (0..1), --tile (pixels) and --overlap (pixels), defaults from :class:`Options`."""
    d = Options()
    parser.add_argument("--strength", type=strength, default=d.strength, metavar="S",
                        help=f"0 = original, 1 = fully denoised (linear blend; default {d.strength:g})")
    parser.add_argument("--tile", type=tile, default=d.tile, metavar="PX",
                        help=f"inference tile side in pixels, {MIN_TILE} to {MAX_TILE} (default {d.tile})")
    parser.add_argument("--overlap", type=int, default=d.overlap, metavar="PX",
                        help="pixels shared by neighbouring tiles (default: a quarter of the tile, at least 32)")
