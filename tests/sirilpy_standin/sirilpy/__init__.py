"""A stand-in for Siril's ``sirilpy`` module, for tests only.

``sirilpy`` ships inside Siril and is not on PyPI, so the tests run the
project's Siril scripts against this module instead. It implements the calls
the project uses with the same names, signatures, layouts, dtypes, exceptions
and file effects as the real module talking to Siril 1.4.4 (see
``shared/siril-host.md``). It is meant to be strict: where the real Siril
refuses, crashes or hangs, this refuses too (and records it), so that a test
passes only when the real thing would.

State lives in a *session* directory named by ``SIRILPY_STANDIN_STATE``:

``session.json``
    ``{"wd": "<working dir>", "image": "<path of the loaded FITS>" | null,
    "sequence": {...} | null, "busy": false, "dialog_open": false, "gui": false,
    "userdatadir": ..., "configdir": ..., "extension": ".fit"}``

    ``gui``: a Siril with its GUI (``load_seq`` works there, even from a
    ``pyscript``, whose ``is_cli()`` is True all the same); siril-cli refuses it.

    ``sequence``: ``{"seqname": "light_", "type": 0, "reference_image": 0,
    "fixed": 5, "fz": false, "frames": [{"filenum": 1, "incl": true}, ...],
    "registration": null | [[9 floats, Siril's coordinates] | null, ...]}``;
    frame files are ``<wd>/<seqname><filenum padded to fixed digits><extension>``.

    ``missing``: ``["onnxruntime", "torch", ...]`` (import names), packages
    Siril's venv lacks: ``find_spec`` gives None and ``import`` fails until
    ``ensure_installed`` / ``ONNXHelper.install_onnxruntime`` /
    ``TorchHelper.ensure_torch`` installs them (the session remembers it, as a
    venv does); ``install_fails``: those whose install fails.

    ``raw_keyword_sentinels``: hand absent FITS keywords over as Siril's C code
    stores them (INT_MAX, -INT_MAX, -999) instead of sirilpy 1.0.25's None.

As in the real host: ``SirilInterface()`` raises outside Siril (no
``MY_SOCKET``); ``ONNXHelper.is_onnxruntime_installed()`` answers with a tuple;
``get_execution_providers_ordered()`` reruns its printed self-test on every
call and lists ``AzureExecutionProvider`` first; ``FKeywords.date_obs`` is the
computer's local time; absent keywords are None.

Effects are recorded as JSON lines in the same directory: ``log.jsonl``
(``log``/``print`` of the module), ``progress.jsonl``, ``messages.jsonl``
(message boxes), ``calls.jsonl`` (undo states, commands, installs, crashes).

Test hook: ``SIRILPY_STANDIN_SIGTERM_AFTER_WRITES=N`` sends SIGTERM to the
script process after its N-th ``set_seq_frame_pixeldata`` (a user stopping
the script half-way).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field, make_dataclass
from datetime import datetime, timezone
from enum import IntEnum
from pathlib import Path
from typing import Any, Optional

import numpy as np

__version__ = "1.0.25"

STATE_ENV = "SIRILPY_STANDIN_STATE"


# --------------------------------------------------------------------------
# Exceptions (same hierarchy as sirilpy.exceptions)


class SirilError(Exception):
    """Base exception class for all Siril-related errors; each subclass has its own default message."""

    default = "An error occurred"

    def __init__(self, message: str | None = None):
        self.message = message or self.default
        super().__init__(self.message)


class CommandError(SirilError):
    default = "Command execution failed"

    def __init__(self, message: str | None = None, status_code: int = 1):
        super().__init__(message)
        self.status_code = status_code


#: The other exceptions of sirilpy.exceptions: name -> default message.
for _name, _default in {
    "SirilConnectionError": "Failed to connect to Siril", "SharedMemoryError": "Siril shared memory error",
    "DataError": "Error handling data", "NoImageError": "No Siril image loaded",
    "NoSequenceError": "No Siril sequence loaded", "ProcessingThreadBusyError": "The processing thread is busy",
    "ImageDialogOpenError": "An image processing dialog is open", "MouseModeError": "Mouse mode error",
}.items():
    globals()[_name] = type(_name, (SirilError,), {"default": _default})


# --------------------------------------------------------------------------
# Enums and models (the fields the project uses)


class LogColor(IntEnum):
    DEFAULT = 0
    RED = 1
    SALMON = 2
    GREEN = 3
    BLUE = 4


class SequenceType(IntEnum):
    SEQ_REGULAR = 0
    SEQ_SER = 1
    SEQ_FITSEQ = 2
    SEQ_AVI = 3
    SEQ_INTERNAL = 4


@dataclass
class FKeywords:
    """The fields the project reads. Absent keywords: see :func:`_keywords` (None in 1.0.25)."""

    filter: str = ""
    object: str = ""
    instrume: str = ""
    telescop: str = ""
    bayer_pattern: str = ""
    row_order: str = ""
    date_obs: Optional[datetime] = None
    binning_x: int = 1
    binning_y: int = 1
    bayer_xoffset: Optional[int] = 0
    bayer_yoffset: Optional[int] = 0
    exposure: Optional[float] = 0.0
    ccd_temp: Optional[float] = 0.0
    set_temp: Optional[float] = 0.0
    livetime: Optional[float] = 0.0
    stackcnt: Optional[int] = 0
    cvf: Optional[float] = 0.0
    gain: Optional[int] = 0
    offset: Optional[int] = 0


#: Siril's C defaults for a keyword absent from the header (``sirilpy.enums._Defaults``).
DEFAULT_DOUBLE_VALUE = -999.0
DEFAULT_INT_VALUE = -2147483647
DEFAULT_UINT_VALUE = 2147483647


@dataclass
class FFit:
    bitpix: int = 16
    orig_bitpix: int = 16
    naxis: int = 2
    keywords: FKeywords = field(default_factory=FKeywords)
    header: Optional[str] = None
    top_down: bool = False
    data: Optional[np.ndarray] = None


#: sirilpy's Homography (frame -> reference; h00..h22, the identity by default) and RegData.
Homography = make_dataclass("Homography", [(f"h{r}{c}", float, float(r == c)) for r in range(3) for c in range(3)]
                            + [("pair_matched", int, 0), ("Inliers", int, 0)])
RegData = make_dataclass("RegData", [(n, float, 0.0) for n in ("fwhm", "weighted_fwhm", "roundness", "quality",
                                                                "background_lvl")]
                         + [("number_of_stars", int, 0), ("H", Homography, field(default_factory=Homography))])


@dataclass
class ImgData:
    filenum: int = 0
    incl: bool = True
    date_obs: Optional[datetime] = None
    airmass: float = 0.0
    rx: int = 0
    ry: int = 0


@dataclass
class Sequence:
    seqname: str = ""
    number: int = 0
    selnum: int = 0
    fixed: int = 5
    nb_layers: int = 1
    rx: int = 0
    ry: int = 0
    is_variable: bool = False
    bitpix: int = 16
    reference_image: int = 0
    beg: int = 1
    end: int = 0
    type: SequenceType = SequenceType.SEQ_REGULAR
    fz: bool = False
    imgparam: list = field(default_factory=list)
    regparam: list = field(default_factory=list)


# --------------------------------------------------------------------------
# Session helpers


def _state_dir() -> Path:
    path = os.environ.get(STATE_ENV)
    if not path:
        raise SirilConnectionError("Failed to connect to Siril (no stand-in session)")
    return Path(path)


def _state() -> dict:
    return json.loads((_state_dir() / "session.json").read_text())


def _save_state(state: dict) -> None:
    (_state_dir() / "session.json").write_text(json.dumps(state, indent=2))


def _state_or_empty() -> dict:
    try:
        return _state()
    except (SirilError, OSError, ValueError):
        return {}


# --------------------------------------------------------------------------
# Siril's venv: packages it lacks until a script installs them


#: pip name -> import name, where they differ
_IMPORT_NAMES = {"scikit-image": "skimage", "onnxruntime-gpu": "onnxruntime",
                 "onnxruntime-directml": "onnxruntime", "onnxruntime-openvino": "onnxruntime"}


def _missing_now() -> set[str]:
    return set(_state_or_empty().get("missing") or [])


def _hide(modules: set[str]) -> None:
    """Make ``modules`` absent as in a venv without them: ``importlib.util.find_spec`` gives
    None and ``import`` raises ModuleNotFoundError (a None entry in ``sys.modules`` does both)."""
    for name in modules:
        if sys.modules.get(name, None) is None:
            sys.modules[name] = None  # type: ignore[assignment]


def _pretend_install(pip_name: str) -> bool:
    """Install ``pip_name`` into the stand-in venv: False when the session says it fails."""
    module = _IMPORT_NAMES.get(pip_name, pip_name).replace("-", "_")
    state = _state_or_empty()
    if not state:
        return importlib.util.find_spec(module) is not None
    if module in (state.get("install_fails") or []):
        _record("install", package=pip_name, ok=False)
        return False
    if module in (state.get("missing") or []):
        state["missing"] = [m for m in state["missing"] if m != module]
        _save_state(state)
        if module in sys.modules and sys.modules[module] is None:
            del sys.modules[module]
        importlib.invalidate_caches()
        _record("install", package=pip_name, ok=True)
    return True


_hide(_missing_now())


def _record(kind: str, **data: Any) -> None:
    names = {"log": "log.jsonl", "progress": "progress.jsonl", "message": "messages.jsonl"}
    with open(_state_dir() / names.get(kind, "calls.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps({"kind": kind, **data}, default=str) + "\n")


def _read_fits(path: Path) -> tuple[np.ndarray, Any]:
    """Pixels as Siril holds them: uint16 for 16-bit files, float32 otherwise."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        hdu = hdul[0]
        header = hdu.header.copy()
        data = np.array(hdu.data)
    if header.get("BITPIX") == 16 or data.dtype == np.uint16:
        data = data.astype(np.uint16)
    else:
        data = data.astype(np.float32)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    return data, header


def _write_fits(path: Path, data: np.ndarray, header: Any) -> None:
    from astropy.io import fits

    keep = header.copy()
    for key in ("BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "BZERO", "BSCALE", "SIMPLE", "EXTEND"):
        keep.remove(key, ignore_missing=True, remove_all=True)
    hdu = fits.PrimaryHDU(data=np.array(data), header=keep)  # uint16: int16 + BZERO
    hdu.writeto(path, overwrite=True)


def _convert_to_depth(arr: np.ndarray, sixteen_bit: bool) -> np.ndarray:
    """What Siril stores when ``arr`` is sent for an image of the given depth."""
    if sixteen_bit:
        if arr.dtype == np.float32:
            return np.round(np.clip(arr, 0.0, 1.0) * 65535.0).astype(np.uint16)
        return arr
    if arr.dtype == np.uint16:
        return (arr.astype(np.float32) / 65535.0).astype(np.float32)
    return arr


def _check_pixel_array(image_data: Any) -> np.ndarray:
    if not isinstance(image_data, np.ndarray):
        raise ValueError("Image data must be a numpy array")
    if image_data.ndim not in (2, 3):
        raise ValueError("Image must be 2D or 3D array")
    if image_data.dtype not in (np.float32, np.uint16):
        raise ValueError("Image data must be float32 or uint16")
    if image_data.ndim == 3 and image_data.shape[0] > 3:
        raise ValueError("Image cannot have more than 3 channels")
    return image_data


def _keywords(header: Any) -> FKeywords:
    """FKeywords as sirilpy 1.0.25 builds them from what Siril sends.

    Siril's C code stores an absent keyword as a sentinel (INT_MAX for
    unsigned integers, -INT_MAX for signed ones, -999 for floating point; the
    Bayer offsets only when the file has a ``BAYERPAT``), and
    ``FKeywords.deserialize`` turns those into None (measured in Siril 1.4.4).
    With the session's ``raw_keyword_sentinels`` the sentinels come through as
    they are. ``date_obs`` is ``datetime.fromtimestamp()`` of whole UTC
    seconds: a naive datetime in the computer's local time.
    """
    raw = bool(_state_or_empty().get("raw_keyword_sentinels"))

    def absent(sentinel: Any) -> Any:
        return sentinel if raw else None

    def num(*keys: str, sentinel: Any = DEFAULT_DOUBLE_VALUE, cast: Any = float) -> Any:
        for k in keys:
            if k in header:
                try:
                    return cast(float(header[k]))
                except (TypeError, ValueError):
                    pass
        return absent(sentinel)

    def text(key: str) -> str:
        value = header.get(key, "")
        return str(value).strip() if value is not None else ""

    date_obs = None
    if "DATE-OBS" in header:
        try:
            utc = datetime.fromisoformat(str(header["DATE-OBS"]).strip()).replace(tzinfo=timezone.utc)
            date_obs = datetime.fromtimestamp(int(utc.timestamp()))
        except ValueError:
            date_obs = None
    has_cfa = bool(text("BAYERPAT"))
    binning = num("XBINNING", sentinel=DEFAULT_UINT_VALUE, cast=int)
    ybinning = num("YBINNING", sentinel=DEFAULT_UINT_VALUE, cast=int)
    return FKeywords(
        filter=text("FILTER"),
        object=text("OBJECT"),
        instrume=text("INSTRUME"),
        telescop=text("TELESCOP"),
        bayer_pattern=text("BAYERPAT"),
        row_order=text("ROWORDER"),
        date_obs=date_obs,
        # sirilpy: ``values[26] if values[26] and values[26] > 1 else 1``, after None-ing sentinels
        binning_x=binning if binning and binning > 1 else 1,
        binning_y=ybinning if ybinning and ybinning > 1 else 1,
        bayer_xoffset=num("XBAYROFF", sentinel=DEFAULT_INT_VALUE, cast=int) if has_cfa else 0,
        bayer_yoffset=num("YBAYROFF", sentinel=DEFAULT_INT_VALUE, cast=int) if has_cfa else 0,
        exposure=num("EXPTIME", "EXPOSURE"),
        ccd_temp=num("CCD-TEMP", "CCD_TEMP"),
        set_temp=num("SET-TEMP", "SET_TEMP"),
        livetime=num("LIVETIME"),
        stackcnt=num("STACKCNT", sentinel=DEFAULT_UINT_VALUE, cast=int),
        cvf=num("CVF", "EGAIN"),
        gain=num("GAIN", sentinel=DEFAULT_UINT_VALUE, cast=int),
        offset=num("OFFSET", sentinel=DEFAULT_UINT_VALUE, cast=int),
    )


def _ffit(path: Path, with_pixels: bool) -> FFit:
    data, header = _read_fits(path)
    return FFit(
        bitpix=16 if data.dtype == np.uint16 else -32,
        orig_bitpix=int(header.get("BITPIX", 16)),
        naxis=data.ndim,
        keywords=_keywords(header),
        header=header.tostring(sep="\n"),
        top_down=str(header.get("ROWORDER", "")).upper() == "TOP-DOWN",
        data=data if with_pixels else None,
    )


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def check_module_version(requires: str | None = None) -> bool:
    """True when this sirilpy satisfies ``requires`` (e.g. ``">=1.0.8"``)."""
    if requires is None:
        return True
    m = re.match(r"\s*(>=|<=|==|>|<)?\s*([\d.]+)\s*$", requires)
    if not m:
        raise ValueError(f"Invalid version specifier: {requires}")
    op, want = m.group(1) or "==", _version_tuple(m.group(2))
    have = _version_tuple(__version__)
    return {">=": have >= want, "<=": have <= want, "==": have == want,
            ">": have > want, "<": have < want}[op]


def ensure_installed(*packages: Any, version_constraints: Any = None, reinstall: bool = False) -> bool:
    """pip-installs what is missing (into the stand-in venv); SirilError when pip fails."""
    if packages and isinstance(packages[0], list):
        packages = tuple(packages[0])
    for package in packages:
        module = _IMPORT_NAMES.get(package, package).replace("-", "_")
        found = module not in _missing_now() and importlib.util.find_spec(module) is not None
        if _state_or_empty():
            _record("ensure_installed", package=package, found=found)
        if found:
            print(f"{package} is installed")
            continue
        print(f"Installing {package}. This may take a few seconds...")
        print(f"Collecting {package}\n  Downloading {package}-1.0-py3-none-any.whl\nSuccessfully installed {package}-1.0")
        if not _pretend_install(package):
            print(f"Error processing {package}: pip failed")
            raise SirilError(f"Failed to install or verify package {package}")
    return True


class ONNXHelper:
    """Chooses and installs the onnxruntime build, as sirilpy 1.0.25 does (and prints)."""

    def __init__(self) -> None:
        ensure_installed("platformdirs")
        ensure_installed("onnx")
        self.providers = None

    def is_onnxruntime_installed(self) -> tuple[bool, Optional[str]]:
        """``(installed, package_name)``: a tuple, so always truthy (as in sirilpy)."""
        try:
            import onnxruntime
        except ImportError:
            return False, None
        print(f"Detected ONNX Runtime with providers: {onnxruntime.get_available_providers()}")
        return True, "onnxruntime"

    def install_onnxruntime(self, force: bool = False) -> bool:
        installed, name = self.is_onnxruntime_installed()
        if installed and not force:
            print(f"ONNX Runtime is already installed: {name}")
            return True
        if _state_or_empty():
            _record("install_onnxruntime")
        if not _pretend_install("onnxruntime"):
            print("Failed to install onnxruntime: pip failed")
            return False
        return True

    def ensure_onnxruntime(self) -> bool:
        # As in sirilpy: the tuple is truthy, so this never installs anything.
        if not self.is_onnxruntime_installed():
            return self.install_onnxruntime()
        return True

    def test_onnxruntime(self, ort: Any = None) -> list:
        """sirilpy's provider self-test: ~20 lines printed, then the providers that ran."""
        if ort is None:
            import onnxruntime as ort
        print("=== ONNX Execution Provider Tester ===")
        print("Creating ONNX model...")
        print("Model saved to temporary file: /tmp/tmpstandin.onnx")
        print("\nRunning reference on CPU...")
        print("OK: CPU output computed.")
        available = list(ort.get_available_providers())
        if "AzureExecutionProvider" not in available:  # the pip CPU build lists it first
            available.insert(0, "AzureExecutionProvider")
        print("\nAvailable execution providers:")
        for p in available:
            print(f"  - {p}")
        print("\nTesting each provider without fallback...")
        for p in available:
            print(f"\nTesting {p}...")
            print(f"OK: {p} ran successfully")
        print("\n=== Summary ===")
        print(f"\u2192 Best available provider: {available[0]}")
        if _state_or_empty():
            _record("provider_self_test")
        self.providers = available
        return available

    def get_execution_providers_ordered(self, ai_gpu_acceleration: bool = True,
                                        force_check: bool = False) -> list:
        """As sirilpy 1.0.25: the cache never loads, so the self-test reruns on every call."""
        if ai_gpu_acceleration is False:
            return ["CPUExecutionProvider"]
        if self.providers is not None:
            return self.providers
        import onnxruntime

        return self.test_onnxruntime(onnxruntime)


class TorchHelper:
    """Installs a torch build matching the GPU (into the stand-in venv)."""

    def is_torch_installed(self) -> bool:
        return "torch" not in _missing_now() and importlib.util.find_spec("torch") is not None

    def ensure_torch(self, cuda_version: str | None = None) -> bool:
        if _state_or_empty():
            _record("ensure_torch", found=self.is_torch_installed())
        if self.is_torch_installed():
            print("Torch is already installed")
            return True
        print("Installing PyTorch with backend: cpu")
        return _pretend_install("torch")

    def get_torch_device(self, use_gpu: bool = True) -> Any:
        import torch

        if use_gpu and torch.cuda.is_available():
            print("Using CUDA (NVidia / AMD)")
            return torch.device("cuda")
        print("No GPU acceleration available, falling back to CPU use" if use_gpu else "Using CPU")
        return torch.device("cpu")


# --------------------------------------------------------------------------
# The interface


class SirilInterface:
    """What a script talks to. Call :meth:`connect` first."""

    def __init__(self) -> None:
        # As in sirilpy: outside Siril the constructor itself raises.
        if os.name == "nt":
            if not os.environ.get("MY_PIPE"):
                raise SirilConnectionError("Environment variable MY_PIPE not set")
        elif not os.environ.get("MY_SOCKET"):
            raise SirilConnectionError("Environment variable MY_SOCKET not set")
        self.connected = False
        self._locked = False
        self._failed_pixel_read = False
        self._writes = 0

    # -- connection -----------------------------------------------------

    def connect(self) -> bool:
        if not (os.environ.get("MY_SOCKET") or os.environ.get("MY_PIPE")):
            raise SirilConnectionError("Failed to connect to Siril: MY_SOCKET is not set "
                                       "(the script was not started by Siril)")
        _state_dir()
        self.connected = True
        return True

    def disconnect(self) -> None:
        self.connected = False

    def _need(self) -> dict:
        if not self.connected:
            raise SirilConnectionError("Not connected to Siril")
        if self._failed_pixel_read:
            # After a failed get_image_pixeldata the real Siril hangs for 60 s.
            _record("hang", after="failed get_image_pixeldata")
            raise SirilConnectionError("Timeout waiting for Siril (60 s) after a failed pixel read")
        return _state()

    def is_cli(self) -> bool:
        # sirilpy: SIRIL_PYTHON_CLI is set for every `pyscript`, typed in the GUI too
        return os.environ.get("SIRIL_PYTHON_CLI") is not None

    # -- feedback -------------------------------------------------------

    def log(self, my_string: str, color: LogColor = LogColor.DEFAULT) -> bool:
        self._need()
        _record("log", message=str(my_string), color=int(color))
        return True

    def update_progress(self, message: str, progress: float) -> bool:
        self._need()
        if not (progress == -1.0 or 0.0 <= progress <= 1.0):
            raise ValueError("Progress must be between 0.0 and 1.0, or -1.0 to pulse")
        _record("progress", message=str(message), fraction=float(progress))
        return True

    def reset_progress(self) -> bool:
        self._need()
        _record("progress", message="", fraction=0.0, reset=True)
        return True

    def _box(self, level: str, my_string: str) -> bool:
        self._need()
        _record("message", level=level, message=str(my_string), cli=self.is_cli())
        return True

    def info_messagebox(self, my_string: str, modal: bool = False) -> bool:
        return self._box("info", my_string)

    def warning_messagebox(self, my_string: str, modal: bool = False) -> bool:
        return self._box("warning", my_string)

    def error_messagebox(self, my_string: str, modal: bool = False) -> bool:
        return self._box("error", my_string)

    # -- dirs and config ------------------------------------------------

    def get_siril_wd(self) -> str:
        return self._need()["wd"]

    def get_siril_configdir(self) -> str:
        state = self._need()
        return state.get("configdir") or str(_state_dir() / "config")

    def get_siril_userdatadir(self) -> str:
        state = self._need()
        return state.get("userdatadir") or str(_state_dir() / "userdata")

    def get_siril_config(self, group: str, key: str) -> Any:
        state = self._need()
        if (group, key) == ("core", "extension"):
            return state.get("extension", ".fit")
        raise CommandError(f"Unknown config key {group}.{key}")

    def cmd(self, *args: str) -> None:
        state = self._need()
        _record("cmd", args=list(args))
        if self._locked:
            raise CommandError("Command cannot run while the processing thread is claimed")
        name = args[0] if args else ""
        if name == "requires":
            if _version_tuple("1.4.4") < _version_tuple(args[1]):
                raise CommandError(f"Command 'requires' failed: Siril {args[1]} required")
            return
        if name == "load_seq":
            if not state.get("gui"):
                raise CommandError("Command 'load_seq' failed: not scriptable")
            path = Path(state["wd"]) / f"{args[1]}.seq"
            if not path.is_file():
                raise CommandError(f"Command 'load_seq' failed: no sequence {args[1]}")
            frames = [{"filenum": int(w[1]), "incl": w[2] != "0"}
                      for w in (line.split() for line in path.read_text().splitlines())
                      if len(w) >= 3 and w[0] == "I"]
            state["sequence"] = {"seqname": args[1], "type": 0, "reference_image": 0,
                                 "frames": frames, "registration": None}
            _save_state(state)
            return
        raise CommandError(f"Command '{name}' is not simulated by the stand-in")

    # -- image ----------------------------------------------------------

    def is_image_loaded(self) -> bool:
        return bool(self._need().get("image"))

    def is_sequence_loaded(self) -> bool:
        return bool(self._need().get("sequence"))

    def _image_path(self, state: dict, error: type = NoImageError) -> Path:
        if not state.get("image"):
            raise error("No image loaded")
        return Path(state["image"])

    def get_image_shape(self) -> tuple[int, int, int]:
        path = self._image_path(self._need(), SirilError)
        data, _ = _read_fits(path)
        return (1,) + data.shape if data.ndim == 2 else data.shape

    def get_image_pixeldata(self, shape: Any = None, preview: bool = False) -> np.ndarray:
        state = self._need()
        if not state.get("image"):
            self._failed_pixel_read = True
            raise SirilError("Error in get_image_pixeldata(): no image loaded")
        data, _ = _read_fits(Path(state["image"]))
        return data

    def get_image(self, with_pixels: bool = True, preview: bool = False) -> FFit:
        return _ffit(self._image_path(self._need()), with_pixels)

    def get_image_keywords(self) -> FKeywords:
        return self.get_image(with_pixels=False).keywords

    def get_image_fits_header(self, return_as: str = "str") -> Any:
        path = self._image_path(self._need())
        _, header = _read_fits(path)
        if return_as == "dict":
            return {k: header[k] for k in header.keys() if k not in ("COMMENT", "HISTORY", "")}
        return header.tostring(sep="\n")

    def get_image_filename(self) -> str:
        state = self._need()
        if not state.get("image"):
            raise SirilConnectionError("Server error: no image loaded")
        return state["image"]

    @contextmanager
    def image_lock(self):
        state = self._need()
        if state.get("busy"):
            raise ProcessingThreadBusyError("Siril processing thread is busy")
        if state.get("dialog_open"):
            raise ImageDialogOpenError("An image processing dialog is open")
        self._locked = True
        _record("lock", claimed=True)
        try:
            yield
        finally:
            self._locked = False
            _record("lock", claimed=False)

    def undo_save_state(self, my_string: str) -> Optional[bool]:
        state = self._need()
        if len(my_string.encode()) > 70:
            raise ValueError("Undo message too long (70 bytes max)")
        if not state.get("image"):
            raise NoImageError("No image loaded")
        _record("undo", message=my_string)
        return None if self.is_cli() else True

    def set_image_pixeldata(self, image_data: np.ndarray) -> None:
        state = self._need()
        arr = _check_pixel_array(image_data)
        if not state.get("image"):
            raise NoImageError("Error in set_image_pixeldata(): no image loaded")
        if not self._locked:
            raise SirilError("Error in set_image_pixeldata(): the processing thread is not claimed "
                             "(use 'with siril.image_lock():')")
        path = Path(state["image"])
        old, header = _read_fits(path)
        new = _convert_to_depth(arr, old.dtype == np.uint16)
        _write_fits(path, new, header)
        _record("set_image_pixeldata", dtype=str(arr.dtype), shape=list(arr.shape))

    # -- sequence -------------------------------------------------------

    def _seq_state(self) -> tuple[dict, dict]:
        state = self._need()
        seq = state.get("sequence")
        if not seq:
            raise NoSequenceError("No sequence loaded")
        return state, seq

    def get_seq(self) -> Sequence:
        """Like sirilpy: one request for the header, then one per frame (imgparam), per frame
        and layer (regparam, stats) and per layer (distortion): 2 + N(1 + 2L) + L socket calls,
        recorded as ``get_seq`` with ``socket_calls``."""
        state, seq = self._seq_state()
        frames = seq["frames"]
        reg = seq.get("registration")
        first = self._frame_path(state, seq, 0)
        data, header = _read_fits(first) if first.is_file() else (np.zeros((1, 1)), {})
        layers = 1 if data.ndim == 2 else data.shape[0]
        _record("get_seq", socket_calls=2 + len(frames) * (1 + 2 * layers) + layers)
        # H in Siril's own coordinates (rows counted from the bottom), all zeros for a frame
        # whose registration failed; None where the frame has no registration data
        regparam = [[None] * len(frames) for _ in range(layers)]
        if reg:
            regparam[0] = [None if h is None else RegData(H=Homography(*[float(v) for v in h]))
                           for h in reg]
        imgparam = [ImgData(filenum=f["filenum"], incl=bool(f["incl"])) for f in frames]
        if imgparam:
            imgparam[0].rx, imgparam[0].ry = data.shape[-1], data.shape[-2]
        return Sequence(
            seqname=seq["seqname"], number=len(frames),
            selnum=sum(1 for f in frames if f["incl"]),
            nb_layers=1 if data.ndim == 2 else data.shape[0],
            rx=data.shape[-1], ry=data.shape[-2],
            bitpix=16 if data.dtype == np.uint16 else -32,
            reference_image=seq.get("reference_image", 0),
            beg=frames[0]["filenum"] if frames else 0,
            end=frames[-1]["filenum"] if frames else 0,
            fixed=int(seq.get("fixed", 5)), fz=bool(seq.get("fz", False)),
            type=SequenceType(seq.get("type", 0)),
            imgparam=imgparam, regparam=regparam,
        )

    def _frame_path(self, state: dict, seq: dict, index: int, prefix: str = "") -> Path:
        """``<prefix><seqname><filenum padded to the sequence's digits><ext>``; a compressed
        sequence's frames are read from plain files here, but written with ``.fz`` as Siril does."""
        ext = state.get("extension", ".fit")
        filenum = seq["frames"][index]["filenum"]
        fz = ".fz" if prefix and seq.get("fz") else ""
        return Path(state["wd"]) / f"{prefix}{seq['seqname']}{filenum:0{int(seq.get('fixed', 5))}d}{ext}{fz}"

    def _check_index(self, seq: dict, index: int, what: str) -> None:
        if not 0 <= index < len(seq["frames"]):
            _record("crash", call=what, index=index)
            raise SirilConnectionError(f"Siril crashed: assertion failed in {what} (index {index})")

    def get_seq_frame_pixeldata(self, frame: int, shape: Any = None, preview: bool = False) -> np.ndarray:
        state, seq = self._seq_state()
        self._check_index(seq, frame, "get_seq_frame_pixeldata")
        if seq.get("type", 0) not in (0, 1):
            raise SirilError("The stand-in only reads frames of regular and SER sequences")
        data, _ = _read_fits(self._frame_path(state, seq, frame))  # SER: its frames kept as FITS
        return data

    def get_seq_frame(self, frame: int, with_pixels: bool = True, preview: bool = False) -> FFit:
        state, seq = self._seq_state()
        self._check_index(seq, frame, "get_seq_frame")
        ffit = _ffit(self._frame_path(state, seq, frame), with_pixels)
        if seq.get("type", 0) == 1:  # a SER frame has no FITS header: no keywords
            ffit.keywords, ffit.header = _keywords({}), None
        return ffit

    def get_seq_frame_filename(self, frame: int) -> str:
        state, seq = self._seq_state()
        if not 0 <= frame < len(seq["frames"]):
            raise SirilError("Frame index out of range")
        return str(self._frame_path(state, seq, frame).resolve())

    def get_seq_frame_header(self, frame: int, return_as: str = "str") -> Any:
        state, seq = self._seq_state()
        self._check_index(seq, frame, "get_seq_frame_header")
        if seq.get("type", 0) == 1:
            # sirilpy 1.0.25: Siril answers "no header" and the cleanup code reads an unset
            # local variable, so a frame without a FITS header raises this
            raise UnboundLocalError("cannot access local variable 'shm' where it is not associated "
                                    "with a value")
        _, header = _read_fits(self._frame_path(state, seq, frame))
        if return_as == "dict":
            return {k: header[k] for k in header.keys() if k not in ("COMMENT", "HISTORY", "")}
        return header.tostring(sep="\n")

    def set_seq_frame_pixeldata(self, index: int, image_data: np.ndarray, prefix: str) -> bool:
        arr = _check_pixel_array(image_data)
        state = self._need()
        if not state.get("sequence"):
            raise NoSequenceError("Error in set_seq_frame_pixeldata(): no sequence loaded")
        seq = state["sequence"]
        if seq.get("type", 0) != 0:
            raise SirilError("Error in set_seq_frame_pixeldata(): invalid sequence type")
        if not 0 <= index < len(seq["frames"]):
            raise SirilError("Error in set_seq_frame_pixeldata(): index out of range")
        source = self._frame_path(state, seq, index)
        old, header = _read_fits(source)
        dest = self._frame_path(state, seq, index, prefix or "")
        _write_fits(dest, _convert_to_depth(arr, old.dtype == np.uint16), header)
        _record("set_seq_frame_pixeldata", index=index, prefix=prefix, file=dest.name)
        self._writes += 1
        trip = os.environ.get("SIRILPY_STANDIN_SIGTERM_AFTER_WRITES")
        if trip and self._writes == int(trip):
            os.kill(os.getpid(), signal.SIGTERM)
        return True

    def set_seq_frame_incl(self, index: Any, incl: bool) -> None:
        state, seq = self._seq_state()
        for i in ([index] if isinstance(index, int) else list(index)):
            seq["frames"][i]["incl"] = bool(incl)
        _save_state(state)

    def create_new_seq(self, seq_root: str) -> bool:
        state = self._need()
        if state.get("sequence"):  # sirilpy refuses the loaded sequence's own name (get_seq())
            if self.get_seq().seqname.rstrip("_") == seq_root.rstrip("_"):
                _record("log", message="A sequence with the same name is already loaded in Siril, "
                        "aborting", color=1)
                return False
        ext = state.get("extension", ".fit")
        wd = Path(state["wd"])
        pattern = re.compile(re.escape(seq_root) + r"(\d{5})" + re.escape(ext) + "$")  # 5 digits only
        nums = sorted(int(m.group(1)) for p in wd.iterdir() if (m := pattern.match(p.name)))
        if not nums:
            _record("log", message=f"No files matching {seq_root}*{ext} were found", color=1)
            return False
        lines = [
            "#Siril sequence file. Contains list of images, selection, registration data and statistics",
            "#S 'sequence_name' start_index nb_images nb_selected fixed_len reference_image version variable_size fz_flag",
            f"S '{seq_root}' {nums[0]} {len(nums)} {len(nums)} 5 -1 4 0 0",
            "L -1",
        ] + [f"I {n} 1" for n in nums]
        (wd / f"{seq_root}.seq").write_text("\n".join(lines) + "\n")
        _record("create_new_seq", root=seq_root, frames=len(nums))
        return True
