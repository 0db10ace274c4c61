"""The three things the Siril scripts do, written once for the dialog and for ``pyscript``.

- :func:`denoise_loaded_image`: the image loaded in Siril, through a saved
  model or a zero-shot method trained on it, written back undoably;
- :func:`denoise_loaded_sequence`: every selected frame of the loaded
  sequence, written as a new prefixed sequence created at the end (originals
  untouched; a cancel or an error removes the frames this run wrote);
- :func:`train_on_loaded_sequence`: the selected frames become Noise2Noise
  pairs; the model is validated and saved in the library.

A job gets a *host* (:class:`siril_denoise.siril.adapter.SirilHost`, or any
object with the same methods), its :class:`JobOptions`, ``progress(fraction,
message)`` and ``should_cancel()``. It never imports ``sirilpy``; the engine
is reached through :func:`engine`, so tests can swap it.
"""

from __future__ import annotations

import dataclasses
import inspect
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import Cancelled, DenoiseError, InputError
from .settings import ZERO_SHOT_METHODS, Settings

Progress = Callable[[float, str], None]
ShouldCancel = Callable[[], bool]


@dataclass
class JobOptions(Settings):
    """Everything a job needs to know: the remembered :class:`Settings`, plus

    ``name``: library name for a trained model (None: a name from the camera);
    ``library``: the model library folder;
    ``providers``: onnxruntime providers in order (from the adapter).
    """

    name: str | None = None
    library: Path | None = None
    providers: list[Any] | None = None
    #: Called once before anything is trained (the host installs PyTorch there).
    prepare_training: Callable[[], Any] | None = field(default=None, repr=False)

    def training_ready(self) -> None:
        """Run :attr:`prepare_training` once."""
        if self.prepare_training is not None:
            hook, self.prepare_training = self.prepare_training, None
            hook()


@dataclass
class JobResult:
    """What a finished job reports: text for the log, and what it made."""

    text: str
    warnings: list[str] = field(default_factory=list)
    model_name: str | None = None
    sequence: str | None = None


@dataclass
class Choice:
    """One entry of the model/method picker."""

    key: str          # "zsn2n", "nb2nb" or "model:<name>"
    label: str
    usable: bool = True
    tooltip: str = ""


def engine() -> Any:
    """The engine's public entry points (imported late: torch may just have been installed)."""
    from .. import pipeline

    return pipeline


def library_for(host: Any, opts: JobOptions) -> Any:
    from ..library import ModelLibrary

    return ModelLibrary(opts.library or host.models_dir())


def cfa_for(ndim: int, meta: Any) -> str | None:
    """The Bayer pattern to give the engine: only for a mono array that is still a raw mosaic."""
    pattern = getattr(meta, "bayer_pattern", None)
    if ndim != 2 or not pattern or len(pattern) != 4:
        return None
    return str(pattern).upper()


def _without_pattern(meta: Any) -> Any:
    """``meta`` with no Bayer pattern (the frame is no longer a mosaic)."""
    if dataclasses.is_dataclass(meta) and not isinstance(meta, type):
        return dataclasses.replace(meta, bayer_pattern=None)
    setattr(meta, "bayer_pattern", None)
    return meta


def lost_mosaic(frames: list[Any], pattern: str | None) -> float | None:
    """The noise correlation of the first frame that carries a Bayer pattern but is no longer a
    mosaic (resampled: see :func:`siril_denoise.layout.mosaic_noise_correlation`), else None."""
    from ..layout import INTERPOLATED_MOSAIC_CORRELATION, mosaic_noise_correlation

    if not pattern:
        return None
    for data in frames:
        corr = mosaic_noise_correlation(data)
        if corr > INTERPOLATED_MOSAIC_CORRELATION:
            return corr
    return None


def _lost_mosaic_message(name: str, pattern: str, corr: float) -> str:
    return (f"The frames of '{name}' say BAYERPAT={pattern} but are no longer a raw mosaic: "
            f"neighbouring pixels share their noise (correlation {corr:.2f}, ~0 in a raw mosaic), "
            "as when Siril's `register` resamples raw frames. They are treated as mono images, "
            "and a model trained on them is not offered for raw frames. For a Bayer (CFA) model, "
            "train on the original frames registered with `register NAME -2pass`.")


def sequence_layout(host: Any, info: Any) -> tuple[int, Any]:
    """ndim and :class:`ImageMeta` of the sequence's first selected frame, without its Bayer
    pattern when the frames are no longer a mosaic (one or two frames' pixels are read: the
    reference frame of a resampled sequence is left as it was, so another one is checked too)."""
    if getattr(info, "layout", None) is not None:
        return info.layout
    first = info.selected[0]
    ndim, meta = host.frame_meta(info, first)
    pattern = cfa_for(ndim, meta)
    if pattern:
        others = [i for i in info.selected if i != first and i != info.reference][:1]
        frames = [host.read_frame(info, i)[0] for i in [first, *others]]
        corr = lost_mosaic(frames, pattern)
        if corr is not None:
            host.log(_lost_mosaic_message(info.name, pattern, corr), "warning")
            meta = _without_pattern(meta)
    info.layout = (ndim, meta)
    return ndim, meta


def network_channels(ndim: int, cfa: str | None) -> int:
    """What the network is fed: 4 planes for a packed Bayer mosaic, else 1 (mono) or 3 (RGB)."""
    if cfa:
        return 4
    return 1 if ndim == 2 else 3


def picker_choices(library: Any, ndim: int, meta: Any) -> list[Choice]:
    """Library models ranked for this image (usable first), then the zero-shot methods."""
    cfa = cfa_for(ndim, meta)
    choices = [Choice("auto", "Best matching saved model, else ZS-N2N", True,
                      "Picks the library model that fits this camera and settings best.")]
    for m in library.match(meta, channels=network_channels(ndim, cfa), cfa=cfa):
        why = "; ".join(m.reasons)
        label = f"Model: {m.entry.name}" + (f"  (match {m.score:.2f})" if m.usable else "  (does not fit)")
        flag = getattr(m.entry, "flag_text", "")
        if flag:
            label += f"  {flag}"
            why = "; ".join(x for x in (why, flag) if x)
        choices.append(Choice(f"model:{m.entry.name}", label, m.usable, why))
    choices += [Choice(k, v, True, "Trains a small network on this very image, then applies it.")
                for k, v in ZERO_SHOT_METHODS.items()]
    return choices


def _resolve(host: Any, opts: JobOptions, ndim: int, meta: Any, cfa: str | None) -> tuple[str, Path | None, str]:
    """(method, model path or None, label) for the user's choice, with the reasons logged."""
    choice = opts.choice or "auto"
    if choice in ZERO_SHOT_METHODS:
        return choice, None, choice
    library = library_for(host, opts)
    if choice.startswith("model:"):
        wanted = choice[len("model:"):]
        path = library.resolve(wanted)
        for m in library.match(meta, channels=network_channels(ndim, cfa), cfa=cfa):
            if Path(m.entry.path).resolve() == Path(path).resolve() and not m.usable:
                host.log(f"Model {m.entry.name} was trained on other data: {'; '.join(m.reasons)}. "
                         "Using it because you asked for it.", "warning")
        return "model", Path(path), Path(path).stem
    if choice != "auto":
        raise InputError(f"Unknown method {choice!r}: use a model name, zsn2n or nb2nb.")
    matches = library.match(meta, channels=network_channels(ndim, cfa), cfa=cfa)
    for m in matches:
        if not m.usable:
            host.log(f"Library model {m.entry.name} does not fit: {'; '.join(m.reasons)}")
    usable = [m for m in matches if m.usable]
    if usable:
        best = usable[0]
        host.log(f"Using library model {best.entry.name} (match {best.score:.2f}).")
        return "model", Path(best.entry.path), best.entry.name
    host.log("No saved model fits this data; training ZS-N2N on it instead.")
    return "zsn2n", None, "zsn2n"


def _kwargs_for(func: Callable, **kwargs: Any) -> dict:
    """Drop options the engine function does not take (e.g. ``overlap``)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _denoise(data: Any, meta: Any, cfa: str | None, method: str, model: Path | None,
             opts: JobOptions, progress: Progress, should_cancel: ShouldCancel) -> Any:
    eng = engine()
    common = dict(cfa_pattern=cfa, strength=opts.strength, use_gpu=opts.use_gpu,
                  providers=opts.providers, tile=opts.tile, overlap=opts.overlap, meta=meta,
                  progress=progress, should_cancel=should_cancel)
    if model is not None:
        return eng.apply_model(data, model, **_kwargs_for(eng.apply_model, **common))
    opts.training_ready()
    return eng.denoise_image(data, **_kwargs_for(eng.denoise_image, method=method,
                                                 time_budget=opts.time_budget or None,
                                                 max_steps=opts.steps or None, **common))


def _report_text(result: Any) -> tuple[str, list[str]]:
    report = getattr(result, "report", None)
    if report is None:
        return "", []
    text = report.as_text() if hasattr(report, "as_text") else str(report)
    return text, list(getattr(report, "warnings", []) or [])


def _check_cancel(should_cancel: ShouldCancel) -> None:
    if should_cancel():
        raise Cancelled()


# --------------------------------------------------------------------------


def denoise_loaded_image(host: Any, opts: JobOptions, progress: Progress,
                         should_cancel: ShouldCancel) -> JobResult:
    """Denoise the loaded image and write it back (one undo step)."""
    data, meta = host.read_image()
    cfa = cfa_for(data.ndim, meta)
    method, model, label = _resolve(host, opts, data.ndim, meta, cfa)
    if cfa:
        host.log(f"Raw Bayer mosaic ({cfa}): denoised as 4 colour planes.")
    progress(0.0, f"Denoising with {label}")
    result = _denoise(data, meta, cfa, method, model, opts, progress, should_cancel)
    _check_cancel(should_cancel)
    if result.data.shape != data.shape or result.data.dtype != data.dtype:
        raise DenoiseError(f"The engine returned {result.data.shape} {result.data.dtype} for a "
                           f"{data.shape} {data.dtype} image; nothing was written.")
    host.write_image(result.data, f"siril-denoise {label} strength {opts.strength:.2f}")
    progress(1.0, "Done")
    text, warnings = _report_text(result)
    warnings = list(getattr(result, "warnings", None) or warnings)  # training notes (cut short...) included
    head = f"Denoised the image with {label} (strength {opts.strength:.2f}). Edit > Undo restores it."
    return JobResult("\n".join(x for x in (head, text) if x), warnings)


def denoise_loaded_sequence(host: Any, opts: JobOptions, progress: Progress,
                            should_cancel: ShouldCancel) -> JobResult:
    """Denoise every selected frame into ``<prefix><seqname>`` and create that sequence."""
    info = host.sequence_info(need_regular=True)
    if not info.selected:
        raise InputError(f"No frame of sequence '{info.name}' is selected. Select frames in the "
                         "Sequence tab or the frame list, then run the script again.")
    prefix = opts.prefix or "dn_"
    root = prefix + info.name
    ndim, meta0 = sequence_layout(host, info)
    cfa0 = cfa_for(ndim, meta0)  # one layout for every frame of the sequence
    method, model, label = _resolve(host, opts, ndim, meta0, cfa0)
    n = len(info.selected)
    host.log(f"Denoising {n} selected frame(s) of '{info.name}' with {label} into '{root}'.")
    written: list[Path] = []
    warnings: list[str] = []
    try:
        for k, index in enumerate(info.selected):
            _check_cancel(should_cancel)
            step = f"Frame {k + 1}/{n}"

            def frame_progress(fraction: float, message: str, k: int = k, step: str = step) -> None:
                progress((k + min(max(fraction, 0.0), 1.0)) / n, f"{step}: {message}")

            frame_progress(0.0, "reading")
            data, meta = host.read_frame(info, index)
            if not cfa0:
                meta = _without_pattern(meta)
            result = _denoise(data, meta, cfa0, method, model, opts, frame_progress, should_cancel)
            _check_cancel(should_cancel)
            written.append(host.output_path(info, index, prefix))
            host.write_frame(info, index, result.data, prefix,
                             history=f"{label} strength {opts.strength:.2f}")
            warnings += [f"frame {index + 1}: {w}" for w in _report_text(result)[1]]
        _check_cancel(should_cancel)
        if not host.create_sequence(root):
            raise DenoiseError(f"Siril did not create the sequence {root} (no files found in the "
                               "working directory). Check the working directory and free disk space.")
    except BaseException:
        removed = _remove(written)
        if removed:
            host.log(f"Removed the {removed} frame(s) this run had written; no sequence was created.")
        raise
    progress(1.0, "Done")
    # Not is_cli(): it is True for a pyscript typed in the GUI too, where loading works.
    if opts.load_result and host.can_load_sequence():
        host.load_sequence(root)
    text = (f"Wrote sequence '{root}' ({n} frames) in {host.working_dir()}; "
            f"the original frames were not changed.")
    return JobResult(text, warnings, sequence=root)


def _remove(paths: list[Path]) -> int:
    count = 0
    for path in paths:
        try:
            Path(path).unlink()
            count += 1
        except FileNotFoundError:
            pass
        except OSError:
            pass
    return count


def train_on_loaded_sequence(host: Any, opts: JobOptions, progress: Progress,
                             should_cancel: ShouldCancel) -> JobResult:
    """Train a Noise2Noise model on the selected frames and save it in the library."""
    info = host.sequence_info(need_regular=False)
    selected = list(info.selected)
    if info.homographies is not None:
        failed = [i for i in selected if info.homographies[i] is None]
        if failed:
            host.log(f"Left out {len(failed)} selected frame(s) that Siril could not register "
                     f"(no registration data): {', '.join(str(i + 1) for i in failed)}.", "warning")
            selected = [i for i in selected if i not in failed]
    if len(selected) < 2:
        raise InputError(f"Training needs at least 2 selected frames (8 or more work best); "
                         f"'{info.name}' has {len(selected)} selected"
                         + (" and registered" if len(selected) < len(info.selected) else "")
                         + ". Select more frames and run the script again.")
    frames, metas = [], []
    n = len(selected)
    for k, index in enumerate(selected):
        _check_cancel(should_cancel)
        progress(0.1 * k / n, f"Reading frame {k + 1}/{n}")
        data, meta = host.read_frame(info, index)
        frames.append(data)
        metas.append(meta)
    ref = selected.index(info.reference) if info.reference in selected else 0
    meta = metas[ref]
    cfa = cfa_for(frames[ref].ndim, meta)
    corr = lost_mosaic(frames, cfa)
    if corr is not None:
        host.log(_lost_mosaic_message(info.name, cfa, corr), "warning")
        cfa, meta = None, _without_pattern(meta)
    homographies = None
    if info.homographies is not None:
        homographies = [info.homographies[i] for i in selected]
        host.log("Using Siril's registration data to pair the frames.")
    else:
        host.log("No registration data in the sequence: the frames will be aligned by the engine.")
    opts.training_ready()
    eng = engine()
    trained = eng.train_on_frames(frames, **_kwargs_for(
        eng.train_on_frames, homographies=homographies, cfa_pattern=cfa, method="n2n",
        net=opts.train_net, time_budget=opts.train_time_budget or None, max_steps=opts.train_steps or None,
        use_gpu=opts.use_gpu, meta=meta,
        progress=lambda f, m: progress(0.1 + 0.85 * min(max(f, 0.0), 1.0), m),
        should_cancel=should_cancel))
    _check_cancel(should_cancel)
    library = library_for(host, opts)
    entry = library.add(trained.onnx_path, name=opts.name or None, meta=meta)
    notes = list(getattr(trained, "warnings", []) or [])
    lines = [f"Saved model '{entry.name}' in {library.root}"
             + (f", flagged: {'; '.join(notes)}" if notes else "."), str(getattr(trained, "summary", "") or "")]
    kept = _keep_curves(trained, host.reports_dir(), entry.name)
    kept.append(_frames_record(host.reports_dir(), entry.name, info, selected, homographies, cfa))
    if kept:
        lines.append("Training curve and frames used: " + ", ".join(str(p) for p in kept))
    lines.append("The Denoise image and Denoise sequence scripts now offer it for matching data.")
    progress(1.0, "Done")
    return JobResult("\n".join(x for x in lines if x), notes, model_name=entry.name)


def _frames_record(folder: Path, name: str, info: Any, used: list[int], homographies: Any,
                   cfa: str | None) -> Path:
    """``<name>-frames.json`` in ``folder``: which frames of which sequence the model learned
    from, and the homography that paired each (frame -> reference, array pixels with rows from
    the top, full-resolution for a mosaic; null when the engine registered the frames)."""
    import json

    import numpy as np

    record = {
        "sequence": info.name, "reference": info.reference + 1, "cfa": cfa,
        "registration": "siril" if homographies is not None else "engine",
        "frames": [{"index": i + 1, "filenum": info.filenums[i] if i < len(info.filenums) else None,
                    "H": None if homographies is None else np.asarray(homographies[k]).round(9).tolist()}
                   for k, i in enumerate(used)],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-frames.json"
    path.write_text(json.dumps(record, indent=1))
    return path


def _keep_curves(trained: Any, folder: Path, name: str) -> list[Path]:
    """Copy the training history (CSV) and plot (PNG), temporary files, next to the reports."""
    kept = []
    for attr, suffix in (("history_csv", "-history.csv"), ("plot_png", "-curve.png")):
        src = getattr(trained, attr, None)
        if src and Path(src).is_file():
            folder.mkdir(parents=True, exist_ok=True)
            dest = folder / f"{name}{suffix}"
            shutil.copyfile(src, dest)
            kept.append(dest)
    return kept


JOBS: dict[str, Callable[..., JobResult]] = {
    "image": denoise_loaded_image,
    "sequence": denoise_loaded_sequence,
    "train": train_on_loaded_sequence,
}


def run_job(job: str, host: Any, opts: JobOptions, progress: Progress,
            should_cancel: ShouldCancel) -> JobResult:
    """Run one of :data:`JOBS`."""
    return JOBS[job](host, opts, progress, should_cancel)
