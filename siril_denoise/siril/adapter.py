"""The one module that talks to Siril through ``sirilpy``.

Everything Siril-specific lives here: connecting, reading the loaded image or
the frames of the loaded sequence (pixels in Siril's layout, plus the
keywords that identify their noise), writing results back (undoable for the
image, a new prefixed sequence for frames), the log, the progress bar,
message boxes, Siril's folders, and installing the engine's dependencies in
Siril's Python environment.

Expected failures come out as :class:`siril_denoise.errors.DenoiseError`
with a message that says what to do; ``sirilpy`` exceptions never escape.

Three habits of the real Siril shape this code (``shared/siril-host.md``):
a failed ``get_image_pixeldata()`` makes the next call hang for 60 s, so
``is_image_loaded()``/``is_sequence_loaded()`` are checked first, always;
``get_seq_frame_pixeldata(i)`` with ``i`` out of range crashes Siril, so
indices are checked against ``get_seq().number``; ``set_image_pixeldata``
only works while the processing thread is claimed with ``image_lock()``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import sirilpy

from ..errors import DenoiseError, InputError
from ..stacks import is_stack
from .seqfile import SequenceInfo, registered, siril_to_array_homography

#: Engine dependencies: pip name -> import name.
ENGINE_PACKAGES = {
    "numpy": "numpy", "scipy": "scipy", "onnx": "onnx", "astropy": "astropy",
    "xisf": "xisf", "tqdm": "tqdm", "platformdirs": "platformdirs",
}
#: Extra packages for training and zero-shot methods (torch itself comes from TorchHelper).
TRAINING_PACKAGES = {
    "onnxscript": "onnxscript", "astroalign": "astroalign", "scikit-image": "skimage", "sep": "sep",
    "matplotlib": "matplotlib",
}
GUI_PACKAGES = {"PyQt6": "PyQt6"}

#: Siril's undo messages are limited to 70 bytes.
_UNDO_MAX = 70


class NotInSiril(DenoiseError):
    """The script was started outside Siril."""


#: Siril's "keyword not in the header" values (``DEFAULT_*_VALUE`` in Siril's C
#: source, ``sirilpy.enums._Defaults``): INT_MAX for unsigned integers (GAIN,
#: OFFSET, STACKCNT, XBINNING), -INT_MAX for signed ones (XBAYROFF, YBAYROFF),
#: -999 for floating point (EXPTIME, CVF, LIVETIME, CCD-TEMP). sirilpy 1.0.25
#: turns them into None in ``FKeywords.deserialize``; any path that hands them
#: over raw must not read them as "a stack of 2147483647" or an odd Bayer offset.
_SENTINELS = frozenset({2147483647.0, -2147483647.0, -999.0})


def _absent(value: Any) -> bool:
    """True for None, '', a non-number, NaN/inf or one of Siril's sentinels."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, bool):
        return False
    try:
        number = float(value)
    except (TypeError, ValueError):
        return True
    return number in _SENTINELS or not math.isfinite(number)


def _plain(value: Any) -> Any:
    """Siril gives 0, '', None or a sentinel for a keyword it does not know: all become None."""
    if _absent(value):
        return None
    if isinstance(value, str):
        return value.strip()
    if float(value) == 0.0:
        return None
    return value


def _num(value: Any) -> float | None:
    value = _plain(value)
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _value(value: Any) -> float | None:
    """A number where 0 is a real setting (GAIN = 0); absent or a sentinel is None."""
    if _absent(value) or isinstance(value, str):
        return None
    return float(value)


def _count(value: Any, default: int = 1) -> int:
    """A positive count (binning); absent, a sentinel or < 1 is ``default``."""
    if _absent(value) or isinstance(value, str) or float(value) < 1:
        return default
    return int(value)


def _offset(value: Any) -> int:
    """A Bayer offset (XBAYROFF/YBAYROFF); absent or -INT_MAX is 0."""
    if _absent(value) or isinstance(value, str):
        return 0
    return int(value)


def _header_number(header: dict, key: str, fallback: float | None) -> float | None:
    """The header's numeric value for ``key`` (zero included), else ``fallback``."""
    value = header.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not _absent(value):
        return float(value)
    return fallback


def _temperature(value: Any) -> float | None:
    """Temperatures may legitimately be 0 °C, but Siril marks unknown ones with -999 or None."""
    if _absent(value) or isinstance(value, str):
        return None
    t = float(value)
    return None if t <= -273.0 else t


def _date_obs(keyword: Any, header: dict) -> str | None:
    """The start of the exposure in UTC, ISO 8601.

    The header's ``DATE-OBS`` is UTC by the FITS standard and is used as
    written. ``FKeywords.date_obs`` is not: sirilpy builds it with
    ``datetime.fromtimestamp()``, a naive datetime in the computer's *local*
    time, so it is converted back to UTC.
    """
    text = header.get("DATE-OBS")
    if isinstance(text, str) and text.strip():
        return text.strip()
    if isinstance(keyword, datetime):
        if keyword.tzinfo is None:
            keyword = keyword.astimezone()  # a naive datetime from sirilpy is local time
        return keyword.astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    return _plain(keyword) if isinstance(keyword, str) else None


def meta_from_siril(keywords: Any, header: dict | None, height: int) -> Any:
    """Build an :class:`siril_denoise.io.ImageMeta` from Siril's ``FKeywords``.

    ``header`` (the FITS header as a dict, when Siril gives one) fills what
    ``FKeywords`` does not carry (``PEDESTAL``, ``RDNOISE``) and is preferred
    where it is exact (``GAIN`` = 0, ``DATE-OBS`` in UTC). ``height`` is the
    image height, needed to turn a bottom-up Bayer pattern into the pattern of
    the array (see :func:`siril_denoise.io.bayer_pattern_for_array`). Absent
    keywords, whether None or one of Siril's sentinels, are unknown.
    """
    from ..io import ImageMeta, bayer_pattern_for_array

    header = {str(k).upper(): v for k, v in (header or {}).items()}
    kw = keywords
    get = lambda name: getattr(kw, name, None)  # noqa: E731 - keywords differ between sirilpy versions
    stackcnt = _num(get("stackcnt"))
    exposure = _num(get("exposure"))
    livetime = _num(get("livetime"))
    meta = ImageMeta(
        instrument=_plain(get("instrume")),
        # GAIN = 0 is a real setting: the header says so exactly, FKeywords gives 0 or None.
        gain=_header_number(header, "GAIN", _value(get("gain"))),
        offset=_header_number(header, "OFFSET", _value(get("offset"))),
        egain=_num(get("cvf")),
        read_noise=_num(header.get("RDNOISE")),
        exposure=exposure,
        temperature=_temperature(get("ccd_temp")),
        set_temperature=_temperature(get("set_temp")),
        filter=_plain(get("filter")),
        xbinning=_count(get("binning_x")),
        ybinning=_count(get("binning_y")),
        bayer_pattern=bayer_pattern_for_array(
            _plain(get("bayer_pattern")),
            row_order=_plain(get("row_order")) or _plain(header.get("ROWORDER")),
            xoffset=_offset(get("bayer_xoffset")),
            yoffset=_offset(get("bayer_yoffset")),
            height=height,
        ),
        stackcnt=None if stackcnt is None else int(stackcnt),
        livetime=livetime,
        date_obs=_date_obs(get("date_obs"), header),
        object=_plain(get("object")),
        pedestal=_num(header.get("PEDESTAL")),
    )
    meta.is_stack = is_stack(meta)
    return meta


def homography_matrix(h: Any) -> Any:
    """Siril's ``Homography`` (h00..h22, frame -> reference) as a 3x3 numpy array."""
    import numpy as np

    return np.array([[h.h00, h.h01, h.h02], [h.h10, h.h11, h.h12], [h.h20, h.h21, h.h22]],
                    dtype=np.float64)


class SirilHost:
    """A connected Siril, seen through the few calls the scripts need."""

    def __init__(self, siril: Any) -> None:
        self.siril = siril
        self._seq: tuple[Any, SequenceInfo] | None = None  # get_seq() and its info, read once
        #: seconds spent installing PyTorch and the training packages in this run
        self.install_seconds = 0.0
        self._training_ready = False

    # -- connection -------------------------------------------------------

    @classmethod
    def connect(cls) -> "SirilHost":
        """Connect to the Siril that started this script; :class:`NotInSiril` otherwise."""
        try:
            # Outside Siril the constructor itself raises (MY_SOCKET / MY_PIPE is not set).
            siril = sirilpy.SirilInterface()
            siril.connect()
        except sirilpy.SirilError as exc:
            raise NotInSiril(
                "This script must be started by Siril (Scripts menu, or `pyscript` in Siril's "
                f"command line). Outside Siril, use the `siril-denoise` command. ({exc})") from exc
        return cls(siril)

    def disconnect(self) -> None:
        try:
            self.siril.disconnect()
        except Exception:  # noqa: BLE001 - closing a dead connection is not an error worth showing
            pass

    def is_cli(self) -> bool:
        """True when Siril runs headless (siril-cli): no dialogs then."""
        try:
            return bool(self.siril.is_cli())
        except sirilpy.SirilError:
            return True

    def require_siril(self, version: str = "1.4.0") -> None:
        """Refuse to run on a Siril older than ``version``."""
        try:
            self.siril.cmd("requires", version)
        except sirilpy.CommandError as exc:
            raise DenoiseError(f"siril-denoise needs Siril {version} or newer. ({exc})") from exc
        except sirilpy.SirilError:
            pass  # the check itself is not available here; carry on

    # -- feedback ---------------------------------------------------------

    def log(self, message: str, level: str = "info") -> None:
        """One line in Siril's log; ``level`` 'error' is red, 'warning' salmon, 'ok' green.

        An error also starts with ``ERROR:``: colours do not reach ``siril-cli``'s
        log, and Siril ends a failed script with "Script execution finished
        successfully" all the same, so the word is what tells the user.
        """
        color = {"error": sirilpy.LogColor.RED, "warning": sirilpy.LogColor.SALMON,
                 "ok": sirilpy.LogColor.GREEN}.get(level, sirilpy.LogColor.DEFAULT)
        lines = str(message).splitlines() or [""]
        if level == "error" and not lines[0].startswith(("ERROR", " ", "Traceback")):
            lines[0] = "ERROR: " + lines[0]
        for line in lines:
            try:
                self.siril.log(line, color)
            except sirilpy.SirilError:
                print(line, flush=True)

    def progress(self, fraction: float, message: str) -> None:
        """Siril's progress bar; ``fraction`` in [0, 1] (clamped)."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        try:
            self.siril.update_progress(str(message), fraction)
        except sirilpy.SirilError:
            pass

    def should_cancel(self) -> bool:
        """Siril's own Stop button does not reach a script: the runner supplies the cancel."""
        return False

    def reset_progress(self) -> None:
        try:
            self.siril.reset_progress()
        except sirilpy.SirilError:
            pass

    def message_box(self, message: str, level: str = "error") -> None:
        """A Siril message box (never when headless)."""
        if self.is_cli():
            return
        show = {"info": self.siril.info_messagebox, "warning": self.siril.warning_messagebox}.get(
            level, self.siril.error_messagebox)
        try:
            show(message)
        except sirilpy.SirilError:
            pass

    # -- folders ----------------------------------------------------------

    def config_dir(self) -> Path:
        return Path(self.siril.get_siril_configdir())

    def models_dir(self) -> Path:
        """The model library inside Siril's user data folder."""
        return Path(self.siril.get_siril_userdatadir()) / "siril-denoise" / "models"

    def working_dir(self) -> Path:
        return Path(self.siril.get_siril_wd())

    def fits_extension(self) -> str:
        try:
            ext = str(self.siril.get_siril_config("core", "extension") or ".fit")
        except sirilpy.SirilError:
            ext = ".fit"
        return ext if ext.startswith(".") else "." + ext

    # -- the loaded image -------------------------------------------------

    def has_image(self) -> bool:
        return bool(self.siril.is_image_loaded())

    def read_image(self) -> tuple[Any, Any]:
        """The loaded image's pixels (Siril layout and dtype) and its :class:`ImageMeta`."""
        if not self.has_image():
            raise InputError("No image is loaded in Siril. Open an image first "
                             "(File > Open), then run the script again.")
        try:
            data = self.siril.get_image_pixeldata()
            keywords = self.siril.get_image(with_pixels=False).keywords
            header = self._header_dict(self.siril.get_image_fits_header)
        except sirilpy.NoImageError as exc:
            raise InputError("No image is loaded in Siril. Open an image first.") from exc
        except sirilpy.SirilError as exc:
            raise DenoiseError(f"Could not read the image from Siril: {exc}") from exc
        return data, meta_from_siril(keywords, header, data.shape[-2])

    def image_meta(self) -> tuple[int, Any]:
        """Without reading pixels: the array's ndim (2 mono, 3 colour) and the :class:`ImageMeta`."""
        if not self.has_image():
            raise InputError("No image is loaded in Siril. Open an image first "
                             "(File > Open), then run the script again.")
        try:
            channels, height, _ = self.siril.get_image_shape()
            keywords = self.siril.get_image(with_pixels=False).keywords
            header = self._header_dict(self.siril.get_image_fits_header)
        except sirilpy.SirilError as exc:
            raise DenoiseError(f"Could not read the image from Siril: {exc}") from exc
        return (2 if int(channels) == 1 else 3), meta_from_siril(keywords, header, int(height))

    def prepare_training(self, use_gpu: bool) -> None:
        """Install PyTorch and the training packages, once per run (see :func:`ensure_torch`)."""
        if self._training_ready:
            return
        start = time.monotonic()
        installing = _import_problem("torch") is not None
        ensure_torch(self, use_gpu)
        if installing:
            self.install_seconds += time.monotonic() - start
        self._training_ready = True

    def write_image(self, data: Any, note: str) -> None:
        """Replace the loaded image's pixels, undoably (Edit > Undo restores them).

        ``note`` says what was done; Siril shows "siril-denoise <note>" in its
        undo history (cut to 70 bytes).
        """
        message = f"siril-denoise {note}".encode()[:_UNDO_MAX].decode(errors="ignore")
        try:
            with self.siril.image_lock():
                self.siril.undo_save_state(message)
                self.siril.set_image_pixeldata(data)
        except sirilpy.ProcessingThreadBusyError as exc:
            raise DenoiseError("Siril is busy with another task. Wait for it to finish (or stop "
                               "it), then run the script again; the image was not changed.") from exc
        except sirilpy.ImageDialogOpenError as exc:
            raise DenoiseError("An image-processing dialog is open in Siril. Close it, then run "
                               "the script again; the image was not changed.") from exc
        except sirilpy.NoImageError as exc:
            raise InputError("The image was closed in Siril while it was being denoised; "
                             "nothing was written.") from exc
        except (sirilpy.SirilError, ValueError) as exc:
            raise DenoiseError(f"Siril refused the denoised image: {exc}") from exc

    # -- the loaded sequence ----------------------------------------------

    def has_sequence(self) -> bool:
        return bool(self.siril.is_sequence_loaded())

    def sequence_info(self, *, need_regular: bool = True) -> SequenceInfo:
        """The loaded sequence; refuses what the Sequence script cannot write when ``need_regular``.

        ``get_seq()`` costs 2 + N(1 + 2L) + L socket calls (N frames, L
        layers), so it is asked once per run and kept.
        """
        if not self.has_sequence():
            raise InputError("No sequence is loaded in Siril. Load one in the Sequence tab "
                             "(set the working directory, Search sequences, pick it), then run "
                             "the script again; or give it by name with --seq NAME (the only "
                             "way under siril-cli, which cannot load a sequence).")
        cached = self._seq
        if cached is None:
            try:
                seq = self.siril.get_seq()
            except sirilpy.SirilError as exc:
                raise DenoiseError(f"Could not read the sequence from Siril: {exc}") from exc
            if seq is None:
                raise DenoiseError("Siril did not describe the loaded sequence; load it again.")
            cached = self._seq = (seq, self._sequence_info(seq))
        seq, info = cached
        if need_regular:
            self._check_writable(seq)
        return info

    def _check_writable(self, seq: Any) -> None:
        """Refuse, before any frame is processed, a sequence Siril cannot write back as one.

        ``set_seq_frame_pixeldata`` writes one FITS file per frame, named with
        the sequence's own digit count (``fixed``) and ``.fz`` when compressed;
        ``create_new_seq`` only finds ``<root>NNNNN<ext>`` (5 digits, Siril's
        extension): anything else would leave files that make no sequence.
        """
        name = os.path.basename(str(seq.seqname))
        if int(seq.type) != int(sirilpy.SequenceType.SEQ_REGULAR):
            kind = getattr(seq.type, "name", str(seq.type)).replace("SEQ_", "")
            raise InputError(
                f"Sequence '{name}' is a {kind} file. This script writes one FITS file per "
                "frame, so it needs a sequence of FITS files: convert it first (Conversion tab, "
                "or the command `convert` / `fits2seq`), load the converted sequence and run the "
                "script again.")
        if bool(getattr(seq, "fz", False)):
            raise InputError(
                f"Sequence '{name}' holds compressed (.fz) FITS files; Siril cannot gather "
                "denoised .fz frames into a new sequence from a script. Turn FITS compression off "
                f"(Preferences > FITS options), `convert {name} -out=plain` (or the Conversion "
                "tab), load the converted sequence and run the script again. Nothing was written.")
        fixed = int(getattr(seq, "fixed", 5) or 0)
        if fixed != 5:
            raise InputError(
                f"Sequence '{name}' numbers its files with {fixed} digits; Siril names the "
                f"denoised frames the same way but only gathers 5-digit names into a sequence. "
                f"Convert it first (`convert {name} -out=conv` in Siril's command line, or the "
                "Conversion tab), load the converted sequence and run the script again. Nothing "
                "was written.")

    def _sequence_info(self, seq: Any) -> SequenceInfo:
        number = int(seq.number)
        imgparam = list(seq.imgparam or [])[:number]
        selected = [i for i, p in enumerate(imgparam) if bool(getattr(p, "incl", True))]
        heights = [int(getattr(p, "ry", 0) or 0) or int(seq.ry) for p in imgparam]
        reference = int(seq.reference_image) if seq.reference_image is not None else 0
        reference = reference if 0 <= reference < number else 0
        return SequenceInfo(
            name=os.path.basename(str(seq.seqname)),
            number=number,
            selected=selected,
            layers=int(seq.nb_layers),
            width=int(seq.rx),
            height=int(seq.ry),
            reference=reference,
            filenums=[int(p.filenum) for p in imgparam],
            homographies=self._homographies(seq, number, heights, reference),
        )

    @staticmethod
    def _homographies(seq: Any, number: int, heights: list[int], reference: int) -> list[Any] | None:
        """Per-frame 3x3 frame->reference matrices in array coordinates, None where a frame
        failed to register; None when there is no registration data.

        Siril keeps registration in ``regparam[layer][frame]`` (in its own
        coordinates, rows counted from the bottom: see
        :func:`siril_denoise.siril.seqfile.siril_to_array_homography`); colour
        sequences are usually registered on one layer only, so the first
        layer with data is used.
        """
        for layer in list(seq.regparam or []):
            regs = list(layer or [])[:number]
            regs += [None] * (number - len(regs))
            mats = [None if r is None or getattr(r, "H", None) is None else homography_matrix(r.H)
                    for r in regs]
            mats = [m if m is not None and registered(m) else None for m in mats]
            if any(m is not None for m in mats):
                ref_height = heights[reference] if heights else None
                return [None if m is None else siril_to_array_homography(m, heights[i], ref_height)
                        for i, m in enumerate(mats)]
        return None

    def _check_index(self, info: SequenceInfo, index: int) -> None:
        # Out of range indices crash Siril: check against the sequence read at the start (asking
        # Siril again costs a full get_seq() per frame), and that a sequence is still loaded.
        if not self.has_sequence():
            raise InputError("The sequence was closed in Siril while the script ran.")
        if not 0 <= index < info.number:
            raise InputError(f"Frame {index + 1} is not in the sequence (it has {info.number} "
                             "frames); was the sequence changed while the script ran?")

    def read_frame(self, info: SequenceInfo, index: int) -> tuple[Any, Any]:
        """Frame ``index`` (0-based) of the loaded sequence: pixels and :class:`ImageMeta`."""
        self._check_index(info, index)
        try:
            data = self.siril.get_seq_frame_pixeldata(index)
            keywords = self.siril.get_seq_frame(index, with_pixels=False).keywords
            header = self._header_dict(lambda return_as: self.siril.get_seq_frame_header(
                index, return_as=return_as))
        except sirilpy.SirilError as exc:
            raise DenoiseError(f"Could not read frame {index + 1} from Siril: {exc}") from exc
        return data, meta_from_siril(keywords, header, data.shape[-2])

    def frame_meta(self, info: SequenceInfo, index: int) -> tuple[int, Any]:
        """Without reading pixels: frame ``index``'s ndim and :class:`ImageMeta`."""
        self._check_index(info, index)
        try:
            keywords = self.siril.get_seq_frame(index, with_pixels=False).keywords
            header = self._header_dict(lambda return_as: self.siril.get_seq_frame_header(
                index, return_as=return_as))
        except sirilpy.SirilError as exc:
            raise DenoiseError(f"Could not read frame {index + 1} from Siril: {exc}") from exc
        return (2 if info.layers == 1 else 3), meta_from_siril(keywords, header, info.height)

    def output_path(self, info: SequenceInfo, index: int, prefix: str) -> Path:
        """The file Siril writes for frame ``index`` with ``prefix``: ``<prefix><seq><NNNNN><ext>``."""
        return self.working_dir() / f"{prefix}{info.name}{info.filenums[index]:05d}{self.fits_extension()}"

    def write_frame(self, info: SequenceInfo, index: int, data: Any, prefix: str,
                    history: str | None = None) -> Path:
        """Write frame ``index`` as a new file with ``prefix``; the original is never touched.

        ``history`` is for hosts that write the file themselves; Siril writes
        the header here (the original's, kept).
        """
        if not prefix:
            raise InputError("A prefix is needed for the new sequence (e.g. dn_): without one "
                             "Siril would overwrite the original frames.")
        self._check_index(info, index)
        try:
            self.siril.set_seq_frame_pixeldata(index, data, prefix=prefix)
        except (sirilpy.SirilError, ValueError) as exc:
            raise DenoiseError(f"Siril could not write frame {index + 1}: {exc}") from exc
        return self.output_path(info, index, prefix)

    def discard_frames(self, paths: list[Path]) -> None:
        """A run failed: remove the frames it wrote (no sequence was created from them)."""
        removed = 0
        for path in paths:
            try:
                Path(path).unlink()
                removed += 1
            except OSError:
                pass
        if removed:
            self.log(f"Removed the {removed} frame(s) this run had written; no sequence was created.")

    def create_sequence(self, root: str) -> bool:
        """Create ``<root>.seq`` for the files written (root = prefix + sequence name)."""
        try:
            return bool(self.siril.create_new_seq(root))
        except sirilpy.SirilError as exc:
            raise DenoiseError(f"Siril could not create the sequence {root}: {exc}") from exc

    def can_load_sequence(self) -> bool:
        """Whether ``load_sequence`` can work here: only where a sequence is loaded already.

        ``is_cli()`` cannot tell: it is True for every ``pyscript``, typed in
        the GUI too, and there ``load_seq`` from a script works (measured in
        Siril 1.4.4). Headless ``siril-cli`` can load no sequence at all, and
        refuses ``load_seq``.
        """
        try:
            return bool(self.siril.is_sequence_loaded())
        except sirilpy.SirilError:
            return False

    def load_sequence(self, root: str) -> bool:
        """Ask Siril to load a sequence; False (and a log line) when it cannot."""
        try:
            self.siril.cmd("load_seq", root)
            return True
        except sirilpy.SirilError as exc:
            self.log(f"The new sequence {root} was created but not loaded ({exc}); load it from "
                     "the Sequence tab.", "warning")
            return False

    @staticmethod
    def _header_dict(getter: Callable[..., Any]) -> dict:
        try:
            header = getter(return_as="dict")
        except (sirilpy.SirilError, ValueError, TypeError, AttributeError, UnboundLocalError):
            # sirilpy 1.0.25's get_seq_frame_header raises UnboundLocalError for a frame
            # without a FITS header (SER, film): no header, not an error
            return {}
        return header if isinstance(header, dict) else {}


# --------------------------------------------------------------------------
# Dependencies inside Siril's Python environment


class _Output:
    """What the installers printed while captured (see :func:`_captured`)."""

    text = ""

    def tail(self, lines: int = 12) -> str:
        kept = [line for line in self.text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])


@contextlib.contextmanager
def _captured():
    """Keep pip's and sirilpy's helpers' output out of Siril's log, for the log's sake.

    sirilpy's installers stream every line pip prints (and pip's subprocess
    writes straight to the inherited file descriptors), dozens of lines per
    package. Everything written to fd 1 and 2 goes to a temporary file
    instead; the caller shows its tail when something failed.
    """
    out = _Output()
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved = [os.dup(1), os.dup(2)]
    except (AttributeError, OSError, ValueError):  # no real descriptors here: capture nothing
        yield out
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            out.text = tmp.read().decode("utf-8", errors="replace")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _import_problem(module: str) -> str | None:
    """None when ``module`` imports; else why not (an installed package can still fail to load)."""
    importlib.invalidate_caches()
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - ImportError, OSError from a missing shared library, ...
        return f"{type(exc).__name__}: {exc}"
    return None


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return f"{distribution} {metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return distribution


def _missing(packages: dict[str, str]) -> list[str]:
    importlib.invalidate_caches()
    return [pip for pip, module in packages.items() if not _importable(module)]


def _install(host: SirilHost, packages: dict[str, str], why: str) -> list[str]:
    """pip-install the missing ``packages`` (pip name -> import name); returns them with versions."""
    installed = []
    for pip_name in _missing(packages):
        host.log(f"Installing {pip_name} in Siril's Python environment ({why})...")
        with _captured() as out:
            try:
                sirilpy.ensure_installed(pip_name)
                error = None
            except Exception as exc:  # noqa: BLE001 - pip failures come in many types
                error = exc
        problem = _import_problem(packages[pip_name]) if error is None else str(error)
        if problem:
            raise DenoiseError(
                f"Could not install {pip_name} in Siril's Python environment ({problem}). Check the "
                "internet connection and run the script again, or install it there by hand."
                + (f"\npip said:\n{out.tail()}" if out.tail() else ""))
        installed.append(_version(pip_name))
    return installed


def _installed_onnxruntime(answer: Any) -> tuple[bool, str | None]:
    """``ONNXHelper.is_onnxruntime_installed()`` returns ``(installed, package_name)``: a
    tuple, truthy even when nothing is installed. Older sirilpy may return a bool."""
    if isinstance(answer, tuple):
        return bool(answer[0]), (answer[1] if len(answer) > 1 else None)
    return bool(answer), None


def ensure_onnxruntime(host: SirilHost) -> list[str]:
    """Install onnxruntime through Siril's ``ONNXHelper`` when it does not import; verify it does.

    ``ONNXHelper`` picks the CUDA, DirectML, CoreML, OpenVINO or CPU build for
    this machine. It is only asked when onnxruntime is missing: constructing it
    and asking whether onnxruntime is installed print to the log every time.
    """
    if _import_problem("onnxruntime") is None:
        return []
    host.log("Installing onnxruntime for this machine (Siril's ONNXHelper picks the GPU or CPU "
             "build; one time, may take a few minutes)...")
    package, error = None, None
    with _captured() as out:
        try:
            helper = sirilpy.ONNXHelper()
            helper.install_onnxruntime()
            present, package = _installed_onnxruntime(helper.is_onnxruntime_installed())
            if not present:
                error = "ONNXHelper installed nothing that imports"
        except Exception as exc:  # noqa: BLE001 - pip and helper failures come in many types
            error = f"{type(exc).__name__}: {exc}"
    problem = _import_problem("onnxruntime")
    if problem:
        raise DenoiseError(
            f"onnxruntime could not be installed in Siril's Python environment ({error or problem}). "
            "It runs every model; check the internet connection and run the script again."
            + (f"\nThe installer said:\n{out.tail()}" if out.tail() else ""))
    return [_version(package or "onnxruntime")]


def bootstrap(host: SirilHost, *, need_gui: bool) -> list[str]:
    """Make the engine's dependencies importable; returns (and logs) what was installed.

    Runs before any image is read for work, so nothing is trained before
    everything that runs the result is in place: the engine's packages,
    PyQt6 for a dialog, and onnxruntime (through ``ONNXHelper``, checked by
    importing it). torch and the training extras follow only when something
    is trained (:func:`ensure_torch`), also before training starts.
    """
    installed = _install(host, ENGINE_PACKAGES, "needed by siril-denoise")
    if need_gui:
        installed += _install(host, GUI_PACKAGES, "for the dialog")
    installed += ensure_onnxruntime(host)
    if installed:
        host.log("Installed: " + ", ".join(installed))
    return installed


#: onnxruntime providers that are no device to run a model on (Azure sends it to a cloud endpoint).
_NOT_DEVICES = ("AzureExecutionProvider",)


def execution_providers(host: SirilHost, use_gpu: bool) -> list[Any]:
    """onnxruntime providers, best first, always ending with the CPU (logged).

    Built from what this onnxruntime offers (the engine's own order: CUDA,
    ROCm, MIGraphX, DirectML, CoreML, OpenVINO, then CPU); a provider that
    fails falls back to the CPU in the engine, with a log line. sirilpy's
    ``get_execution_providers_ordered()`` is not used: its cache never loads
    (``_load_cached_providers`` returns an undefined name in sirilpy 1.0.25),
    so it reruns its provider self-test, some 20 lines of log, on every call,
    and its list starts with ``AzureExecutionProvider``.
    """
    from ..inference import CPU, available_providers

    try:
        providers = list(available_providers(use_gpu))
    except Exception as exc:  # noqa: BLE001 - a broken GPU runtime must not stop a CPU run
        host.log(f"Could not list onnxruntime's providers ({exc}); using the CPU.", "warning")
        providers = [CPU]
    name = lambda p: p[0] if isinstance(p, (tuple, list)) else str(p)  # noqa: E731
    providers = [p for p in providers if name(p) not in _NOT_DEVICES]
    if CPU not in [name(p) for p in providers]:
        providers.append(CPU)
    if "CUDAExecutionProvider" in [name(p) for p in providers]:
        _preload_cuda()
    host.log("Inference providers: " + ", ".join(name(p) for p in providers)
             + ("" if use_gpu else " (GPU off)"))
    return providers


def _preload_cuda() -> None:
    """Let onnxruntime find CUDA/cuDNN from a torch install in the same venv (as ``ONNXHelper`` does)."""
    try:
        import onnxruntime

        with _captured():
            if hasattr(onnxruntime, "preload_dlls"):
                onnxruntime.preload_dlls()
    except Exception:  # noqa: BLE001 - a failed preload only means the CPU fall-back may be used
        pass


def ensure_torch(host: SirilHost, use_gpu: bool) -> str:
    """Install PyTorch (and the training extras) when missing; returns and logs the device.

    Called before anything is trained. torch comes from ``TorchHelper``
    (sirilpy >= 1.0.17), which picks the CUDA, ROCm, XPU, MPS or CPU build.
    """
    helper_class = getattr(sirilpy, "TorchHelper", None)
    installed = []
    if _import_problem("torch") is not None:
        host.log("Installing PyTorch for this machine (Siril's TorchHelper picks the build; one time, "
                 "a large download that may take several minutes)...")
        error = None
        with _captured() as out:
            try:
                ok = helper_class().ensure_torch() if helper_class else sirilpy.ensure_installed("torch")
                if not ok:
                    error = "the installer reported a failure"
            except Exception as exc:  # noqa: BLE001
                error = f"{type(exc).__name__}: {exc}"
        problem = _import_problem("torch")
        if problem:
            raise DenoiseError(
                f"PyTorch could not be installed ({error or problem}); it is needed to train a model "
                "or use a zero-shot method. Pick a saved model instead, or install torch in Siril's "
                "Python environment."
                + (f"\nThe installer said:\n{out.tail()}" if out.tail() else ""))
        installed.append(_version("torch"))
    installed += _install(host, TRAINING_PACKAGES, "needed for training")
    if installed:
        host.log("Installed: " + ", ".join(installed))
    from ..usecases import training_device

    device = training_device(use_gpu)
    host.log(f"Training on: {device}")
    return device
