"""What siril-denoise does for a user, written once, below both hosts.

The hosts (the ``siril-denoise`` command, the Siril scripts, a ``.seq`` file
read from disk) only move pixels and words; every decision is made here:

- :func:`choices`: the library's models ranked for an image, then the
  single-image methods (the model picker);
- :func:`pick_denoiser`: what denoises this image: a saved model chosen by
  the user or by match, else a single-image method (or :class:`ModelError`);
- :func:`denoise_image`: one image through that denoiser, written back;
- :func:`denoise_frames`: every selected frame into a new set (the originals
  untouched; on failure the host discards what this run wrote);
- :func:`train_model`: a session's frames become a model, saved in the library;
- :func:`auto`: train on some frames, then denoise others with the result.

Rules shared by all of them: :func:`cfa_mode` (is the data a raw Bayer
mosaic?), :func:`channels_for` (what the network is fed),
:func:`frames_layout` (a mosaic that registration resampled is no mosaic),
:func:`check_frames` and :func:`check_same_size` (enough frames, all the
same size), :func:`single_image_methods` (names and labels, from the method
registry, without torch).

A use case gets a *host* and an :class:`Options`, the one place where
defaults live. Hosts: :class:`Feedback` (alias :data:`Host`: log, progress,
cancel, library folder, prepare training) is what every host provides;
:class:`ImageHost` adds one image (read, write back); :class:`FrameHost` a
set of frames (:class:`FrameSet`: name, selected indices, reference,
homographies; optionally ``frame_record(index)`` and ``registered_by``, for
the record saved beside a trained model). It
returns an outcome dataclass; wording the result for the user is the host's
job. Only this module reaches the engine (:mod:`siril_denoise.pipeline`,
through :func:`engine`, imported late: torch may only just have been
installed; tests swap it). It never imports ``sirilpy``.

Progress is ``host.progress(fraction, message)`` with fraction in [0, 1];
cancel is ``host.should_cancel()``, polled between frames, steps and tiles
(the engine then raises :class:`~siril_denoise.errors.Cancelled`).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

from .errors import Cancelled, DenoiseError, InputError, ModelError
from .options import MAX_TILE, MIN_TILE, ZERO_SHOT, Options  # noqa: F401  (MAX_TILE, MIN_TILE: re-exported)

# --------------------------------------------------------------------------
# What a host provides
# --------------------------------------------------------------------------


@runtime_checkable
class Feedback(Protocol):
    """Words and progress out, cancel in: what every host provides."""

    def log(self, message: str, level: str = "info") -> None:
        """One message for the user; ``level`` is "info", "warning", "error" or "ok"."""

    def progress(self, fraction: float, message: str) -> None:
        """``fraction`` of the whole run done, in [0, 1]."""

    def should_cancel(self) -> bool:
        """True once the user asked to stop."""

    def models_dir(self) -> Path | None:
        """The host's model library folder (None: the library's default)."""

    def prepare_training(self, use_gpu: bool) -> None:
        """Called before anything is trained (a host may install PyTorch there)."""


@runtime_checkable
class ImageHost(Feedback, Protocol):
    """A host with one image to denoise in place or into a file."""

    def read_image(self) -> tuple[Any, Any]:
        """The pixels (``(H, W)`` or ``(C, H, W)``, uint16 or float32) and their ImageMeta."""

    def write_image(self, data: Any, note: str) -> None:
        """Store the result (same shape and dtype); ``note`` says what was done (undo text, HISTORY)."""


class FrameSet(Protocol):
    """A set of frames as a host describes it (Siril's sequence, a list of files)."""

    name: str
    #: indices of the frames to work on, in order
    selected: list[int]
    #: index of the reference frame (registration target)
    reference: int
    #: one 3x3 per frame (frame -> reference, array pixels, rows from the top; None for a frame
    #: that failed to register), or None when the host has no registration
    homographies: list[Any] | None
    #: (ndim, meta) once :func:`frames_layout` worked it out
    layout: tuple[int, Any] | None


@runtime_checkable
class FrameHost(Feedback, Protocol):
    """A host with a set of frames: read them, write denoised copies next to them."""

    def sequence_info(self, *, need_regular: bool = True) -> FrameSet:
        """The frame set; ``need_regular``: it must be writable as new frames (refuse now if not)."""

    def frame_meta(self, info: Any, index: int) -> tuple[int, Any]:
        """Frame ``index``'s ndim (2 or 3) and ImageMeta, reading as little as possible."""

    def read_frame(self, info: Any, index: int) -> tuple[Any, Any]:
        """Frame ``index``'s pixels and ImageMeta."""

    def write_frame(self, info: Any, index: int, data: Any, prefix: str, history: str | None = None) -> Path:
        """Write the denoised frame ``index`` as a new file; the original is never touched."""

    def discard_frames(self, paths: list[Path]) -> None:
        """A run failed after writing ``paths``: remove them, or keep them (each is complete)."""


#: Any host; a use case states which of the protocols above it needs.
Host = Feedback


# --------------------------------------------------------------------------
# Outcomes
# --------------------------------------------------------------------------


@dataclass
class Denoiser:
    """What denoises: a saved model (``model`` set) or a single-image ``method`` trained on each image."""

    method: str
    model: Path | None
    label: str


@dataclass
class ImageOutcome:
    """:func:`denoise_image`'s result: the denoiser, the engine's DenoiseResult, the Bayer mode."""

    denoiser: Denoiser
    result: Any
    cfa: str | None
    warnings: list[str] = field(default_factory=list)
    model_name: str | None = None


@dataclass
class FramesOutcome:
    """:func:`denoise_frames`'s result: per frame written, its index, file and quality report."""

    denoiser: Denoiser
    info: Any
    written: list[Path]
    reports: list[Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class TrainOutcome:
    """:func:`train_model`'s result.

    ``trained``: the engine's TrainedModel; ``entry``: the library entry (None
    when not added); ``model_path``: the model to use from now on; ``used``:
    indices of the frames trained on; ``homographies``: those given to the
    engine (None: the engine registered the frames); ``cfa``: the Bayer mode.
    """

    trained: Any
    entry: Any
    model_path: Path
    used: list[int]
    homographies: list[Any] | None
    cfa: str | None
    meta: Any
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# Shared rules
# --------------------------------------------------------------------------


def engine() -> Any:
    """The engine's entry points (:mod:`siril_denoise.pipeline`), imported on first use."""
    from . import pipeline

    return pipeline


def training_device(use_gpu: bool) -> str:
    """The device training will run on, in words: "cuda (<GPU name>)", "mps" or "cpu"."""
    try:
        from .training import pick_device

        device = pick_device("auto" if use_gpu else "cpu")
    except Exception:  # noqa: BLE001 - a log line must not stop the run
        return "cpu"
    text = str(device)
    if text.startswith("cuda"):
        try:
            import torch

            text += f" ({torch.cuda.get_device_name(device)})"
        except Exception:  # noqa: BLE001
            pass
    return text


def library_for(host: Feedback, opts: Options) -> Any:
    """The model library: ``opts.library``, else the host's folder, else the default."""
    from .library import ModelLibrary

    return ModelLibrary(opts.library or host.models_dir())


def cfa_mode(ndim: int, meta: Any, choice: str = "auto", host: Feedback | None = None) -> str | None:
    """The Bayer pattern to pack the data with (4 planes), or None to treat it as mono/colour.

    ``choice`` ``"auto"``: the header's pattern (``meta.bayer_pattern``) when
    the array is 2-D and the pattern is a 2x2 Bayer one (a pattern that is
    not, e.g. X-Trans, is logged and ignored); ``"none"``: never; a pattern:
    that pattern (checked; :class:`InputError` when unknown).
    """
    from .layout import BAYER_PATTERNS, normalise_pattern

    choice = (choice or "auto").strip()
    if choice.lower() == "none":
        return None
    if choice.lower() != "auto":
        return normalise_pattern(choice)
    pattern = str(getattr(meta, "bayer_pattern", None) or "").strip().upper()
    if ndim != 2 or not pattern or pattern == "NONE":
        return None
    if pattern in BAYER_PATTERNS:
        return pattern
    if host is not None:
        host.log(f"Bayer pattern {pattern} is not a 2x2 pattern; processing the data as mono.", "warning")
    return None


def channels_for(ndim: int, cfa: str | None, planes: int = 3) -> int:
    """What the network is fed: 4 planes for a packed Bayer mosaic, 1 for mono, else ``planes``."""
    if cfa:
        return 4
    return 1 if ndim == 2 else int(planes)


def without_pattern(meta: Any) -> Any:
    """``meta`` with no Bayer pattern (the data is no longer a mosaic)."""
    if dataclasses.is_dataclass(meta) and not isinstance(meta, type):
        return dataclasses.replace(meta, bayer_pattern=None)
    if meta is not None:
        setattr(meta, "bayer_pattern", None)
    return meta


def lost_mosaic(frames: Sequence[Any], pattern: str | None) -> float | None:
    """The neighbour noise correlation of the first frame that is no raw mosaic although
    ``pattern`` says it is (resampled by registration; see
    :func:`siril_denoise.layout.mosaic_noise_correlation`), else None."""
    from .layout import INTERPOLATED_MOSAIC_CORRELATION, mosaic_noise_correlation

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


def frames_layout(host: FrameHost, info: Any, choice: str = "auto") -> tuple[int, Any]:
    """ndim and ImageMeta of the frame set's first selected frame, kept in ``info.layout``.

    With ``choice`` "auto" and a Bayer pattern in the header, one or two
    frames' pixels are read (the reference frame of a resampled sequence is
    left as it was, so another one is checked too): when they are no longer
    a mosaic, the pattern is dropped from the returned meta, with a warning.
    """
    if getattr(info, "layout", None) is not None:
        return info.layout
    first = info.selected[0]
    ndim, meta = host.frame_meta(info, first)
    pattern = cfa_mode(ndim, meta, choice)
    if pattern and (choice or "auto").lower() == "auto":
        others = [i for i in info.selected if i != first and i != info.reference][:1]
        frames = [host.read_frame(info, i)[0] for i in [first, *others]]
        corr = lost_mosaic(frames, pattern)
        if corr is not None:
            host.log(_lost_mosaic_message(info.name, pattern, corr), "warning")
            meta = without_pattern(meta)
    info.layout = (ndim, meta)
    return ndim, meta


def check_frames(count: int, method: str, name: str = "", what: str = "selected") -> None:
    """:class:`InputError` when ``method`` gets fewer frames than it needs (its spec's ``min_frames``).

    ``what`` says which frames were counted ("selected", "selected and registered").
    """
    from .methods import method_spec

    need = method_spec(method).min_frames
    if count < need:
        where = f"'{name}' has {count} {what}" if name else f"got {count}"
        raise InputError(f"{_label(method)} ({method}) needs at least {need} frames of the same target (8 or "
                         f"more work best); {where}. Select or add more frames, or use a single-image "
                         f"method on one image: {', '.join(single_image_methods())}.")


def check_same_size(shape: tuple[int, ...], first_shape: tuple[int, ...], what: str, first: str) -> None:
    """:class:`InputError` naming ``what`` when its shape differs from the first frame's."""
    if tuple(shape) != tuple(first_shape):
        raise InputError(
            f"{what} is {'x'.join(map(str, shape))} but {first} is {'x'.join(map(str, first_shape))}: all "
            "frames of a session must have the same size and layout. Train on one session (or one camera "
            "setting) at a time.")


def _check_cancel(host: Feedback) -> None:
    if host.should_cancel():
        raise Cancelled()


def single_image_methods() -> dict[str, str]:
    """The methods that train on the image they denoise: name -> one-line label (menus, help).

    Read from the method registry (:data:`siril_denoise.methods.METHODS`),
    which imports no torch: hosts list them before PyTorch is installed.
    """
    from .methods import method_spec
    from .methods import single_image_methods as names

    return {name: method_spec(name).label for name in names()}


def method_network(method: str) -> str:
    """The default network of ``method`` (a key of :data:`siril_denoise.networks.NETWORKS`)."""
    from .methods import method_spec

    return method_spec(method).network


def _single_image(method: str) -> bool:
    from .methods import method_spec

    return method_spec(method).single_image


def _label(method: str) -> str:
    from .methods import method_spec

    return method_spec(method).label


def single_image_method(opts: Options, meta: Any, cfa: str | None) -> tuple[str, str]:
    """The single-image method ``opts`` trains on data of this ``meta`` and ``cfa``, and why ("": it was named).

    A method named in ``opts.choice`` is trained on any data. :data:`ZERO_SHOT`,
    and ``"auto"`` falling back to ``zero_shot``'s default, follow the kind of
    data: :func:`siril_denoise.methods.default_single_image_method` for what
    :func:`siril_denoise.stacks.stack_state` reads in ``meta`` (ZS-N2N for a
    sub, Noise2Void for a stack). Another ``zero_shot`` is kept.
    """
    from .methods import default_single_image_method
    from .stacks import stack_state

    if opts.choice in single_image_methods():
        return opts.choice, ""
    if opts.choice != ZERO_SHOT and opts.zero_shot not in (None, default_single_image_method(False, None)[0]):
        return opts.zero_shot, ""
    return default_single_image_method(stack_state(meta)[0], cfa)


# --------------------------------------------------------------------------
# Use cases
# --------------------------------------------------------------------------


@dataclass
class Choice:
    """One entry of the model picker: ``key`` is "auto", a method name or "model:<name>"."""

    key: str
    label: str
    usable: bool = True
    tooltip: str = ""


def choices(library: Any, ndim: int, meta: Any, opts: Options | None = None) -> list[Choice]:
    """"auto", ``library``'s models ranked for this data (usable first), then the single-image methods.

    ``ndim`` 2 (mono or mosaic) or 3 (colour); ``meta`` the data's ImageMeta
    (None: unknown); ``library`` a :class:`~siril_denoise.library.ModelLibrary`
    (see :func:`library_for`).
    """
    opts = opts or Options()
    cfa = cfa_mode(ndim, meta, opts.cfa)
    fallback = opts.zero_shot or "nothing"
    out = [Choice("auto", f"Best matching saved model, else {fallback}", True,
                  "Picks the library model that fits this camera and settings best.")]
    for m in library.match(meta, channels=channels_for(ndim, cfa), cfa=cfa):
        why = "; ".join(m.reasons)
        label = f"Model: {m.entry.name}" + (f"  (match {m.score:.2f})" if m.usable else "  (does not fit)")
        flag = getattr(m.entry, "flag_text", "")
        if flag:
            label += f"  {flag}"
            why = "; ".join(x for x in (why, flag) if x)
        out.append(Choice(f"model:{m.entry.name}", label, m.usable, why))
    out += [Choice(name, label, True, "Trains a small network on this very image, then applies it.")
            for name, label in single_image_methods().items()]
    return out


def pick_denoiser(host: Feedback, opts: Options, ndim: int, meta: Any, cfa: str | None) -> Denoiser:
    """What denoises data of this layout and meta, following ``opts.choice``; the reasons are logged.

    A model asked for by name is used even when it was trained on other data
    (with a warning). ``"auto"`` takes the best usable library match, else
    ``opts.zero_shot``; with ``zero_shot`` None, :class:`ModelError` lists why
    each model does not fit. :data:`ZERO_SHOT` looks at no library: it trains
    the method :func:`single_image_method` picks for this kind of data.
    """
    from .library import format_matches

    choice = opts.choice or "auto"
    singles = single_image_methods()
    if choice in singles:
        return Denoiser(choice, None, choice)
    if choice == ZERO_SHOT:
        name, why = single_image_method(opts, meta, cfa)
        host.log(f"Method {name}, picked for {why}.")
        return Denoiser(name, None, name)
    library = library_for(host, opts)
    channels = channels_for(ndim, cfa)
    if choice.startswith("model:"):
        path = Path(library.resolve(choice[len("model:"):]))
        for m in library.match(meta, channels=channels, cfa=cfa):
            if Path(m.entry.path).resolve() == path.resolve() and not m.usable:
                host.log(f"Model {m.entry.name} was trained on other data: {'; '.join(m.reasons)}. "
                         "Using it because you asked for it.", "warning")
        return Denoiser("model", path, path.stem)
    if choice != "auto":
        raise InputError(f"Unknown method {choice!r}: use auto, {ZERO_SHOT}, a model name or one of "
                         f"{', '.join(singles)}.")
    matches = library.match(meta, channels=channels, cfa=cfa)
    usable = [m for m in matches if m.usable]
    if usable:
        for m in matches:
            if not m.usable:
                host.log(f"Library model {m.entry.name} does not fit: {'; '.join(m.reasons)}")
        best = usable[0]
        why = "; ".join(best.reasons) if best.reasons else "same camera settings"
        host.log(f"Using library model {best.entry.name} (match {best.score:.2f}: {why}).")
        return Denoiser("model", Path(best.entry.path), best.entry.name)
    if opts.zero_shot is None:
        if not matches:
            raise ModelError(f"No model was chosen and the library {library.root} is empty. Train one "
                             "first, or name a model file.")
        raise ModelError(f"No model in the library {library.root} fits this data:\n{format_matches(matches)}\n"
                         "Train one on this session, or name a model.")
    for m in matches:
        host.log(f"Library model {m.entry.name} does not fit: {'; '.join(m.reasons)}")
    name, why = single_image_method(opts, meta, cfa)
    why = f" ({why})" if why else ""
    host.log(f"No saved model fits this data; training {_label(name)} on it instead{why}.")
    return Denoiser(name, None, name)


def _denoise(host: Feedback, opts: Options, data: Any, meta: Any, cfa: str | None, denoiser: Denoiser,
             progress: Any) -> Any:
    """One image through the engine, with exactly the engine's keywords."""
    eng = engine()
    common = dict(cfa_pattern=cfa, strength=opts.strength, use_gpu=opts.use_gpu, providers=opts.providers,
                  tile=opts.tile, overlap=opts.tile_overlap(), protect=opts.protect, meta=meta,
                  progress=progress, should_cancel=host.should_cancel)
    if denoiser.model is not None:
        return eng.apply_model(data, denoiser.model, **common)
    host.prepare_training(opts.use_gpu)
    return eng.denoise_image(data, method=denoiser.method, net=opts.net, time_budget=opts.time_limit,
                             max_steps=opts.steps, seed=opts.seed, threads=opts.threads,
                             save_model=opts.save_model, **common)


def _result_warnings(result: Any) -> list[str]:
    """The engine's warnings (training notes and the report's), or the report's."""
    warnings = getattr(result, "warnings", None)
    if warnings:
        return list(warnings)
    return list(getattr(getattr(result, "report", None), "warnings", None) or [])


def denoise_image(host: ImageHost, opts: Options) -> ImageOutcome:
    """Denoise the host's image and write it back through the host.

    The denoiser follows :func:`pick_denoiser`; a single-image method keeps
    its model in ``opts.save_model`` when set, and in the library (under
    ``opts.name``) when ``opts.add_to_library``. Nothing is written when the
    engine fails or is cancelled.
    """
    import tempfile

    opts.check()
    with tempfile.TemporaryDirectory(prefix="siril-denoise-") as tmp:
        if opts.add_to_library and opts.save_model is None:
            opts = dataclasses.replace(opts, save_model=Path(tmp) / "model.onnx")
        return _denoise_image(host, opts)


def _denoise_image(host: ImageHost, opts: Options) -> ImageOutcome:
    data, meta = host.read_image()
    cfa = cfa_mode(data.ndim, meta, opts.cfa, host)
    denoiser = pick_denoiser(host, opts, data.ndim, meta, cfa)
    if cfa:
        host.log(f"Raw Bayer mosaic ({cfa}): denoised as 4 colour planes.")
    host.progress(0.0, f"Denoising with {denoiser.label}")
    result = _denoise(host, opts, data, meta, cfa, denoiser, host.progress)
    _check_cancel(host)
    if result.data.shape != data.shape or result.data.dtype != data.dtype:
        raise DenoiseError(f"The engine returned {result.data.shape} {result.data.dtype} for a "
                         f"{data.shape} {data.dtype} image; nothing was written.")
    host.write_image(result.data, f"{denoiser.label} strength {opts.strength:.2f}")
    outcome = ImageOutcome(denoiser, result, cfa, _result_warnings(result))
    if denoiser.model is None and opts.add_to_library:
        entry = library_for(host, opts).add(opts.save_model, name=opts.name, meta=meta)
        outcome.model_name = entry.name
    host.progress(1.0, "Done")
    return outcome


def denoise_frames(host: FrameHost, opts: Options) -> FramesOutcome:
    """Denoise every selected frame into a new file with ``opts.prefix``; the originals stay as they were.

    One layout for the whole set (that of the first selected frame, see
    :func:`frames_layout`) and one denoiser, picked before any frame is
    processed. When anything fails or is cancelled, the host gets the files
    this run wrote (:meth:`FrameHost.discard_frames`) and the error goes on.
    """
    opts.check()
    info = host.sequence_info(need_regular=True)
    if not info.selected:
        raise InputError(f"No frame of '{info.name}' is selected. Select frames, then run again.")
    ndim, meta0 = frames_layout(host, info, opts.cfa)
    cfa = cfa_mode(ndim, meta0, opts.cfa, host)
    denoiser = pick_denoiser(host, opts, ndim, meta0, cfa)
    n = len(info.selected)
    host.log(f"Denoising {n} selected frame(s) of '{info.name}' with {denoiser.label} "
             f"into '{opts.prefix}{info.name}'.")
    outcome = FramesOutcome(denoiser, info, [], [])
    try:
        for k, index in enumerate(info.selected):
            _check_cancel(host)
            step = f"Frame {k + 1}/{n}"

            def frame_progress(fraction: float, message: str, k: int = k, step: str = step) -> None:
                host.progress((k + min(max(fraction, 0.0), 1.0)) / n, f"{step}: {message}")

            frame_progress(0.0, "reading")
            data, meta = host.read_frame(info, index)
            if not cfa:
                meta = without_pattern(meta)
            result = _denoise(host, opts, data, meta, cfa, denoiser, frame_progress)
            _check_cancel(host)
            outcome.written.append(host.write_frame(info, index, result.data, opts.prefix,
                                                    history=f"{denoiser.label} strength {opts.strength:.2f}"))
            outcome.reports.append(getattr(result, "report", None))
            outcome.warnings += [f"frame {index + 1}: {w}" for w in _result_warnings(result)]
            del data, result
        _check_cancel(host)
    except BaseException:
        host.discard_frames(outcome.written)
        raise
    host.progress(1.0, "Done")
    return outcome


def train_model(host: FrameHost, opts: Options) -> TrainOutcome:
    """Train ``opts.train_method`` on the selected frames and save the model.

    Frames that failed to register are left out (with a warning); a session
    method needs 2 or more frames left, all the same size. The library name
    is checked before any work. The model goes to the library (unless
    ``opts.add_to_library`` is False) and to ``opts.save_model`` when set.
    """
    from .library import sanitise_name

    opts.check()
    method = opts.train_method
    library = library_for(host, opts) if opts.add_to_library is not False else None
    if library is not None and opts.name:
        stem = sanitise_name(opts.name)
        if not stem:
            raise ModelError(f"{opts.name!r} cannot be used as a model name; use letters, digits, '-' or '_'.")
        if (library.root / f"{stem}.onnx").exists():
            raise ModelError(f"A model called {stem!r} is already in the library {library.root}; choose "
                             "another name or delete that model first.")
    info = host.sequence_info(need_regular=False)
    selected = list(info.selected)
    if info.homographies is not None:
        failed = [i for i in selected if info.homographies[i] is None]
        if failed:
            host.log(f"Left out {len(failed)} selected frame(s) that could not be registered "
                     f"(no registration data): {', '.join(str(i + 1) for i in failed)}.", "warning")
            selected = [i for i in selected if i not in failed]
    check_frames(len(selected), method, info.name,
                 "selected and registered" if len(selected) < len(info.selected) else "selected")
    frames, metas = [], []
    n = len(selected)
    for k, index in enumerate(selected):
        _check_cancel(host)
        host.progress(0.1 * k / n, f"Reading frame {k + 1}/{n}")
        data, meta = host.read_frame(info, index)
        if frames:
            check_same_size(data.shape, frames[0].shape, f"Frame {index + 1}", f"frame {selected[0] + 1}")
        frames.append(data)
        metas.append(meta)
    ref = selected.index(info.reference) if info.reference in selected else 0
    meta = metas[ref]
    cfa = cfa_mode(frames[ref].ndim, meta, opts.cfa, host)
    if (opts.cfa or "auto").lower() == "auto":
        corr = lost_mosaic(frames, cfa)
        if corr is not None:
            host.log(_lost_mosaic_message(info.name, cfa, corr), "warning")
            cfa, meta = None, without_pattern(meta)
    homographies = None
    if info.homographies is not None:
        homographies = [info.homographies[i] for i in selected]
        host.log("Using the registration data to pair the frames.")
    elif not _single_image(method):
        host.log("No registration data: the frames will be aligned by the engine.")
    host.prepare_training(opts.use_gpu)
    trained = engine().train_on_frames(
        frames, homographies=homographies, cfa_pattern=cfa, method=method, net=opts.net,
        time_budget=opts.time_limit, max_steps=opts.steps, seed=opts.seed, threads=opts.threads,
        use_gpu=opts.use_gpu, meta=meta, out_dir=opts.out_dir,
        progress=lambda f, m: host.progress(0.1 + 0.85 * min(max(f, 0.0), 1.0), m),
        should_cancel=host.should_cancel)
    del frames
    try:
        _check_cancel(host)
        entry = None
        if library is not None:
            entry = library.add(trained.onnx_path, name=opts.name or None, meta=meta,
                                history_csv=getattr(trained, "history_csv", None),
                                plot_png=getattr(trained, "plot_png", None),
                                frames=frames_record(info, selected, homographies, cfa))
        if opts.save_model is not None:
            shutil.copyfile(trained.onnx_path, opts.save_model)
        model_path = (Path(entry.path) if entry is not None
                      else Path(opts.save_model) if opts.save_model is not None else Path(trained.onnx_path))
    finally:
        if library is not None or opts.save_model is not None:
            cleanup = getattr(trained, "cleanup", None)
            if cleanup is not None:
                cleanup()  # the temporary folder: what is kept was copied
    host.progress(1.0, "Done")
    return TrainOutcome(trained, entry, model_path, selected, homographies, cfa, meta,
                        list(getattr(trained, "warnings", None) or []))


def frames_record(info: Any, used: list[int], homographies: list[Any] | None, cfa: str | None) -> dict:
    """Which frames a model learned from: saved as ``<name>-frames.json`` beside it.

    ``sequence``: the frame set's name; ``reference``: the reference frame
    (1-based); ``registration``: who registered the frames: the frame set's
    ``registered_by`` ("host" when it has none) when its homographies paired
    them, "engine" when the engine did; per frame its
    1-based ``index``, what the frame set's optional ``frame_record(index)``
    adds (a file name, Siril's file number...), and ``H``, the homography that
    paired it (frame -> reference, array pixels with rows from the top,
    full resolution for a mosaic; null when the engine registered).
    """
    import numpy as np

    describe = getattr(info, "frame_record", None)
    return {
        "sequence": info.name, "reference": info.reference + 1, "cfa": cfa,
        "registration": getattr(info, "registered_by", "host") if homographies is not None else "engine",
        "frames": [{"index": i + 1, **(describe(i) if describe is not None else {}),
                    "H": None if homographies is None else np.asarray(homographies[k]).round(9).tolist()}
                   for k, i in enumerate(used)],
    }


def auto(train_host: FrameHost, apply_host: FrameHost, opts: Options) -> tuple[TrainOutcome, FramesOutcome]:
    """Train on ``train_host``'s frames, then denoise ``apply_host``'s frames with that model.

    The frames to denoise are looked at first (``sequence_info``), so that a
    host that refuses them does so before minutes of training.
    """
    opts.check()
    apply_host.sequence_info(need_regular=True)
    trained = train_model(train_host, opts)
    apply_opts = dataclasses.replace(opts, choice=f"model:{trained.model_path}")
    return trained, denoise_frames(apply_host, apply_opts)
