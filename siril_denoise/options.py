"""The options of every use case, and the only place their defaults are written.

:class:`Options` is read by the use-case layer (:mod:`siril_denoise.usecases`),
by both hosts' flags and dialogs, and by the engine's entry points
(:mod:`siril_denoise.pipeline`), whose keyword defaults are its fields. It
imports nothing heavier than the errors, so any layer may read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError


#: Smallest and largest inference tile side, in pixels.
MIN_TILE, MAX_TILE = 32, 4096

#: :attr:`Options.choice`: train the single-image method measured best for this kind of data.
ZERO_SHOT = "zero-shot"


@dataclass
class Options:
    """Everything a use case may be told; each field's default is *the* default.

    What denoises:
        choice: ``"auto"`` (the best matching library model, else
            ``zero_shot``), :data:`ZERO_SHOT` (``"zero-shot"``: no library
            model, the single-image method measured best for this kind of
            data, trained on each image: ZS-N2N for a sub, Noise2Void for a
            stack, see :func:`siril_denoise.usecases.single_image_method`), a
            single-image method name (trained on each image, whatever the
            data), or ``"model:<library name or .onnx path>"``.
        zero_shot: the single-image method ``"auto"`` falls back to when no
            saved model fits (its default, ZS-N2N, follows the kind of data
            as :data:`ZERO_SHOT` does); None: refuse with :class:`ModelError`
            instead.
        cfa: ``"auto"`` (the header's Bayer pattern, for 2-D data only),
            ``"none"``, or a pattern (RGGB, BGGR, GRBG, GBRG).

    Inference:
        strength: 0 (the input) to 1 (fully denoised), a linear blend.
        tile: inference tile side in pixels, :data:`MIN_TILE` to :data:`MAX_TILE`.
        overlap: pixels shared by neighbouring tiles; None: tile/4, at least
            32 (:meth:`tile_overlap`).
        protect: give back significant structure (star cores) the network removed.
        use_gpu: let onnxruntime and torch use a GPU when there is one.
        providers: onnxruntime providers in order (None: the engine's choice).

    Training (work counted in steps, so a busy machine gives the same model):
        train_method: the method :func:`train_model` uses (a key of
            :data:`siril_denoise.methods.METHODS`).
        net: network name (None: the method's own).
        steps: training steps (None: the method's recipe).
        time_limit: optional cap in seconds (None: none); a model it stops
            early is flagged as cut short.
        seed: initial weights and crops; same input + seed + steps + threads,
            same output.
        threads: torch threads (None: half the CPUs).

    Where results go:
        prefix: file-name prefix of denoised frames (never empty).
        library: the model library folder (None: the host's).
        name: library name of a trained model (None: from camera, gain,
            exposure, method and date).
        add_to_library: save the trained model in the library; None: the
            use case's own habit (:func:`train_model` saves, a single-image
            method in :func:`denoise_image` does not).
        save_model: also copy the trained model to this ``.onnx`` file.
        out_dir: where training writes the model and its curve (None: a
            temporary folder).
    """

    choice: str = "auto"
    zero_shot: str | None = "zsn2n"
    cfa: str = "auto"
    strength: float = 1.0
    tile: int = 256
    overlap: int | None = None
    protect: bool = True
    use_gpu: bool = True
    providers: list[Any] | None = None
    train_method: str = "n2n"
    net: str | None = None
    steps: int | None = None
    time_limit: float | None = None
    seed: int = 0
    threads: int | None = None
    prefix: str = "dn_"
    library: Path | None = None
    name: str | None = None
    add_to_library: bool | None = None
    save_model: Path | None = None
    out_dir: Path | None = None

    def tile_overlap(self) -> int:
        """The overlap in pixels: :attr:`overlap`, or tile/4 and at least 32 when None."""
        return int(self.overlap) if self.overlap is not None else max(32, self.tile // 4)

    def check(self) -> Options:
        """Raise :class:`InputError` for a value out of range; returns self."""
        if not 0.0 <= float(self.strength) <= 1.0:
            raise InputError(f"Strength must be between 0 (original) and 1 (fully denoised); got {self.strength}.")
        if not MIN_TILE <= int(self.tile) <= MAX_TILE or not 0 <= 2 * self.tile_overlap() < int(self.tile):
            raise InputError(f"The tile must be {MIN_TILE} to {MAX_TILE} pixels and the overlap less than half of it "
                             f"(got tile {self.tile}, overlap {self.tile_overlap()}).")
        if not self.prefix or any(c in self.prefix for c in "/\\"):
            raise InputError(f"The prefix must be a plain file-name prefix such as dn_ (got {self.prefix!r}).")
        for what, value in (("steps", self.steps), ("threads", self.threads)):
            if value is not None and int(value) < 1:
                raise InputError(f"{what} must be at least 1 (got {value}).")
        if self.time_limit is not None and float(self.time_limit) <= 0:
            raise InputError(f"The time limit must be positive (got {self.time_limit}).")
        return self
