"""The model library: saved denoisers, listed, shown, matched to new data, deleted.

A library is a directory. Each model is two files side by side, and up to
three more from its training (:data:`TRAINING_FILES`):

- ``<name>.onnx``, the network as exported by :mod:`siril_denoise.export`, with
  its own metadata (method, network, channels, CFA mode, normalisation,
  training scores) under the ``siril_denoise`` key of ``metadata_props``;
- ``<name>.json``, what the library knows about it: that metadata plus the
  camera and acquisition settings of the frames it was trained on (camera,
  gain, offset, exposure, sensor temperature, filter, binning, Bayer pattern,
  whether they were single subs or a stack);
- ``<name>-history.csv`` and ``<name>-curve.png``, the validation curve of
  its training, and ``<name>-frames.json``, which frames it learned from.

The camera settings are part of a model's identity: noise differs from one
camera, gain and temperature to the next, and a model trained on single subs
removes little noise from a stack while eating faint-star flux. So
:meth:`ModelLibrary.match` refuses models from another camera, gain, binning,
channel count or CFA mode, ranks the rest by how close their sensor
temperature, exposure and filter are, and warns when subs meet stacks.

A ``.onnx`` dropped into the directory without its ``.json`` is still listed,
from the metadata inside the model. Unreadable entries are skipped and
reported, never fatal.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import platformdirs

from .errors import ModelError
from .fileutil import write_atomic
from .modelfile import read_metadata
from .stacks import stack_state as _stack_state

log = logging.getLogger("siril_denoise.library")

#: Environment variable that overrides the default library directory.
LIBRARY_ENV = "SIRIL_DENOISE_LIBRARY"
#: Version of the ``<name>.json`` layout written by this module.
INFO_FORMAT = 1

#: Acquisition fields kept from :class:`siril_denoise.io.ImageMeta` in the library.
CAMERA_FIELDS = (
    "instrument", "gain", "offset", "egain", "read_noise", "exposure",
    "temperature", "set_temperature", "filter", "xbinning", "ybinning",
    "bayer_pattern", "stackcnt", "livetime", "date_obs", "object", "pedestal",
    "is_stack",
)
#: What training leaves beside a model ``<name>.onnx``: kind -> suffix of ``<name><suffix>``.
#: ``history``: the validation curve as CSV (step, seconds, lr, train_loss, val_loss);
#: ``curve``: its plot; ``frames``: JSON record of the frames the model learned from.
TRAINING_FILES = {"history": "-history.csv", "curve": "-curve.png", "frames": "-frames.json"}
_MODEL_FIELDS = ("method", "network", "channels", "cfa", "is_stack", "siril_denoise_version")
_MAX_NAME = 96
#: Score factors for a different filter and for a sub/stack mismatch.
_FILTER_PENALTY = 0.8
_STACK_PENALTY = 0.5

_UNKNOWN: Any = object()


def default_library_dir() -> Path:
    """Where models are saved when no directory is given.

    ``$SIRIL_DENOISE_LIBRARY`` if set, else ``<user data dir>/siril-denoise/models``
    (``~/.local/share/siril-denoise/models`` on Linux). Inside Siril the
    adapter passes ``<Siril user data dir>/siril-denoise/models`` instead.
    """
    env = os.environ.get(LIBRARY_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("siril-denoise")) / "models"


def sanitise_name(name: str) -> str:
    """Turn ``name`` into a safe file stem: letters, digits, ``.``, ``_`` and ``-``.

    Spaces and other characters become ``_``; path separators cannot survive,
    so a name never escapes the library directory.

    >>> sanitise_name("ZWO ASI2600MC/Pro g100 (120s)")
    'ZWO_ASI2600MC_Pro_g100_120s'
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))
    stem = re.sub(r"_{2,}", "_", stem).strip("._-")
    return stem[:_MAX_NAME].rstrip("._-")


# ----------------------------------------------------------------------------
# Entries


@dataclass
class LibraryEntry:
    """One saved model: its name, its ``.onnx`` path and what is known about it.

    ``info`` is the content of ``<name>.json``: ``method``, ``network``,
    ``channels``, ``cfa``, ``is_stack``, ``trained`` (ISO date), ``camera``
    (dict of :data:`CAMERA_FIELDS`), ``training`` (frames used, validation
    scores, steps, seconds as exported), ``normalisation``.
    """

    name: str
    path: Path
    info: dict = field(default_factory=dict)

    @property
    def json_path(self) -> Path:
        """The metadata file beside the model."""
        return self.path.with_suffix(".json")

    @property
    def training_files(self) -> dict[str, Path]:
        """The training files kept beside the model that exist, by kind (see :data:`TRAINING_FILES`)."""
        files = {kind: _training_file(self.path, kind) for kind in TRAINING_FILES}
        return {kind: path for kind, path in files.items() if path.is_file()}

    @property
    def camera(self) -> dict:
        """Acquisition settings of the training frames (missing fields are None)."""
        cam = self.info.get("camera") or {}
        return {key: cam.get(key) for key in CAMERA_FIELDS}

    @property
    def trained(self) -> datetime | None:
        """When the model was trained (or added, when the export did not say)."""
        return _parse_date(self.info.get("trained") or self.info.get("added"))

    @property
    def flags(self) -> list[str]:
        """What training flagged about this model: ``cut_short``, ``little_gain``, ``diverged`` (empty when none)."""
        training = self.info.get("training") or {}
        flags = training.get("flags") if isinstance(training, Mapping) else None
        return [str(f) for f in flags] if isinstance(flags, list) else []

    @property
    def flag_text(self) -> str:
        """A short warning for lists and the Siril dialog ('' for a model trained as planned)."""
        training = self.info.get("training") or {}
        words = []
        for flag in self.flags:
            if flag == "cut_short":
                words.append(f"cut short at {training.get('steps', '?')} of {training.get('max_steps', '?')} steps")
            elif flag == "little_gain":
                gain = training.get("gain")
                words.append("removes little noise" + (f" ({100 * gain:.0f} % held-out gain)"
                                                       if isinstance(gain, (int, float)) else ""))
            else:
                words.append(flag.replace("_", " "))
        return ("WARNING: " + ", ".join(words)) if words else ""

    def summary(self) -> str:
        """One line for ``siril-denoise models list``."""
        cam = self.camera
        date = self.trained
        parts = [
            self.name,
            "/".join(str(v) for v in (self.info.get("method"), self.info.get("network")) if v) or "?",
            _describe_layout(self.info.get("channels"), self.info.get("cfa")),
            cam["instrument"] or "unknown camera",
        ]
        if cam["gain"] is not None:
            parts.append(f"gain {_fmt_num(cam['gain'])}")
        if cam["exposure"] is not None:
            parts.append(f"{_fmt_num(cam['exposure'])} s")
        if _temperature(cam) is not None:
            parts.append(f"{_fmt_num(_temperature(cam))} °C")
        if cam["filter"]:
            parts.append(f"filter {cam['filter']}")
        if _binning(cam) is not None:
            parts.append("bin {}x{}".format(*_binning(cam)))
        if self.info.get("is_stack"):
            _, count = _stack_state({**cam, "is_stack": True})
            parts.append(f"stack of {count}" if count else "stack")
        if date is not None:
            parts.append(date.strftime("%Y-%m-%d %H:%M"))
        if self.flag_text:
            parts.append(self.flag_text)
        return "  ".join(parts)

    def describe(self) -> str:
        """Several lines for ``siril-denoise models show NAME``: what it is, how it trained, its files.

        Long values (the registration pairs of a session, often 90 or more)
        are summarised, so no line runs on.
        """
        info = self.info
        date = self.trained
        lines = [
            f"Model {self.name}",
            f"  file:          {self.path}",
            f"  method:        {info.get('method') or '?'} (network {info.get('network') or '?'})",
            f"  input:         {_describe_layout(info.get('channels'), info.get('cfa'))}",
            f"  trained on:    {_describe_stack(info.get('is_stack'), self.camera)}",
            f"  trained:       {date.strftime('%Y-%m-%d %H:%M') if date else 'unknown'}",
        ]
        if info.get("siril_denoise_version"):
            lines.append(f"  version:       siril-denoise {info['siril_denoise_version']}")
        training = info.get("training") if isinstance(info.get("training"), Mapping) else {}
        for note in training.get("notes") or []:
            lines.append(f"  WARNING:       {note}")
        cam = {k: v for k, v in self.camera.items() if v is not None}
        lines.append("  camera:" if cam else "  camera:        unknown (no acquisition metadata)")
        for key, value in cam.items():
            lines.append(f"    {key + ':':<16} {_fmt_value(value)}")
        if training:
            lines.append("  training:")
            lines += [f"    {key + ':':<16} {text}" for key, text in _training_lines(training)]
        normalisation = info.get("normalisation")
        if isinstance(normalisation, Mapping) and normalisation:
            lines.append("  normalisation:")
            lines += [f"    {str(key) + ':':<16} {_fmt_value(value)}" for key, value in normalisation.items()]
        files = self.training_files
        lines.append("  training files:" if files else "  training files: none kept (curve and frames record)")
        lines += [f"    {kind + ':':<16} {path}" for kind, path in files.items()]
        return "\n".join(lines)


@dataclass
class Match:
    """How well a library model fits an image.

    ``usable`` is False when the model cannot be trusted on this image (other
    camera, gain, binning, channel count or CFA mode). ``reasons`` say why, in
    words, and also carry warnings and notable differences for usable models.
    ``score`` in (0, 1] ranks usable models: 1 means same temperature,
    exposure, filter and sub/stack kind (or unknown).
    """

    entry: LibraryEntry
    score: float
    usable: bool
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line, then the reasons indented."""
        head = f"{self.entry.name}  score {self.score:.2f}" + ("" if self.usable else "  NOT USABLE")
        return "\n".join([head] + [f"    - {r}" for r in self.reasons])


# ----------------------------------------------------------------------------
# The library


class ModelLibrary:
    """A directory of saved models.

    >>> lib = ModelLibrary(tmp_dir)                          # doctest: +SKIP
    >>> entry = lib.add("model.onnx", meta=image_meta)       # doctest: +SKIP
    >>> best = lib.match(image_meta, channels=1, cfa=None)   # doctest: +SKIP
    """

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_library_dir()

    def __repr__(self) -> str:
        return f"ModelLibrary({str(self.root)!r})"

    # -- reading ------------------------------------------------------------

    def scan(self) -> tuple[list[LibraryEntry], list[str]]:
        """All readable entries sorted by training date, and a message per unreadable one."""
        entries: list[LibraryEntry] = []
        problems: list[str] = []
        if not self.root.is_dir():
            return entries, problems
        stems = {p.stem for p in self.root.glob("*.onnx") if p.is_file()}
        frames = TRAINING_FILES["frames"]
        records = {p for p in self.root.glob(f"*{frames}") if p.name[: -len(frames)] in stems}
        for orphan in sorted(p for p in self.root.glob("*.json") if p.stem not in stems and p not in records):
            problems.append(f"{orphan.name}: metadata without its model file {orphan.stem}.onnx")
        for stem in sorted(stems):
            try:
                entries.append(self._load_entry(stem))
            except ModelError as exc:
                problems.append(str(exc))
        entries.sort(key=lambda e: (_sort_key(e), e.name))
        return entries, problems

    def list(self) -> list[LibraryEntry]:
        """All readable entries, oldest first; unreadable ones are logged and skipped."""
        entries, problems = self.scan()
        for problem in problems:
            log.warning("Skipping library entry: %s", problem)
        return entries

    def names(self) -> list[str]:
        """Names of the readable entries."""
        return [e.name for e in self.list()]

    def get(self, name: str) -> LibraryEntry:
        """The entry called ``name``; :class:`ModelError` naming the available ones if none."""
        stem = name[:-5] if name.endswith(".onnx") else name
        if stem and stem == sanitise_name(stem) and (self.root / f"{stem}.onnx").is_file():
            return self._load_entry(stem)
        raise ModelError(self._missing_message(name))

    def resolve(self, name_or_path: str | os.PathLike) -> Path:
        """The ``.onnx`` file meant by an existing file path or a library name."""
        text = os.fspath(name_or_path)
        path = Path(text).expanduser()
        if path.is_file():
            return path
        looks_like_path = path.suffix.lower() == ".onnx" or "/" in text or os.sep in text
        if not looks_like_path or (path.name == text and (self.root / text).is_file()):
            return self.get(text).path
        raise ModelError(f"Model file not found: {path}. Check the path, or give the name of a "
                         f"model in the library ({self._available()}).")

    # -- writing ------------------------------------------------------------

    def add(
        self,
        onnx_path: Path | str,
        *,
        name: str | None = None,
        meta: Any = None,
        overwrite: bool = False,
        history_csv: Path | str | None = None,
        plot_png: Path | str | None = None,
        frames: Mapping[str, Any] | None = None,
    ) -> LibraryEntry:
        """Copy an exported model into the library, with its metadata and training files beside it.

        ``meta`` is the :class:`siril_denoise.io.ImageMeta` (or a dict with the
        same keys) of the frames the model was trained on. ``name`` defaults to
        ``<instrument>_g<gain>_<exposure>s_<method>_<YYYYmmdd-HHMM>``; an
        explicit name that is already taken raises :class:`ModelError` unless
        ``overwrite``.

        ``history_csv`` and ``plot_png`` (a trained model's validation curve,
        as :class:`siril_denoise.pipeline.TrainedModel` holds them; None:
        left out) are copied to ``<name>-history.csv`` and
        ``<name>-curve.png``; ``frames``, a JSON-serialisable record of the
        frames trained on, is written to ``<name>-frames.json``. An
        overwritten model loses the training files of the old one. Every
        file is written to a temporary name and renamed; a failure after the
        model file was written removes all of this model's files, so no
        half-saved model is left.
        """
        src = Path(onnx_path).expanduser()
        if not src.is_file():
            raise ModelError(f"Cannot add {src} to the library: no such file.")
        extra = {"history": history_csv, "curve": plot_png}
        for given in extra.values():
            if given is not None and not Path(given).is_file():
                raise ModelError(f"Cannot add the training file {given} to the library: no such file.")
        model_meta = read_metadata(src)
        frames_text = None if frames is None else json.dumps(frames, indent=1, default=_json_default) + "\n"
        info = _build_info(model_meta, _meta_dict(meta), source=src.name)
        if name is None:
            stem = self._unique(_default_name(info))
        else:
            stem = sanitise_name(name)
            if not stem:
                raise ModelError(f"{name!r} cannot be used as a model name; use letters, digits, '-' or '_'.")
            if stem.endswith(TRAINING_FILES["frames"][: -len(".json")]):
                raise ModelError(f"{stem!r} cannot be used as a model name: names ending in "
                                 "'-frames' are kept for the frames records beside the models.")
            if (self.root / f"{stem}.onnx").exists() and not overwrite:
                raise ModelError(f"A model called {stem!r} is already in the library ({self.root}). "
                                 "Choose another name, or overwrite it on purpose.")
        info["name"] = stem
        dest = self.root / f"{stem}.onnx"
        model_written = False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(dest, src.read_bytes())
            model_written = True
            write_atomic(dest.with_suffix(".json"),
                          (json.dumps(info, indent=2, default=_json_default) + "\n").encode())
            for kind in TRAINING_FILES:
                path = _training_file(dest, kind)
                if kind == "frames" and frames_text is not None:
                    write_atomic(path, frames_text)
                elif kind != "frames" and extra[kind] is not None:
                    write_atomic(path, Path(extra[kind]).read_bytes())
                else:
                    path.unlink(missing_ok=True)  # an overwritten model's, which no longer applies
        except OSError as exc:
            if model_written:
                _remove_model_files(dest)
            raise ModelError(f"Could not save model {stem!r} in {self.root}: "
                             f"{exc.strerror or exc}. Free some disk space or choose another "
                             "library directory (--library).") from exc
        log.info("Saved model %s in %s", stem, self.root)
        return LibraryEntry(stem, dest, info)

    def delete(self, name: str) -> None:
        """Remove a model, its metadata and its training files; :class:`ModelError` if there is no such model."""
        stem = name[:-5] if name.endswith(".onnx") else name
        if not stem or stem != sanitise_name(stem):
            raise ModelError(self._missing_message(name))
        onnx_file = self.root / f"{stem}.onnx"
        if not onnx_file.is_file() and not onnx_file.with_suffix(".json").is_file():
            raise ModelError(self._missing_message(name))
        _remove_model_files(onnx_file)
        log.info("Deleted model %s from %s", stem, self.root)

    # -- matching -----------------------------------------------------------

    def match(self, meta: Any, *, channels: int | None = None, cfa: Any = _UNKNOWN) -> list[Match]:
        """Rank the library's models for an image, usable ones first, best first.

        ``meta``: the image's :class:`siril_denoise.io.ImageMeta` or dict.
        ``channels``: what the network will be fed (1 mono, 3 RGB, 4 for a
        Bayer-packed CFA image). ``cfa``: the image's Bayer pattern when it is
        processed as packed CFA data, ``None`` when it is not; leave it out
        when unknown. Unknown values neither disqualify nor rank.
        """
        image = _meta_dict(meta)
        matches = [match_entry(e, image, channels=channels, cfa=cfa) for e in self.list()]
        matches.sort(key=lambda m: (not m.usable, -m.score, m.entry.name))
        return matches

    # -- helpers ------------------------------------------------------------

    def _load_entry(self, stem: str) -> LibraryEntry:
        path = self.root / f"{stem}.onnx"
        json_file = path.with_suffix(".json")
        if json_file.is_file():
            try:
                info = json.loads(json_file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ModelError(f"{json_file.name}: unreadable metadata ({exc}); "
                                 f"delete the model {stem!r} or add it again.") from exc
            if not isinstance(info, dict):
                raise ModelError(f"{json_file.name}: metadata is not a JSON object; "
                                 f"delete the model {stem!r} or add it again.")
        else:
            info = _build_info(read_metadata(path), {}, source=path.name)
            info.setdefault("added", _iso(datetime.fromtimestamp(path.stat().st_mtime).astimezone()))
        info["name"] = stem
        return LibraryEntry(stem, path, info)

    def _unique(self, stem: str) -> str:
        candidate, n = stem, 2
        while (self.root / f"{candidate}.onnx").exists() or (self.root / f"{candidate}.json").exists():
            candidate, n = f"{stem}-{n}", n + 1
        return candidate

    def _available(self) -> str:
        names = self.names()
        return "available: " + ", ".join(names) if names else f"the library {self.root} is empty"

    def _missing_message(self, name: str) -> str:
        return f"No model called {name!r} in the library {self.root} ({self._available()})."


# ----------------------------------------------------------------------------
# Matching


def match_entry(entry: LibraryEntry, image: Any, *, channels: int | None = None,
                cfa: Any = _UNKNOWN) -> Match:
    """Judge one library entry against an image; see :meth:`ModelLibrary.match`."""
    img = _meta_dict(image)
    cam = entry.camera
    reasons: list[str] = []
    usable = True
    score = 1.0

    instrument = cam["instrument"]
    same_known = _same_text(instrument, img.get("instrument"))
    if same_known is False:
        usable = False
        reasons.append(f"trained on {instrument}; this image is from {img['instrument']}")

    if cam["gain"] is not None and img.get("gain") is not None and not _close(cam["gain"], img["gain"]):
        usable = False
        who = f"{instrument} " if instrument else ""
        reasons.append(f"trained on {who}at gain {_fmt_num(cam['gain'])}; "
                       f"this image is gain {_fmt_num(img['gain'])}")

    model_bin, image_bin = _binning(cam), _binning(img)
    if model_bin and image_bin and model_bin != image_bin:
        usable = False
        reasons.append("trained at bin {}x{}; this image is bin {}x{}".format(*model_bin, *image_bin))

    model_channels = entry.info.get("channels")
    if model_channels is not None and channels is not None and int(model_channels) != int(channels):
        usable = False
        reasons.append(f"the model takes {_describe_layout(model_channels, entry.info.get('cfa'))}; "
                       f"this image has {_describe_layout(channels, None)}")

    if cfa is not _UNKNOWN:
        model_cfa = _norm_cfa(entry.info.get("cfa"))
        image_cfa = _norm_cfa(cfa)
        if model_cfa != image_cfa:
            usable = False
            if model_cfa and image_cfa:
                reasons.append(f"trained on {model_cfa} Bayer data; this image's pattern is {image_cfa}")
            elif model_cfa:
                reasons.append(f"trained on raw {model_cfa} Bayer (CFA) data; this image is not CFA")
            else:
                reasons.append("trained on non-CFA data; this image is raw Bayer (CFA) data")

    dt = _delta(_temperature(cam), _temperature(img))
    if dt is not None:
        score *= math.exp(-abs(dt) / 10.0)
        if abs(dt) >= 5:
            reasons.append(f"sensor {abs(dt):.0f} °C {'warmer' if dt > 0 else 'colder'} than at training")

    e_model, e_image = _positive(cam["exposure"]), _positive(img.get("exposure"))
    if e_model and e_image:
        score *= math.exp(-abs(math.log(e_image / e_model)))
        if max(e_model, e_image) / min(e_model, e_image) >= 2:
            reasons.append(f"trained on {_fmt_num(e_model)} s exposures; this image is {_fmt_num(e_image)} s")

    if _same_text(cam["filter"], img.get("filter")) is False:
        score *= _FILTER_PENALTY
        reasons.append(f"trained with filter {cam['filter']}; this image used {img['filter']}")

    model_stack = entry.info.get("is_stack")
    image_stack, image_count = _stack_state(img)
    if model_stack is False and image_stack:
        score *= _STACK_PENALTY
        what = f"a stack of {image_count}" if image_count else "a stack"
        reasons.append(f"trained on single subs; this image is {what} — "
                       "expect weaker denoising and lost faint-star flux")
    elif model_stack is True and image_stack is False:
        score *= _STACK_PENALTY
        reasons.append("trained on a stack; this image is a single sub — "
                       "its noise is stronger than the model learned, expect noise left behind and artefacts")

    return Match(entry, float(score), usable, reasons)


# ----------------------------------------------------------------------------
# Formatting for the CLI


def format_list(library: ModelLibrary) -> str:
    """The text of ``siril-denoise models list``: one line per model, then problems."""
    entries, problems = library.scan()
    if entries:
        lines = [f"{len(entries)} model{'s' if len(entries) != 1 else ''} in {library.root}:"]
        lines += ["  " + e.summary() for e in entries]
    else:
        lines = [f"No models in {library.root}. Train one with `siril-denoise train`."]
    if problems:
        lines.append(f"Skipped {len(problems)} unreadable entr{'ies' if len(problems) != 1 else 'y'}:")
        lines += ["  " + p for p in problems]
    return "\n".join(lines)


def format_show(entry: LibraryEntry) -> str:
    """The text of ``siril-denoise models show NAME``."""
    return entry.describe()


def format_matches(matches: list[Match]) -> str:
    """Matches as text, best first, each with its reasons (for ``auto`` and the GUI log)."""
    if not matches:
        return "No models in the library."
    return "\n".join(m.summary() for m in matches)


# ----------------------------------------------------------------------------
# Private helpers


def _training_file(model: Path, kind: str) -> Path:
    """Where the training file ``kind`` of :data:`TRAINING_FILES` sits beside ``model`` (``<name>.onnx``)."""
    return model.with_name(model.stem + TRAINING_FILES[kind])


def _remove_model_files(model: Path) -> None:
    """Remove ``<name>.onnx``, ``<name>.json`` and the training files; missing ones are fine."""
    for path in [model, model.with_suffix(".json")] + [_training_file(model, k) for k in TRAINING_FILES]:
        path.unlink(missing_ok=True)


def _meta_dict(meta: Any) -> dict:
    """Acquisition metadata as a dict from an ImageMeta, a dict, or None."""
    if meta is None:
        return {}
    if isinstance(meta, Mapping):
        return dict(meta)
    if hasattr(meta, "to_dict"):
        return dict(meta.to_dict())
    if dataclasses.is_dataclass(meta):
        return dataclasses.asdict(meta)
    return {key: getattr(meta, key, None) for key in CAMERA_FIELDS}


def _build_info(model_meta: Mapping, meta: Mapping, *, source: str) -> dict:
    """The JSON written beside a model: the model's own metadata plus the camera's."""
    embedded = model_meta.get("camera") or model_meta.get("meta") or {}
    if not isinstance(embedded, Mapping):
        embedded = {}
    camera = {}
    for key in CAMERA_FIELDS:
        value = meta.get(key)
        camera[key] = value if value is not None else embedded.get(key)

    info: dict[str, Any] = {"format": INFO_FORMAT}
    for key in _MODEL_FIELDS:
        info[key] = model_meta.get(key)
    if info["is_stack"] is None:
        info["is_stack"], _ = _stack_state(camera)
    training = model_meta.get("training") or {}
    info["training"] = dict(training) if isinstance(training, Mapping) else {}
    normalisation = model_meta.get("normalisation") or {}
    info["normalisation"] = dict(normalisation) if isinstance(normalisation, Mapping) else {}
    info["camera"] = camera
    now = datetime.now().astimezone()
    trained = _parse_date(model_meta.get("trained") or model_meta.get("date")
                          or _first(info["training"], "date", "trained", "finished", "created"))
    info["trained"] = _iso(trained or now)
    info["added"] = _iso(now)
    info["source"] = source
    return info


def _default_name(info: Mapping) -> str:
    cam = info.get("camera") or {}
    parts = []
    if cam.get("instrument"):
        parts.append(str(cam["instrument"]))
    if cam.get("gain") is not None:
        parts.append(f"g{_fmt_num(cam['gain'])}")
    if _positive(cam.get("exposure")):
        parts.append(f"{_fmt_num(cam['exposure'])}s")
    if info.get("is_stack"):
        parts.append("stack")
    parts.append(str(info.get("method") or "model"))
    date = _parse_date(info.get("trained")) or datetime.now()
    parts.append(date.strftime("%Y%m%d-%H%M"))
    return sanitise_name("_".join(parts)) or "model"


def _describe_stack(is_stack: bool | None, cam: Mapping) -> str:
    if is_stack is True:
        _, count = _stack_state({**cam, "is_stack": True})
        return f"a stack of {count} frames" if count else "stacked data"
    if is_stack is False:
        return "single subs"
    return "unknown (single subs or stack)"


def _describe_layout(channels: Any, cfa: Any) -> str:
    if _norm_cfa(cfa):
        return f"{_norm_cfa(cfa)} Bayer (CFA, packed to 4 planes)"
    if channels is None:
        return "? channels"
    channels = int(channels)
    return {1: "mono (1 channel)", 3: "RGB (3 channels)"}.get(channels, f"{channels} channels")


def _temperature(meta: Mapping) -> float | None:
    value = meta.get("temperature")
    return value if value is not None else meta.get("set_temperature")


def _binning(meta: Mapping) -> tuple[int, int] | None:
    x, y = meta.get("xbinning"), meta.get("ybinning")
    if x is None and y is None:
        return None
    x = int(x) if x is not None else int(y)
    y = int(y) if y is not None else x
    return x, y


def _norm_cfa(cfa: Any) -> str | None:
    if cfa is None:
        return None
    text = str(cfa).strip().upper()
    return text if text and text != "NONE" else None


def _same_text(a: Any, b: Any) -> bool | None:
    """True/False when both are known, None when either is missing."""
    if a is None or b is None or str(a).strip() == "" or str(b).strip() == "":
        return None
    norm = lambda s: " ".join(str(s).split()).casefold()  # noqa: E731
    return norm(a) == norm(b)


def _close(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-3, abs_tol=1e-6)
    except (TypeError, ValueError):
        return _same_text(a, b) is not False


def _delta(model: Any, image: Any) -> float | None:
    try:
        return float(image) - float(model) if model is not None and image is not None else None
    except (TypeError, ValueError):
        return None


def _positive(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value > 0 and math.isfinite(value) else None


def _first(mapping: Mapping, *keys: str) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None


def _parse_date(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value).astimezone()
    if isinstance(value, str) and value.strip():
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _iso(date: datetime) -> str:
    return date.isoformat(timespec="seconds")


def _sort_key(entry: LibraryEntry) -> float:
    date = entry.trained
    if date is None:
        return 0.0
    if date.tzinfo is None:
        date = date.astimezone()
    return date.timestamp()


def _fmt_num(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(number)) if number.is_integer() else f"{number:g}"


def _fmt_value(value: Any, width: int = 100) -> str:
    """``value`` as text of at most ``width`` characters: a long list says how many items it holds."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if not isinstance(value, (dict, list)):
        return str(value)
    value = _rounded(value)
    text = json.dumps(value, default=_json_default)
    if len(text) <= width:
        return text
    if isinstance(value, list):
        head = ", ".join(json.dumps(v, default=_json_default) for v in value[:2])
        text = f"{len(value)} items: {head}, ..."
    return text if len(text) <= width else text[: width - 3] + "..."


def _rounded(value: Any) -> Any:
    """``value`` with every float in it rounded to 6 significant digits, for display."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


#: Training fields that :func:`_training_lines` words itself; the others are listed as they are.
_TRAINING_WORDED = frozenset((
    "frames", "validation_frame", "steps", "max_steps", "seconds", "device", "stopped", "best_val",
    "best_step", "val_input", "gain", "flags", "notes", "pairs", "steps_per_s", "pixels_per_s", "mfu",
    "gflops"))


def _training_lines(training: Mapping) -> list[tuple[str, str]]:
    """(label, text) lines of ``models show``'s training block, from a model's ``training`` metadata.

    The score is the held-out validation loss against the untouched input's
    (``gain`` = 1 - best/untouched, 0..1, higher is better); the Noise2Noise
    registration pairs are summarised by count, overlap range and the
    worst-overlapping few.
    """
    get = training.get
    lines: list[tuple[str, str]] = []
    if get("frames") is not None:
        held = get("validation_frame")
        lines.append(("frames", f"{get('frames')}" + (f" (frame {held + 1} held out for validation)"
                                                      if isinstance(held, int) else "")))
    if get("steps") is not None:
        text = f"{get('steps')}" + (f" of {get('max_steps')}" if get("max_steps") else "")
        if _positive(get("seconds")):
            text += f" in {float(get('seconds')):.0f} s" + (f" on {get('device')}" if get("device") else "")
        lines.append(("steps", text + (f" (stopped: {get('stopped')})" if get("stopped") else "")))
    best, untouched, gain = get("best_val"), get("val_input"), get("gain")
    if isinstance(best, (int, float)):
        text = f"best validation loss {best:.5g}"
        if get("best_step") is not None:
            text += f" at step {get('best_step')}"
        if isinstance(untouched, (int, float)) and math.isfinite(untouched):
            text += f"; untouched input {untouched:.5g}"
        if isinstance(gain, (int, float)) and math.isfinite(gain):
            text += f" ({100 * abs(gain):.1f} % {'lower' if gain >= 0 else 'higher'})"
        lines.append(("score", text))
    flags = get("flags")
    if isinstance(flags, list):
        lines.append(("flags", ", ".join(str(f) for f in flags) or "none"))
    pairs = [p for p in get("pairs") or [] if isinstance(p, Mapping)]
    if pairs:
        lines.append(("pairs", _describe_pairs(pairs)))
    if _positive(get("steps_per_s")):
        text = f"{_positive(get('steps_per_s')):.2f} steps/s"
        if _positive(get("pixels_per_s")):
            text += f", {_positive(get('pixels_per_s')) / 1e6:.2g} Mpx/s"
        if _positive(get("mfu")):
            text += f", {100 * _positive(get('mfu')):.0f} % of the matmul rate"
        lines.append(("speed", text))
    lines += [(str(key), _fmt_value(value)) for key, value in training.items() if key not in _TRAINING_WORDED]
    return lines


def _describe_pairs(pairs: list[Mapping]) -> str:
    """'90 frame pairs, overlap 93-100 % (median 99 %); least overlap: 3->7 93 %, ...' (frames counted from 1)."""
    overlaps = sorted(((float(p["overlap"]), p) for p in pairs if isinstance(p.get("overlap"), (int, float))),
                      key=lambda pair: pair[0])
    text = f"{len(pairs)} frame pairs"
    if overlaps:
        values = [o for o, _ in overlaps]
        median = values[len(values) // 2]
        text += f", overlap {100 * values[0]:.0f}-{100 * values[-1]:.0f} % (median {100 * median:.0f} %)"
        number = lambda k: k + 1 if isinstance(k, int) else "?"  # noqa: E731
        worst = [f"{number(p.get('i'))}->{number(p.get('j'))} {100 * o:.0f} %" for o, p in overlaps[:3]]
        text += "; least overlap: " + ", ".join(worst)
    return text


def _json_default(value: Any) -> Any:
    """Make numpy scalars and arrays, paths and dates JSON-safe."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (Path, datetime)):
        return str(value)
    return repr(value)
