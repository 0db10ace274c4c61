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

import importlib.util
import os
from pathlib import Path
from typing import Any, Callable

import sirilpy

from ..errors import DenoiseError, InputError
from .seqfile import SequenceInfo

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


def _plain(value: Any) -> Any:
    """Siril gives 0, '' or None for a keyword it does not know: all become None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    try:
        if float(value) == 0.0:
            return None
    except (TypeError, ValueError):
        return None
    return value


def _num(value: Any) -> float | None:
    value = _plain(value)
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _header_number(header: dict, key: str, fallback: float | None) -> float | None:
    """The header's numeric value for ``key`` (zero included), else ``fallback``."""
    value = header.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return fallback


def _temperature(value: Any) -> float | None:
    """Temperatures may legitimately be 0 °C, but Siril marks unknown ones with -999 or None."""
    if value is None:
        return None
    try:
        t = float(value)
    except (TypeError, ValueError):
        return None
    return None if t <= -273.0 else t


def meta_from_siril(keywords: Any, header: dict | None, height: int) -> Any:
    """Build an :class:`siril_denoise.io.ImageMeta` from Siril's ``FKeywords``.

    ``header`` (the FITS header as a dict, when Siril gives one) fills what
    ``FKeywords`` does not carry (``PEDESTAL``, ``RDNOISE``). ``height`` is the
    image height, needed to turn a bottom-up Bayer pattern into the pattern of
    the array (see :func:`siril_denoise.io.bayer_pattern_for_array`).
    """
    from ..io import ImageMeta, bayer_pattern_for_array

    header = {str(k).upper(): v for k, v in (header or {}).items()}
    kw = keywords
    get = lambda name: getattr(kw, name, None)  # noqa: E731 - keywords differ between sirilpy versions
    date_obs = get("date_obs")
    stackcnt = _num(get("stackcnt"))
    exposure = _num(get("exposure"))
    livetime = _num(get("livetime"))
    meta = ImageMeta(
        instrument=_plain(get("instrume")),
        # GAIN = 0 is a real setting: FKeywords cannot tell it from "unknown", the header can.
        gain=_header_number(header, "GAIN", _num(get("gain"))),
        offset=_header_number(header, "OFFSET", _num(get("offset"))),
        egain=_num(get("cvf")),
        read_noise=_num(header.get("RDNOISE")),
        exposure=exposure,
        temperature=_temperature(get("ccd_temp")),
        set_temperature=_temperature(get("set_temp")),
        filter=_plain(get("filter")),
        xbinning=int(get("binning_x") or 1),
        ybinning=int(get("binning_y") or 1),
        bayer_pattern=bayer_pattern_for_array(
            _plain(get("bayer_pattern")),
            row_order=_plain(get("row_order")) or _plain(header.get("ROWORDER")),
            xoffset=int(get("bayer_xoffset") or 0),
            yoffset=int(get("bayer_yoffset") or 0),
            height=height,
        ),
        stackcnt=None if stackcnt is None else int(stackcnt),
        livetime=livetime,
        date_obs=date_obs.isoformat() if hasattr(date_obs, "isoformat") else _plain(date_obs),
        object=_plain(get("object")),
        pedestal=_num(header.get("PEDESTAL")),
    )
    meta.is_stack = bool((meta.stackcnt or 0) > 1
                         or (livetime and exposure and livetime > 1.5 * exposure))
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

    # -- connection -------------------------------------------------------

    @classmethod
    def connect(cls) -> "SirilHost":
        """Connect to the Siril that started this script; :class:`NotInSiril` otherwise."""
        siril = sirilpy.SirilInterface()
        try:
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
        """One line in Siril's log; ``level`` 'error' is red, 'warning' salmon, 'ok' green."""
        color = {"error": sirilpy.LogColor.RED, "warning": sirilpy.LogColor.SALMON,
                 "ok": sirilpy.LogColor.GREEN}.get(level, sirilpy.LogColor.DEFAULT)
        for line in str(message).splitlines() or [""]:
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

    def reports_dir(self) -> Path:
        """Where training curves and reports are kept."""
        return Path(self.siril.get_siril_userdatadir()) / "siril-denoise" / "reports"

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

    def write_image(self, data: Any, undo_message: str) -> None:
        """Replace the loaded image's pixels, undoably (Edit > Undo restores them)."""
        message = undo_message.encode()[:_UNDO_MAX].decode(errors="ignore")
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
        """The loaded sequence; refuses single-file sequences when ``need_regular``."""
        if not self.has_sequence():
            raise InputError("No sequence is loaded in Siril. Load one in the Sequence tab "
                             "(set the working directory, Search sequences, pick it), then run "
                             "the script again; or give it by name with --seq NAME (the only "
                             "way under siril-cli, which cannot load a sequence).")
        try:
            seq = self.siril.get_seq()
        except sirilpy.SirilError as exc:
            raise DenoiseError(f"Could not read the sequence from Siril: {exc}") from exc
        if need_regular and int(seq.type) != int(sirilpy.SequenceType.SEQ_REGULAR):
            kind = getattr(seq.type, "name", str(seq.type)).replace("SEQ_", "")
            raise InputError(
                f"Sequence '{seq.seqname}' is a {kind} file. This script writes one FITS file per "
                "frame, so it needs a sequence of FITS files: convert it first (Conversion tab, "
                "or the command `convert` / `fits2seq`), load the converted sequence and run the "
                "script again.")
        number = int(seq.number)
        imgparam = list(seq.imgparam or [])[:number]
        selected = [i for i, p in enumerate(imgparam) if bool(getattr(p, "incl", True))]
        return SequenceInfo(
            name=os.path.basename(str(seq.seqname)),
            number=number,
            selected=selected,
            layers=int(seq.nb_layers),
            width=int(seq.rx),
            height=int(seq.ry),
            reference=int(seq.reference_image) if seq.reference_image is not None else 0,
            filenums=[int(p.filenum) for p in imgparam],
            homographies=self._homographies(seq, number),
        )

    @staticmethod
    def _homographies(seq: Any, number: int) -> list[Any] | None:
        """Per-frame 3x3 frame->reference matrices, or None when there is no registration data.

        Siril keeps registration in ``regparam[layer][frame]``; colour sequences
        are usually registered on one layer only, so the first layer with data
        is used.
        """
        for layer in list(seq.regparam or []):
            if not layer:
                continue
            regs = list(layer)[:number]
            if len(regs) == number and all(r is not None and getattr(r, "H", None) is not None
                                           for r in regs):
                return [homography_matrix(r.H) for r in regs]
        return None

    def _check_index(self, info: SequenceInfo, index: int) -> None:
        # Out of range indices crash Siril: check against the sequence as it is now.
        number = int(self.siril.get_seq().number)
        if not 0 <= index < min(number, info.number):
            raise InputError(f"Frame {index + 1} is not in the sequence (it has {number} frames); "
                             "was the sequence changed while the script ran?")

    def read_frame(self, info: SequenceInfo, index: int) -> tuple[Any, Any]:
        """Frame ``index`` (0-based) of the loaded sequence: pixels and :class:`ImageMeta`."""
        if not self.has_sequence():
            raise InputError("The sequence was closed in Siril while the script ran.")
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

    def create_sequence(self, root: str) -> bool:
        """Create ``<root>.seq`` for the files written (root = prefix + sequence name)."""
        try:
            return bool(self.siril.create_new_seq(root))
        except sirilpy.SirilError as exc:
            raise DenoiseError(f"Siril could not create the sequence {root}: {exc}") from exc

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
        except (sirilpy.SirilError, ValueError, TypeError, AttributeError):
            return {}
        return header if isinstance(header, dict) else {}


# --------------------------------------------------------------------------
# Dependencies inside Siril's Python environment


def _missing(packages: dict[str, str]) -> list[str]:
    return [pip for pip, module in packages.items() if importlib.util.find_spec(module) is None]


def _install(host: SirilHost, packages: dict[str, str], why: str) -> list[str]:
    installed = []
    for pip_name in _missing(packages):
        host.log(f"Installing {pip_name} in Siril's Python environment ({why})...")
        try:
            sirilpy.ensure_installed(pip_name)
        except Exception as exc:  # noqa: BLE001 - pip failures come in many types
            raise DenoiseError(f"Could not install {pip_name} ({exc}). Check the internet "
                               "connection, or install it in Siril's Python environment.") from exc
        installed.append(pip_name)
    return installed


def bootstrap(host: SirilHost, *, need_gui: bool) -> list[str]:
    """Make the engine's dependencies importable; returns (and logs) what was installed.

    onnxruntime comes from ``ONNXHelper``, which picks the CUDA, DirectML,
    CoreML, OpenVINO or CPU build for this machine. torch is installed later,
    only when needed (:func:`ensure_torch`).
    """
    installed = _install(host, ENGINE_PACKAGES, "needed by siril-denoise")
    if need_gui:
        installed += _install(host, GUI_PACKAGES, "for the dialog")
    helper = sirilpy.ONNXHelper()
    if not helper.is_onnxruntime_installed():
        host.log("Installing onnxruntime for this machine (one time, may take a few minutes)...")
        try:
            helper.install_onnxruntime()
        except Exception as exc:  # noqa: BLE001
            raise DenoiseError(f"Could not install onnxruntime ({exc}).") from exc
        if not helper.is_onnxruntime_installed():
            raise DenoiseError("onnxruntime could not be installed in Siril's Python environment; "
                               "see the messages above.")
        installed.append("onnxruntime")
    if installed:
        host.log("Installed: " + ", ".join(installed))
    return installed


def execution_providers(host: SirilHost, use_gpu: bool) -> list[Any]:
    """onnxruntime providers, best first, always ending with the CPU (logged)."""
    try:
        providers = list(sirilpy.ONNXHelper().get_execution_providers_ordered(ai_gpu_acceleration=use_gpu))
    except Exception as exc:  # noqa: BLE001 - a broken GPU runtime must not stop a CPU run
        host.log(f"Could not list onnxruntime's GPU providers ({exc}); using the CPU.", "warning")
        providers = []
    names = [p[0] if isinstance(p, (tuple, list)) else str(p) for p in providers]
    if "CPUExecutionProvider" not in names:
        providers.append("CPUExecutionProvider")
        names.append("CPUExecutionProvider")
    host.log("Inference providers: " + ", ".join(names))
    return providers


def ensure_torch(host: SirilHost, use_gpu: bool) -> str:
    """Install PyTorch (and the training extras) when missing; returns and logs the device."""
    helper_class = getattr(sirilpy, "TorchHelper", None)  # sirilpy >= 1.0.17 only
    if importlib.util.find_spec("torch") is None:
        host.log("Installing PyTorch for this machine (one time, large download)...")
        try:
            ok = helper_class().ensure_torch() if helper_class else sirilpy.ensure_installed("torch")
        except Exception as exc:  # noqa: BLE001
            ok, why = False, f" ({exc})"
        else:
            why = ""
        if not ok or importlib.util.find_spec("torch") is None:
            raise DenoiseError("PyTorch could not be installed" + why + "; it is needed to train "
                               "a model or use a zero-shot method. Pick a saved model instead, or "
                               "install torch in Siril's Python environment.")
        host.log("Installed: torch")
    extras = _install(host, TRAINING_PACKAGES, "needed for training")
    if extras:
        host.log("Installed: " + ", ".join(extras))
    try:
        if helper_class is not None and hasattr(helper_class, "get_torch_device"):
            device = str(helper_class().get_torch_device(use_gpu=use_gpu))
        else:
            import torch

            device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001
        device = "cpu"
    host.log(f"Training on: {device}")
    return device
