"""The engine's public entry points: numpy in, numpy out, no files required.

- :func:`denoise_image`: train a zero-shot method on this very image, export
  it to ONNX, and denoise the image with it.
- :func:`apply_model`: denoise an image with a saved ``.onnx`` model.
- :func:`train_on_frames`: learn a model from the frames of a session
  (Noise2Noise across frames, or a single-image method on all of them).

Data flow: Siril layout → working ``(C, H, W)`` (CFA packed) → noise model
and normaliser → network domain → (train | infer) → data units → strength
blend → Siril layout, same dtype. Every result carries a
:class:`~siril_denoise.report.QualityReport`.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import __version__
from .errors import InputError, ModelError
from .inference import OnnxDenoiser, run_tiled
from .layout import LayoutInfo, from_working, normalise_pattern, to_working
from .methods import MethodSpec, TrainingData, method_spec, single_image_methods
from .noise import NoiseModel, Normaliser, estimate_noise_model
from .options import Options
from .protect import restore_background_level, restore_sources, restore_structure
from .measure import background_mask, measured_region
from .report import QualityReport, quality_report
from .stacks import is_stack as _is_stack

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]


@dataclass
class DenoiseResult:
    """A denoised image and what was done to it.

    Attributes:
        data: same shape, dtype and layout as the input.
        report: the quality report (noise reduction, bias, flux, clipping).
        model_metadata: the metadata of the model that produced it.
        model_path: where the model was saved, when it was.
        providers: onnxruntime execution providers that ran the model.
        warnings: the report's warnings plus model/data mismatch warnings.
    """

    data: np.ndarray
    report: QualityReport
    model_metadata: dict
    model_path: Path | None = None
    providers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class TrainedModel:
    """A model trained by :func:`train_on_frames`.

    Attributes:
        onnx_path: the exported model (in ``out_dir``, or a temporary folder).
        metadata: what is stored in the model (method, net, normalisation...).
        summary: a few lines for the log: validation scores, time, stop reason.
        history_csv, plot_png: the validation curve (PNG None without matplotlib).
        warnings: plain-language notes when training was cut short by the
            time limit or the model barely beats the untouched input (also
            in ``metadata["training"]["notes"]``, flags in ``["flags"]``).
        temp_dir: the temporary folder that holds these files when no
            ``out_dir`` was given; :meth:`cleanup` removes it once they are
            saved elsewhere (in the library: ``ModelLibrary.add``).
    """

    onnx_path: Path
    metadata: dict
    summary: str
    history_csv: Path | None = None
    plot_png: Path | None = None
    warnings: list[str] = field(default_factory=list)
    temp_dir: Path | None = None

    def cleanup(self) -> None:
        """Remove :attr:`temp_dir` and the files in it (nothing when the caller chose ``out_dir``)."""
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def _sub(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    """Map a callback's [0, 1] onto [lo, hi] of the caller's progress."""
    if progress is None:
        return None
    return lambda f, msg: progress(lo + (hi - lo) * min(max(f, 0.0), 1.0), msg)


def _meta_value(meta, key: str):
    if meta is None:
        return None
    if isinstance(meta, dict):
        return meta.get(key)
    return getattr(meta, key, None)


def _gain_e_per_unit(meta, info: LayoutInfo) -> float | None:
    """Electrons per data unit from EGAIN/cvf (e/ADU), in the units of the working data.

    uint16 data are in ADU: the header's gain as it is. Float data are
    Siril's [0, 1], one unit being 65535 ADU: the same gain times 65535, so
    a frame and its float32 copy get the same noise model (the float copy
    used to ignore the gain and fit its own: one cause of the real Siril
    denoising a float32 frame 1.4x where its uint16 copy got 1.9x).
    """
    g = _meta_value(meta, "egain")
    if not g or not 0.01 < float(g) < 100:
        return None
    return float(g) if info.dtype == np.uint16 else float(g) * 65535.0


def _noise_and_normaliser(work, info: LayoutInfo, meta, transform: str = "auto") -> tuple[NoiseModel, Normaliser]:
    frames = work if isinstance(work, list) else [work]
    nm = estimate_noise_model(frames, shared_channels=info.cfa_pattern is not None, gain_e_per_unit=_gain_e_per_unit(meta, info))
    if transform == "gat" and not np.all(nm.a > 0):
        log.warning("No signal-dependent noise found in this image; using a linear normalisation.")
        transform = "linear"
    return nm, Normaliser.fit(frames, nm, transform)


def _registration_eta(progress: Progress | None, network, channels: int, cfg, time_budget: float | None) -> Progress | None:
    """Registration's progress on [0, 0.05], its messages with the time left for the whole run.

    Training time is guessed before it starts, from the steps' convolution
    FLOPs at half of the measured matmul rate (the share a step reaches on
    a CPU, see docs/benchmark.md); training's own messages then measure it.
    """
    if progress is None:
        return None
    from .training import default_threads, matmul_rate, step_flops

    threads = cfg.threads or default_threads()
    guess = cfg.max_steps * step_flops(network, None, channels, cfg.crop, cfg.batch) / (0.5 * matmul_rate(threads) * 1e9)
    if time_budget:
        guess = min(guess, time_budget)
    t0 = time.perf_counter()

    def cb(f: float, msg: str) -> None:
        f = min(max(f, 0.0), 1.0)
        reg_left = (time.perf_counter() - t0) * (1 - f) / f if f > 0 else 0.0
        from .training import _duration

        progress(0.05 * f, f"{msg}; ~{_duration(reg_left + guess + 3.0)} left (registration, training, export)")

    return cb


def _build(net_name: str, spec: MethodSpec, channels: int, seed: int, recipe: dict | None):
    """The network, seeded; ``net_options`` (width, levels...) apply to the method's own network only."""
    import torch

    from .networks import build_network

    options = {}
    if net_name == spec.network:
        options = {**spec.net_options, **(recipe or {}).get("net_options", {})}
    torch.manual_seed(seed)  # the initial weights
    return build_network(net_name, channels, **options)


def _after_training(network, channels: int, pixels: float) -> Callable[[float], float]:
    """Seconds of export (~2 s) plus tiled inference over ``pixels``, from the GFLOP/s training reached."""
    from .networks import forward_flops_per_pixel

    per_px = forward_flops_per_pixel(network, channels)
    return lambda gflops: 2.0 + 1.5 * pixels * per_px / max(gflops, 1e-3) / 1e9  # 1.5: tile overlap


def _fit_crop(crop: int, shape: tuple[int, int], multiple: int, fraction: float = 1.0) -> int:
    """The training crop, no larger than ``fraction`` of the image's smaller side.

    Rounded down to a multiple of the network's ``multiple`` and of 4 (the
    zero-shot samplers halve it); at least 16 pixels.
    """
    step = math.lcm(4, max(int(multiple), 1))
    limit = int(min(shape) * fraction) // step * step
    return max(16, min(crop, limit))


def _model_metadata(method: str, net_name: str, info: LayoutInfo, channels: int, nm: NoiseModel, norm: Normaliser,
                    result, meta, frames: int, extra: dict | None = None) -> dict:
    camera = {}
    if meta is not None:
        for key in ("instrument", "gain", "offset", "egain", "exposure", "temperature", "filter", "xbinning",
                    "ybinning", "bayer_pattern", "stackcnt", "livetime"):
            v = _meta_value(meta, key)
            if v is not None:
                camera[key] = v
    training = result.summary() if result is not None else {}
    training.update({"frames": frames, "date": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if extra:
        training.update(extra)
    return {
        "method": method,
        "network": net_name,
        "channels": channels,
        "cfa": info.cfa_pattern,
        "data_units": "adu" if info.dtype == np.uint16 else "float",
        "is_stack": _is_stack(meta),
        "normalisation": norm.to_dict(),
        "inverse": "algebraic",  # trained against linear targets (methods/domain.py)
        "noise_model": nm.to_dict(),
        "training": training,
        "camera": camera,
        "package": f"siril-denoise {__version__}",
    }


def keep_saturated(work: np.ndarray, denoised: np.ndarray) -> np.ndarray:
    """Keep the input's clipped pixels as they were (in place; returns ``denoised``).

    A channel whose maximum value is shared by 4 or more pixels is taken to
    be clipped there (sensor or ADC saturation, at whatever level the camera
    clips): such pixels carry no noise to remove, and a denoiser would only
    pull the flat tops of saturated stars down.
    """
    for k in range(work.shape[0]):
        vmax = work[k].max()
        plateau = work[k] >= vmax
        if np.count_nonzero(plateau) >= 4:
            denoised[k][plateau] = work[k][plateau]
    return denoised


def sky_masks(work: np.ndarray) -> np.ndarray:
    """Sky masks ``(C, H, W)`` of ``work`` over the region the quality report measures, False elsewhere.

    One computation serves :func:`restore_background_level` (its sky offset
    is then measured on up to 8 megapixels at the centre, which leaves it an
    error of σ/2000 or less) and the report, which measures the same region.
    """
    rows, cols = measured_region(work.shape[1:])
    masks = np.zeros(work.shape, dtype=bool)
    for k in range(work.shape[0]):
        masks[k, rows, cols] = background_mask(work[k, rows, cols])
    return masks


class _Stages:
    """Adds the seconds since the previous call to ``timings[name]`` (does nothing without a dict)."""

    def __init__(self, timings: dict | None) -> None:
        self.timings, self.t = timings, time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + now - self.t
            self.t = now


def _protect_and_finish(work: np.ndarray, denoised: np.ndarray, nm: NoiseModel, info: LayoutInfo, strength: float,
                        protect: bool, stage: _Stages | None = None) -> tuple[np.ndarray, QualityReport]:
    """Post-processing of the network's output (data units): protect, strength blend, layout, report."""
    stage = stage or _Stages(None)
    masks = sky_masks(work)
    stage("report")
    if protect:
        for scale in (1.5, 0.7):
            denoised, _ = restore_structure(work, denoised, nm, scale=scale)
        denoised, _ = restore_background_level(work, denoised, masks)
        # faint stars: their loss is not significant in the removed part, so find them in the result
        denoised, _ = restore_sources(work, denoised, nm)
    stage("protect")
    out = _finish(work, denoised, info, strength, masks)
    stage("report")
    return out


def _finish(work: np.ndarray, denoised: np.ndarray, info: LayoutInfo, strength: float,
            masks: np.ndarray | None = None) -> tuple[np.ndarray, QualityReport]:
    """Blend, convert back to the caller's layout and report; ``denoised`` is overwritten."""
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"Strength must be between 0 (original) and 1 (fully denoised); got {strength}.")
    blended = keep_saturated(work, denoised)
    # work + strength · (denoised − work), in place: the same float32 operations without full-size temporaries
    np.subtract(blended, work, out=blended)
    blended *= np.float32(strength)
    blended += work
    data = from_working(blended, info)
    del blended, denoised
    after, _ = to_working(data, info.cfa_pattern) if strength > 0 else (work, info)
    saturation = info.saturation if info.dtype == np.uint16 or float(work.max()) <= 1.0 else None
    return data, quality_report(work, after, saturation=saturation, sky_masks=masks)


def _infer(model, z: np.ndarray, *, tile: int, overlap: int | None, use_gpu: bool, providers, progress,
           should_cancel) -> tuple[np.ndarray, OnnxDenoiser]:
    den = model if isinstance(model, OnnxDenoiser) else OnnxDenoiser(model, use_gpu=use_gpu, providers=providers)
    if overlap is None:
        overlap = Options(tile=tile).tile_overlap()
    # One tile per call on the CPU: onnxruntime's work space grows with the
    # batch (U-Net, 256² tiles: +160 MB at 1, +500 MB at 4) for no measurable
    # speed; GPUs gain from batches.
    batch = 4 if den.on_gpu else 1
    out = run_tiled(den, z, tile=tile, overlap=overlap, batch=batch, progress=progress, should_cancel=should_cancel)
    return out, den


#: :func:`noise_correlation` above which the user is told that single-image methods will keep much of the
#: noise (not for raw CFA data, whose packed planes are never resampled): 0.22-0.29 for a mean of 16 subs
#: registered with bilinear sub-pixel shifts; 0.00-0.05 on the bench's white-noise scenes, 0.02 on a raw
#: Seestar sub.
CORRELATED_NOISE = 0.15


def noise_correlation(work: np.ndarray, size: int = 512) -> float:
    """Correlation of the noise of neighbouring pixels in ``work`` ``(C, H, W)``, the largest over channels and axes.

    For noise of correlation ρ between neighbours and ~0 two pixels apart,
    differences of neighbours have variance 2σ²(1 − ρ) and differences two
    pixels apart 2σ²: ρ = 1 − MAD²(1-px differences) / MAD²(2-px
    differences), robust (median absolute deviations), over the sky
    (:func:`~siril_denoise.measure.background_mask`) of a central crop of
    at most ``size`` px, so that stars and edges do not count.
    """
    from .noise import mad_sigma

    h, w = work.shape[1:]
    y0, x0 = max((h - size) // 2, 0), max((w - size) // 2, 0)
    best = 0.0
    for k in range(work.shape[0]):
        x = work[k, y0:y0 + size, x0:x0 + size].astype(np.float64)
        sky = background_mask(x.astype(np.float32))
        for axis in (0, 1):
            n = x.shape[axis]
            a, b, c = (np.take(v, range(i, n - 2 + i), axis=axis) for v in (x,) for i in (0, 1, 2))
            ok = np.take(sky, range(0, n - 2), axis=axis) & np.take(sky, range(1, n - 1), axis=axis) & \
                np.take(sky, range(2, n), axis=axis)
            if ok.sum() < 1000:
                continue
            s1, s2 = mad_sigma((b - a)[ok]), mad_sigma((c - a)[ok])
            if s2 > 0:
                best = max(best, 1.0 - (s1 / s2) ** 2)
    return float(min(max(best, 0.0), 1.0))


def denoise_image(
    data: np.ndarray,
    *,
    method: str = Options.zero_shot,
    net: str | None = None,
    cfa_pattern: str | None = None,
    strength: float = Options.strength,
    time_budget: float | None = None,
    use_gpu: bool = Options.use_gpu,
    providers: list | None = None,
    tile: int = Options.tile,
    overlap: int | None = Options.overlap,
    protect: bool = Options.protect,
    meta=None,
    save_model: str | Path | None = None,
    progress: Progress | None = None,
    should_cancel: Cancel | None = None,
    seed: int = Options.seed,
    max_steps: int | None = None,
    threads: int | None = None,
    recipe: dict | None = None,
) -> DenoiseResult:
    """Denoise one image with a zero-shot method trained on the image itself.

    Args:
        data: Siril layout, ``(H, W)`` or ``(C, H, W)``, uint16 (ADU) or
            float32 (usually [0, 1]).
        method: ``"zsn2n"`` (Zero-Shot Noise2Noise, fast) or ``"nb2nb"``
            (Neighbor2Neighbor, a U-Net, slower). Both need pixel noise that
            is independent between neighbours: use them on raw or calibrated
            subs, not on registered (resampled) frames.
        net: network name (default: the method's, :attr:`MethodSpec.network`).
        cfa_pattern: Bayer pattern of a raw mosaic ('RGGB'...), else None.
        strength: 0 = original, 1 = fully denoised, linear blend in data units.
        time_budget: optional cap on training seconds (None: none). A run it
            stops is flagged as cut short; work is counted in ``max_steps``.
        use_gpu, providers: where training (torch) and inference (onnxruntime) run.
        tile: inference tile side in pixels (working resolution).
        overlap: pixels shared by neighbouring tiles (default: tile // 4, at least 32).
        protect: give back the significant, non-noise part of what the
            network removed (star cores; see :mod:`siril_denoise.protect`).
        meta: optional :class:`siril_denoise.io.ImageMeta` or dict (EGAIN,
            STACKCNT... recorded in the model).
        save_model: also keep the trained ``.onnx`` model at this path.
        max_steps: training steps (default: the method's recipe, ``method_spec(method).recipe.steps``).
        seed: seeds the network's initial weights and the crops: the same
            input, seed, steps and ``threads`` give the same output.
        threads: torch threads for training (default: half the CPUs, fixed
            whatever the load; see :func:`siril_denoise.training.default_threads`).
        recipe: overrides of the method's training recipe (:attr:`MethodSpec.recipe`):
            :class:`~siril_denoise.training.TrainConfig` fields, and
            ``net_options`` for the network (``features``, ``levels``...);
            for experiments such as the benchmark's recipe sweep.
        progress: ``progress(fraction, message)``; should_cancel: polled often.

    Returns:
        :class:`DenoiseResult` with data in the input's dtype and layout.
    """
    import torch

    from .export import export_onnx
    from .training import train

    if method not in single_image_methods():
        raise InputError(f"denoise trains on the image itself: choose one of {', '.join(single_image_methods())} "
                         f"(got {method!r}); for Noise2Noise across frames use train/apply.")
    spec = method_spec(method)
    work, info = to_working(data, cfa_pattern)
    corr = noise_correlation(work) if info.cfa_pattern is None and min(work.shape[1:]) >= 64 else 0.0
    correlated = None
    if corr > CORRELATED_NOISE:
        correlated = (f"The noise of this image is correlated between neighbouring pixels ({corr:.2f}; registration "
                      "resampling, as in a stack, does that). ")
        if spec.name == "n2v":
            correlated += "Noise2Void is the single-image method that removes such noise (5.3x on a test stack)."
            log.info(correlated)
        else:
            correlated += (f"{spec.name} learns to keep much of it (ZS-N2N: 1.2x on a test stack): use Noise2Void "
                           "(n2v; 5.3x there), or denoise the subs before stacking.")
            log.warning(correlated)
    nm, norm = _noise_and_normaliser(work, info, meta)
    z = norm.forward(work)
    log.info("Noise model: %s normalisation, background noise %s", norm.transform, np.round(nm.sigma, 4).tolist())
    net_name = net or spec.network
    network = _build(net_name, spec, work.shape[0], seed, recipe)
    m = spec.build(TrainingData([work], norm, options={**spec.method_options, **(recipe or {}).get("method_options", {})}))
    cfg = spec.recipe.train_config(recipe, max_steps=max_steps, time_budget=time_budget, seed=seed,
                                   device="auto" if use_gpu else "cpu", threads=threads)
    cfg.crop = _fit_crop(cfg.crop, work.shape[1:], getattr(network, "multiple", 1), spec.crop_fraction)
    result = train(network, m, cfg, progress=_sub(progress, 0.0, 0.75), should_cancel=should_cancel,
                   after=_after_training(network, work.shape[0], work.shape[1] * work.shape[2]))
    metadata = _model_metadata(method, net_name, info, work.shape[0], nm, norm, result, meta, 1,
                               {"noise_correlation": round(corr, 3)} if correlated else None)
    network.to(torch.device("cpu"))
    with tempfile.TemporaryDirectory(prefix="siril-denoise-") as tmp:
        path = Path(save_model) if save_model else Path(tmp) / "model.onnx"
        if progress:
            progress(0.76, "Exporting the model to ONNX")
        export_onnx(network, path, channels=work.shape[0], metadata=metadata)
        zh, den = _infer(path, z, tile=tile, overlap=overlap, use_gpu=use_gpu, providers=providers,
                         progress=_sub(progress, 0.8, 1.0), should_cancel=should_cancel)
        metadata = den.metadata
    denoised = norm.inverse(zh, unbiased=False)
    del zh
    out, report = _protect_and_finish(work, denoised, nm, info, strength, protect)
    return DenoiseResult(out, report, metadata, Path(save_model) if save_model else None, den.providers,
                         ([correlated] if correlated else []) + list(result.notes) + list(report.warnings))


def check_model_fits(metadata: dict, channels: int, cfa_pattern: str | None, source: str = "The model") -> None:
    """Raise ModelError when a model's channels or CFA mode do not fit the data."""
    m_ch, m_cfa = int(metadata.get("channels", -1)), metadata.get("cfa")
    kind = lambda ch, cfa: f"raw Bayer {cfa} data (4 packed planes)" if cfa else ("mono" if ch == 1 else f"{ch}-channel colour")
    if m_ch != channels or (m_cfa or None) != (cfa_pattern or None):
        raise ModelError(
            f"{source} was trained on {kind(m_ch, m_cfa)} but this image is {kind(channels, cfa_pattern)}. "
            "Choose a model trained on the same kind of data, or train one on this session."
        )


def _mismatch_warnings(metadata: dict, nm: NoiseModel, info: LayoutInfo, meta, work: np.ndarray) -> list[str]:
    out = []
    if bool(metadata.get("is_stack")) != _is_stack(meta) and meta is not None:
        out.append(
            "The model was trained on a stack but this image is a single sub: expect over-smoothing."
            if metadata.get("is_stack") else
            "The model was trained on single subs but this image is a stack: expect weaker denoising and lost faint-star flux."
        )
    trained = metadata.get("noise_model", {})
    units_same = metadata.get("data_units") == ("adu" if info.dtype == np.uint16 else "float")
    if units_same and trained.get("a") and len(trained["a"]) == work.shape[0]:
        ratio = noise_ratio(NoiseModel.from_dict(trained), nm, work)
        if ratio > NOISE_RATIO_LIMIT or ratio < 1.0 / NOISE_RATIO_LIMIT:
            out.append(f"The noise of this image is {ratio:.2f}× that of the training data at the same brightness; "
                       "a stack or another camera setting? Results may be weaker.")
    return out


#: Noise ratio (image over training data) beyond which a model is flagged as trained for other noise.
NOISE_RATIO_LIMIT = 1.5


def noise_ratio(trained: NoiseModel, nm: NoiseModel, work: np.ndarray) -> float:
    """How much noisier ``work`` is than the model's training data, at the brightness it has.

    Both noise models are evaluated at this image's sky (median) and bright
    (99.5th percentile) levels of each channel; the ratio of predicted noise
    std (image over training) farthest from 1 is returned. Comparing
    predictions over the image's own range, rather than the gain ``a``
    alone, keeps faint images quiet: their slope is poorly measured, but both
    models predict the same noise where the data are.
    """
    worst = 1.0
    for k in range(work.shape[0]):
        for level in np.percentile(work[k], (50.0, 99.5)):
            v_t = trained.a[k] * level + trained.c[k]
            v_i = nm.a[k] * level + nm.c[k]
            if v_t <= 0 or v_i <= 0:
                continue
            r = math.sqrt(v_i / v_t)
            if abs(math.log(r)) > abs(math.log(worst)):
                worst = r
    return worst


def apply_model(
    data: np.ndarray,
    model: str | Path | bytes,
    *,
    cfa_pattern: str | None = None,
    strength: float = Options.strength,
    use_gpu: bool = Options.use_gpu,
    providers: list | None = None,
    tile: int = Options.tile,
    overlap: int | None = Options.overlap,
    protect: bool = Options.protect,
    meta=None,
    progress: Progress | None = None,
    should_cancel: Cancel | None = None,
    timings: dict | None = None,
) -> DenoiseResult:
    """Denoise an image with a saved siril-denoise ``.onnx`` model (no torch needed).

    The image is normalised the way the model was trained (the transform
    recorded in the model; noise parameters re-estimated on this image so
    its noise sits at σ ≈ 1 in the network domain). Options as in
    :func:`denoise_image`. ``timings``: when a dict is given, the seconds of
    each stage are stored in it: ``"prepare"`` (model, layout, noise
    model, forward transform), ``"inference"``, ``"protect"`` (inverse
    transform and :mod:`~siril_denoise.protect`), ``"report"`` (sky masks,
    blend, layout, quality report); see ``siril-denoise bench --speed``.

    Raises:
        ModelError: unreadable model, or channels / CFA mode do not fit.
    """
    stage = _Stages(timings)
    den = OnnxDenoiser(model, use_gpu=use_gpu, providers=providers)
    md = den.metadata
    pattern = normalise_pattern(cfa_pattern)
    if md.get("cfa") and pattern is None and np.asarray(data).ndim == 2:
        raise ModelError(f"The model was trained on raw Bayer {md['cfa']} data; this image has no Bayer pattern "
                         "(is it debayered?). Give the pattern or choose a model trained on such images.")
    work, info = to_working(data, pattern)
    check_model_fits(md, work.shape[0], pattern)
    transform = md.get("normalisation", {}).get("transform", "auto")
    nm, norm = _noise_and_normaliser(work, info, meta, transform)
    warnings = _mismatch_warnings(md, nm, info, meta, work)
    for w in warnings:
        log.warning(w)
    z = norm.forward(work)
    stage("prepare")
    zh, den = _infer(den, z, tile=tile, overlap=overlap, use_gpu=use_gpu, providers=providers,
                     progress=progress, should_cancel=should_cancel)
    providers_used = den.providers
    del z, den  # the session's work space is freed before the full-frame passes
    stage("inference")
    denoised = norm.inverse(zh, unbiased=md.get("inverse") == "unbiased")
    del zh
    stage("protect")
    out, report = _protect_and_finish(work, denoised, nm, info, strength, protect, stage)
    return DenoiseResult(out, report, md, Path(model) if isinstance(model, (str, Path)) else None, providers_used,
                         warnings + list(report.warnings))


def train_on_frames(
    frames: Sequence[np.ndarray],
    *,
    homographies: Sequence[np.ndarray] | None = None,
    cfa_pattern: str | None = None,
    method: str = Options.train_method,
    net: str | None = None,
    time_budget: float | None = None,
    use_gpu: bool = Options.use_gpu,
    meta=None,
    progress: Progress | None = None,
    should_cancel: Cancel | None = None,
    seed: int = Options.seed,
    max_steps: int | None = None,
    out_dir: str | Path | None = None,
    validation_frame: int | None = None,
    threads: int | None = None,
    recipe: dict | None = None,
) -> TrainedModel:
    """Learn a denoiser from the frames of one session.

    Args:
        frames: N frames of one target in Siril layout, same shape and dtype.
            For ``n2n`` N ≥ 2 (≥ 3 to hold one frame out for validation).
        homographies: one 3×3 per frame mapping it onto the reference frame
            (full-resolution pixel coordinates, as Siril stores them);
            identities for frames already resampled; None to register here.
        cfa_pattern: Bayer pattern of raw mosaics: training happens on the
            4 packed planes.
        method: ``"n2n"`` (pairs across frames), or ``"zsn2n"``/``"nb2nb"``
            trained on crops of all frames.
        validation_frame: the frame held out for validation (default: the
            last one). Never used for training.
        out_dir: where the model and its validation curve go (default: a
            new temporary folder).
        time_budget, max_steps, seed, threads, recipe: as in :func:`denoise_image`.

    Returns:
        :class:`TrainedModel`.
    """
    import torch

    from .export import export_onnx
    from .pairs import full_to_packed_homography
    from .training import save_history, train

    spec = method_spec(method)
    frames = list(frames)
    if len(frames) < spec.min_frames:
        raise InputError(f"{spec.label} needs at least {spec.min_frames} frames of the same target "
                         f"(got {len(frames)}); for a single image use a zero-shot method "
                         f"({' or '.join(single_image_methods())}).")
    shapes = {tuple(np.asarray(f).shape) for f in frames}
    if len(shapes) > 1:
        raise InputError(f"The frames have different sizes ({', '.join('x'.join(map(str, s)) for s in sorted(shapes))}); "
                         "all frames of a session must have the same size and layout.")
    if progress:
        progress(0.0, "Preparing frames")
    works, infos = [], []
    for k, f in enumerate(frames):
        try:
            w, info = to_working(f, cfa_pattern)
        except InputError as exc:
            raise InputError(f"Frame {k + 1}: {exc}") from None
        works.append(w)
        infos.append(info)
    info = infos[0]
    nm, norm = _noise_and_normaliser(works, info, meta)
    log.info("Noise model: %s normalisation, background noise %s", norm.transform, np.round(nm.sigma, 4).tolist())
    net_name = net or spec.network
    network = _build(net_name, spec, works[0].shape[0], seed, recipe)
    cfg = spec.recipe.train_config(recipe, max_steps=max_steps, time_budget=time_budget, seed=seed,
                                   device="auto" if use_gpu else "cpu", threads=threads)
    if not spec.single_image:
        n = len(works)
        if homographies is not None:
            if len(homographies) != n:
                raise InputError(f"Got {len(homographies)} homographies for {n} frames.")
            homographies = [np.asarray(h, dtype=np.float64) for h in homographies]
            if info.cfa_pattern:
                homographies = [full_to_packed_homography(h) for h in homographies]
        else:
            from .pairs import register

            homographies = register(works, progress=_registration_eta(progress, network, works[0].shape[0], cfg, time_budget),
                                    should_cancel=should_cancel)
    m = spec.build(TrainingData(works, norm, homographies if not spec.single_image else None, validation_frame,
                                should_cancel, {**spec.method_options, **(recipe or {}).get("method_options", {})},
                                info.cfa_pattern))
    extra = dict(getattr(m, "metadata", {}))
    cfg.crop = _fit_crop(cfg.crop, works[0].shape[1:], getattr(network, "multiple", 1), spec.crop_fraction)
    result = train(network, m, cfg, progress=_sub(progress, 0.05, 0.95), should_cancel=should_cancel,
                   after=lambda gflops: 3.0)  # export, parity check and the training curve
    metadata = _model_metadata(method, net_name, info, works[0].shape[0], nm, norm, result, meta, len(works), extra)
    network.to(torch.device("cpu"))
    temp = None if out_dir else Path(tempfile.mkdtemp(prefix="siril-denoise-"))
    out = Path(out_dir) if out_dir else temp
    out.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(0.96, "Exporting the model to ONNX")
    onnx_path = out / "model.onnx"
    csv_path, png_path = out / "training_curve.csv", out / "training_curve.png"
    try:
        rep = export_onnx(network, onnx_path, channels=works[0].shape[0], metadata=metadata)
        save_history(result.history, csv_path, png_path)
    except BaseException:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        raise
    summary = (
        f"{method} / {net_name} on {len(works)} frame(s), {norm.transform} normalisation: "
        f"{result.steps} steps in {result.seconds:.0f} s on {result.device} (stopped: {result.stopped}); "
        f"best validation loss {result.best_val:.5g} at step {result.best_step} "
        f"({result.gain:.0%} below the untouched input's {result.val_input:.5g}); "
        f"{result.steps_per_s:.2f} steps/s, {result.pixels_per_s / 1e6:.2g} Mpx/s, {result.mfu:.0%} of the matmul rate; "
        f"ONNX parity {rep.max_rel_error:.1e}"
    )
    if progress:
        progress(1.0, "Training done")
    return TrainedModel(onnx_path, metadata, summary, csv_path, png_path if png_path.exists() else None,
                        list(result.notes), temp)
