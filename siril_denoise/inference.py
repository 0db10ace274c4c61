"""Run an exported denoiser: onnxruntime sessions and tiled inference.

Two independent pieces:

* :class:`OnnxDenoiser` opens a siril-denoise ``.onnx`` model with an ordered
  list of execution providers (GPU first, CPU last). Any failure of a GPU
  provider, when the session is created or when a batch runs, is logged as a
  warning and the work goes on on the CPU.
* :func:`run_tiled` applies any batch function ``(N, C, h, w) -> (N, C, h, w)``
  to a ``(C, H, W)`` image in overlapping tiles blended with a smooth window,
  with memory bounded by the tile batch rather than the image size. The same
  tiler serves onnxruntime and a torch network (see
  :func:`siril_denoise.export.torch_callable`), so benchmarks compare like
  with like.

This module never imports torch: inference works where only numpy and
onnxruntime are installed.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Callable, Sequence

import numpy as np

from .errors import Cancelled, InputError, ModelError
from .modelfile import METADATA_KEY, parse_metadata, read_model_bytes

log = logging.getLogger("siril_denoise.inference")

CPU = "CPUExecutionProvider"
#: GPU / accelerator providers in order of preference; CPU always comes last.
GPU_PREFERENCE = (
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "OpenVINOExecutionProvider",
)

BatchFn = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[float, str], None]
Provider = str | tuple[str, dict]


# --------------------------------------------------------------------------
# Providers and sessions
# --------------------------------------------------------------------------

def _provider_name(provider: Provider) -> str:
    return provider[0] if isinstance(provider, tuple) else provider


def available_providers(use_gpu: bool = True) -> list[str]:
    """Execution providers to try, best first, always ending with the CPU.

    Built from ``onnxruntime.get_available_providers()``: the accelerators of
    :data:`GPU_PREFERENCE` that this onnxruntime build offers, in that order,
    then ``CPUExecutionProvider``. With ``use_gpu=False``: the CPU only.
    "Available" means compiled in, not that a working device is present;
    :class:`OnnxDenoiser` falls back to the CPU when one fails.
    """
    if not use_gpu:
        return [CPU]
    import onnxruntime as ort

    offered = set(ort.get_available_providers())
    return [p for p in GPU_PREFERENCE if p in offered] + [CPU]


#: Environment variable that overrides :func:`inference_threads`.
THREADS_ENV = "SIRIL_DENOISE_THREADS"


def inference_threads() -> int:
    """onnxruntime's intra-op threads on the CPU: every CPU this process may use, or ``$SIRIL_DENOISE_THREADS``.

    A fixed number, whatever the load, so that a run does not depend on
    what else the machine is doing.
    """
    env = os.environ.get(THREADS_ENV, "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def create_session(model: bytes, providers: Sequence[Provider]):
    """An ``onnxruntime.InferenceSession`` for ``model`` (the one place sessions are made; tests replace it).

    All graph optimisations (onnxruntime's default, stated here), a fixed
    number of intra-op threads (:func:`inference_threads`), and threads that
    sleep rather than spin between operators: on a 2-core machine shared
    with other work, spinning threads took 4.2 s where sleeping ones took
    3.6–3.9 s for the same U-Net tiles (docs/benchmark.md).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only; we log fall-backs ourselves
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = inference_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, sess_options=options, providers=list(providers))


class OnnxDenoiser:
    """A siril-denoise ONNX model ready to run, with a logged fall-back to the CPU.

    Calling it maps a float32 batch ``(N, C, h, w)`` in the network domain to
    an array of the same shape; ``h`` and ``w`` must be multiples of
    :attr:`multiple` (:func:`run_tiled` takes care of that).

    Args:
        model: path to an ``.onnx`` file, or its bytes.
        use_gpu: try accelerators first (see :func:`available_providers`).
        providers: explicit ordered provider list overriding ``use_gpu`` (for
            example from sirilpy's ``ONNXHelper.get_execution_providers_ordered``);
            entries are names or ``(name, options)`` pairs.

    Attributes:
        metadata: the model's metadata dict (see :mod:`siril_denoise.modelfile`).
        channels: number of input/output planes.
        multiple: spatial sizes the network needs to be multiples of.
        providers: the providers the current session really uses.
        fell_back: True once a GPU failure sent the work to the CPU.

    Raises:
        ModelError: missing, corrupt or truncated file, or not a siril-denoise model.
    """

    def __init__(self, model: str | os.PathLike | bytes, *, use_gpu: bool = True,
                 providers: Sequence[Provider] | None = None) -> None:
        self._model, self._source = read_model_bytes(model)
        wanted = list(providers) if providers else available_providers(use_gpu)
        if not any(_provider_name(p) == CPU for p in wanted):
            wanted.append(CPU)
        self.fell_back = False
        self._session = self._open(wanted)

        meta_map = self._session.get_modelmeta().custom_metadata_map
        self.metadata: dict = parse_metadata(meta_map.get(METADATA_KEY), self._source)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"{self._source} does not have one (N, C, H, W) input and one output.")
        self._input_name, self._output_name = inputs[0].name, outputs[0].name
        declared = inputs[0].shape[1]
        self.channels = int(self.metadata.get("channels") or declared)
        if isinstance(declared, int) and declared != self.channels:
            raise ModelError(f"{self._source} is damaged: its metadata says {self.channels} "
                             f"channels but the network takes {declared}.")
        self.multiple = int(self.metadata.get("multiple", 1))
        log.info("Model %s runs on %s", self._source, ", ".join(self.providers))

    @property
    def providers(self) -> list[str]:
        """Execution providers of the live session, in priority order."""
        return list(self._session.get_providers())

    @property
    def on_gpu(self) -> bool:
        """True when the live session uses a provider other than the CPU."""
        return any(p != CPU for p in self.providers)

    def _open(self, providers: list[Provider]):
        gpu = [_provider_name(p) for p in providers if _provider_name(p) != CPU]
        try:
            with warnings.catch_warnings():  # onnxruntime warns about absent providers; we log it below
                warnings.simplefilter("ignore", UserWarning)
                session = create_session(self._model, providers)
        except Exception as exc:  # any provider or driver failure: retry on the CPU
            if not gpu:
                raise ModelError(
                    f"Cannot load {self._source}: the file is corrupt, truncated or not an "
                    f"ONNX model ({exc}). Train it again (siril-denoise train), or delete it with `siril-denoise models delete NAME`.") from exc
            log.warning("Could not start %s (%s); falling back to the CPU.", ", ".join(gpu), exc)
            self.fell_back = True
            return self._open([CPU])
        missing = [p for p in gpu if p not in session.get_providers()]
        if missing:
            log.warning("%s could not be used (not in this onnxruntime build, or its drivers "
                        "failed to load); running on %s.", ", ".join(missing),
                        ", ".join(session.get_providers()))
        return session

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Denoise a float32 batch ``(N, C, h, w)``; returns a float32 array of the same shape."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != self.channels:
            raise InputError(f"The model expects {self.channels}-channel tiles (N, C, H, W); "
                             f"got an array of shape {batch.shape}.")
        try:
            out = self._session.run([self._output_name], {self._input_name: batch})[0]
        except Exception as exc:
            if not self.on_gpu:
                raise ModelError(f"The model failed on the CPU: {exc}") from exc
            gpu = [p for p in self.providers if p != CPU]
            log.warning("%s failed while denoising (%s); falling back to the CPU.", ", ".join(gpu), exc)
            self.fell_back = True
            self._session = self._open([CPU])
            return self(batch)
        return np.asarray(out, dtype=np.float32)


# --------------------------------------------------------------------------
# Tiling
# --------------------------------------------------------------------------

def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def minimum_size(multiple: int = 1) -> int:
    """Smallest image side :func:`run_tiled` accepts for a net needing ``multiple``.

    Sides that are not a multiple are completed by one mirror reflection,
    which needs the image to be more than half a ``multiple`` wide.
    """
    return max(2, multiple // 2 + 1)


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile origins covering ``length``; the last tile sits flush with the end."""
    if length <= tile:
        return [0]
    return list(range(0, length - tile, stride)) + [length - tile]


def _ramp(overlap: int) -> np.ndarray:
    """Rising edge of the blending window over ``overlap`` pixels.

    Zero over the first quarter (where a tile's output is spoiled by its
    border), a raised cosine over the middle half, one over the last quarter.
    Two tiles overlapping by exactly ``overlap`` sum to one, and every pixel
    keeps a positive total weight.
    """
    margin = overlap // 4
    width = overlap - 2 * margin
    k = np.arange(overlap, dtype=np.float64) - margin
    ramp = 0.5 - 0.5 * np.cos(np.pi * (k + 0.5) / width)
    ramp[k < 0] = 0.0
    ramp[k >= width] = 1.0
    return ramp


def _window(tile: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """1-D weight of one tile: flat, ramped on the sides that meet another tile."""
    w = np.ones(tile, dtype=np.float64)
    if overlap > 0:
        ramp = _ramp(overlap)
        if not first:
            w[:overlap] *= ramp
        if not last:
            w[-overlap:] *= ramp[::-1]
    return w


class _Axis:
    """Tiling plan along one image axis of ``length`` pixels."""

    def __init__(self, length: int, tile: int, overlap: int, stride: int, multiple: int) -> None:
        self.length = length
        self.padded = _round_up(length, multiple)      # completed by reflection
        self.tile = min(tile, self.padded)
        self.starts = _starts(self.padded, self.tile, stride)
        n = len(self.starts)
        self.windows = [_window(self.tile, overlap, i == 0, i == n - 1) for i in range(n)]
        norm = np.zeros(self.padded, dtype=np.float64)
        for s, w in zip(self.starts, self.windows):
            norm[s:s + self.tile] += w
        assert np.all(norm > 0), "tiling left a pixel without weight"
        # Per-tile weight already divided by the total weight of its pixels,
        # so accumulating tiles gives the normalised blend directly.
        self.weights = [(w / norm[s:s + self.tile]).astype(np.float32)
                        for s, w in zip(self.starts, self.windows)]

    def source(self, start: int) -> slice | np.ndarray:
        """Image indices for the tile at ``start``: a slice, or mirrored indices past the end."""
        stop = start + self.tile
        if stop <= self.length:
            return slice(start, stop)
        idx = np.arange(start, stop)
        return np.where(idx < self.length, idx, 2 * (self.length - 1) - idx)

    def valid(self, start: int) -> int:
        """How many pixels of the tile at ``start`` lie inside the image."""
        return min(self.tile, self.length - start)


def _as_indices(sel: slice | np.ndarray) -> np.ndarray:
    return np.arange(sel.start, sel.stop) if isinstance(sel, slice) else sel


def run_tiled(fn: BatchFn, image: np.ndarray, *, tile: int = 256, overlap: int = 32,
              batch: int = 4, multiple: int | None = None, progress: Progress | None = None,
              should_cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """Apply ``fn`` to ``image`` in overlapping, window-blended tiles.

    Args:
        fn: maps a float32 batch ``(N, C, th, tw)`` to an array of the same
            shape (an :class:`OnnxDenoiser`, a wrapped torch net...). ``th``
            and ``tw`` are multiples of ``multiple`` and the same for every call.
        image: float32 ``(C, H, W)`` in whatever units ``fn`` expects (other
            dtypes are converted, at the cost of one copy).
        tile: tile side in pixels (rounded down to a multiple of ``multiple``;
            smaller images use one smaller tile).
        overlap: pixels shared by neighbouring tiles. Tiles are blended with a
            raised-cosine window that ignores the outer quarter of each overlap,
            so the result equals an untiled run (away from the image border)
            whenever the network's receptive-field radius is at most
            ``overlap // 4``; for larger fields the blend hides seams.
        batch: tiles per call of ``fn``.
        multiple: spatial multiple the network needs; by default
            ``fn.multiple`` if ``fn`` has one (an :class:`OnnxDenoiser` does),
            else 1. Sides that are not a multiple are completed by mirror
            reflection and cropped back.
        progress: ``progress(fraction, message)`` after each batch.
        should_cancel: polled before each batch; True raises :class:`Cancelled`.

    Returns:
        float32 ``(C, H, W)``. Memory besides ``image`` and the result is
        about ``2 × batch × C × th × tw`` floats plus ``fn``'s own work space.

    Raises:
        InputError: ``image`` is not ``(C, H, W)`` or smaller than
            :func:`minimum_size` in either direction.
        ModelError: ``fn`` returned an array of the wrong shape.
    """
    if multiple is None:
        multiple = int(getattr(fn, "multiple", 1))
    if tile < 1 or batch < 1 or multiple < 1 or overlap < 0:
        raise ValueError("tile, batch and multiple must be positive and overlap non-negative")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise InputError(f"Expected an image of shape (channels, height, width); got {image.shape}.")
    channels, height, width = image.shape
    smallest = minimum_size(multiple)
    if height < smallest or width < smallest:
        raise InputError(f"The image is {width}×{height} pixels; this model needs at least "
                         f"{smallest}×{smallest}.")

    tile = max(multiple, tile // multiple * multiple)
    stride = (tile - overlap) // multiple * multiple
    if stride < multiple:
        raise ValueError(f"overlap {overlap} leaves no stride for tile {tile} (multiple {multiple})")
    rows = _Axis(height, tile, overlap, stride, multiple)
    cols = _Axis(width, tile, overlap, stride, multiple)

    jobs = [(i, j) for i in range(len(rows.starts)) for j in range(len(cols.starts))]
    out = np.zeros_like(image)
    buf = np.empty((min(batch, len(jobs)), channels, rows.tile, cols.tile), dtype=np.float32)
    total = len(jobs)
    for first in range(0, total, batch):
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        chunk = jobs[first:first + batch]
        for k, (i, j) in enumerate(chunk):
            ys, xs = rows.source(rows.starts[i]), cols.source(cols.starts[j])
            if isinstance(ys, slice) and isinstance(xs, slice):
                buf[k] = image[:, ys, xs]
            else:  # the tile reaches past the image: mirrored indices
                buf[k] = image[:, _as_indices(ys)[:, None], _as_indices(xs)[None, :]]
        result = np.asarray(fn(buf[:len(chunk)]))
        if result.shape != (len(chunk), channels, rows.tile, cols.tile):
            raise ModelError(f"The network returned tiles of shape {result.shape} for input "
                             f"{(len(chunk), channels, rows.tile, cols.tile)}.")
        for k, (i, j) in enumerate(chunk):
            y0, x0 = rows.starts[i], cols.starts[j]
            h, w = rows.valid(y0), cols.valid(x0)
            weight = rows.weights[i][:h, None] * cols.weights[j][None, :w]
            out[:, y0:y0 + h, x0:x0 + w] += result[k, :, :h, :w] * weight
        done = min(first + batch, total)
        if progress is not None:
            progress(done / total, f"denoising tile {done}/{total}")
    return out


# --------------------------------------------------------------------------
# Throughput
# --------------------------------------------------------------------------

def measure_throughput(fn: BatchFn, shape: tuple[int, int, int, int], repeats: int = 5,
                       *, warmup: int = 1, seed: int = 0) -> float:
    """Megapixels per second ``fn`` sustains on batches of ``shape`` ``(N, C, h, w)``.

    Pixels are counted per spatial position (``N × h × w``, channels not
    multiplied). Uses the median of ``repeats`` timed calls after ``warmup``
    untimed ones, on random float32 input.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    n, _, h, w = shape
    x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return n * h * w / 1e6 / float(np.median(times))
