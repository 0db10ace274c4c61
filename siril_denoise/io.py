"""Reading and writing FITS and XISF images, with their metadata kept.

Pixel data comes back in Siril's layout: mono ``(H, W)``, colour planar
``(C, H, W)``. Rows are in the order astropy reads them from a FITS file (row 0
is the first row stored, as in Siril's memory); nothing is flipped. XISF rows
are returned as stored too.

dtype: ``uint16`` for unsigned 16-bit data (FITS ``BITPIX = 16`` with
``BZERO = 32768``, or XISF ``UInt16``), ``float32`` for everything else. Other
integer types (signed int16, int32, uint8 ...) become float32 with their values
kept (so negative calibrated pixels stay negative); float data is kept as
stored, whether in [0, 1] or scaled in ADU.

The FITS header travels with the data: :func:`write_image` writes every
keyword of the source header back (except the structural ones astropy manages)
and adds HISTORY lines. Writes are atomic (temporary file in the same folder,
then a rename), never replace the file the image was read from, and never
replace any existing file unless asked.

Bayer pattern convention
------------------------
``ImageMeta.bayer_pattern`` is the 2x2 colour pattern that applies to the
array *as returned here* (row 0 first), starting at pixel ``[0, 0]``. It is
derived from the header the way Siril's debayer does with its default
preferences (``use_bayer_header``, orientation "from header, else top-down";
Siril ``src/algos/demosaicing.c``):

1. ``BAYERPAT`` is read as a top-down pattern, i.e. it applies to row 0 as
   stored, unless ``ROWORDER = 'BOTTOM-UP'``: then its two rows are swapped
   (for an even image height; with an odd height the last row has the parity
   of row 0, so nothing changes).
2. An odd ``XBAYROFF`` swaps the columns of the pattern, an odd ``YBAYROFF``
   swaps its rows.

The Seestar S50 raws carry ``BAYERPAT = 'GRBG'``, no ``ROWORDER`` and no
offsets, so GRBG applies to the array as astropy reads it: ``[0, 0]`` is green,
``[0, 1]`` red, ``[1, 0]`` blue. Patterns longer than 4 letters (X-Trans) are
returned as stored, without adjustment.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DenoiseError, InputError
from .stacks import is_stack

log = logging.getLogger("siril_denoise.io")

FITS_SUFFIXES = (".fit", ".fits", ".fts")
XISF_SUFFIXES = (".xisf",)
_COMPRESSED = (".gz", ".bz2")

# Keywords that describe the data array itself; astropy writes them from the data.
_STRUCTURAL = {
    "SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT",
    "BZERO", "BSCALE", "BLANK", "CHECKSUM", "DATASUM", "END", "GROUPS",
}
_STRUCTURAL_PREFIXES = ("NAXIS",)


# --------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------

@dataclass
class ImageMeta:
    """What identifies an image's noise: camera, settings, exposure, stacking.

    Fields are ``None`` when the header does not say. Units: ``exposure`` and
    ``livetime`` in seconds, ``temperature``/``set_temperature`` in °C (as
    written by the capture software), ``egain`` in e-/ADU, ``read_noise`` in
    e-, ``pedestal`` in ADU (the ``PEDESTAL`` keyword as stored, e.g. -500 for
    MaxIm DL calibrated frames). ``gain`` and ``offset`` are the camera's
    settings (e.g. ZWO gain 80), not a conversion factor. ``bayer_pattern``
    applies to the array as read (see the module docstring).
    """

    instrument: str | None = None
    gain: float | None = None
    offset: float | None = None
    egain: float | None = None
    read_noise: float | None = None
    exposure: float | None = None
    temperature: float | None = None
    set_temperature: float | None = None
    filter: str | None = None
    xbinning: int | None = None
    ybinning: int | None = None
    bayer_pattern: str | None = None
    stackcnt: int | None = None
    livetime: float | None = None
    date_obs: str | None = None
    object: str | None = None
    pedestal: float | None = None
    is_stack: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageMeta:
        """Build from :meth:`to_dict` output; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class LoadedImage:
    """An image read from disk.

    ``data``: mono ``(H, W)`` or planar ``(C, H, W)``, uint16 or float32 (see
    the module docstring). ``header``: an astropy ``Header`` — for FITS the
    image HDU's header, complete; for XISF the file's FITS keywords.
    ``xisf_properties``: the XISF image properties (``{id: property dict}`` as
    the ``xisf`` package gives them), kept to be written back; empty for FITS.
    ``original_dtype``: the dtype the file stores (after BZERO/BSCALE, as
    astropy gives it), e.g. ``uint16``, ``>i2``, ``>f4``.
    """

    data: np.ndarray
    header: Any  # astropy.io.fits.Header
    meta: ImageMeta
    path: Path
    format: str  # 'fits' or 'xisf'
    original_dtype: np.dtype
    xisf_properties: dict[str, dict] = field(default_factory=dict)


_EGAIN_COMMENT = re.compile(r"e-?\s*/\s*adu|electrons?\s*(/|per)\s*adu", re.IGNORECASE)

# XISF properties used when the matching FITS keyword is absent.
_XISF_FALLBACK = {
    "instrument": "Instrument:Camera:Name",
    "egain": "Instrument:Camera:Gain",
    "exposure": "Instrument:ExposureTime",
    "temperature": "Instrument:Sensor:Temperature",
    "set_temperature": "Instrument:Sensor:TargetTemperature",
    "filter": "Instrument:Filter:Name",
    "xbinning": "Instrument:Camera:XBinning",
    "ybinning": "Instrument:Camera:YBinning",
    "object": "Observation:Object:Name",
    "date_obs": "Observation:Time:Start",
}


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def _int(value: Any) -> int | None:
    x = _num(value)
    return None if x is None else int(round(x))


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    s = str(value).strip()
    return s or None


def _swap_columns(p: str) -> str:
    return p[1] + p[0] + p[3] + p[2]


def _swap_rows(p: str) -> str:
    return p[2:] + p[:2]


def bayer_pattern_for_array(
    pattern: str | None,
    *,
    row_order: str | None = None,
    xoffset: int | None = None,
    yoffset: int | None = None,
    height: int | None = None,
) -> str | None:
    """The 2x2 Bayer pattern that applies to the array from row 0, column 0.

    ``pattern`` is the header's ``BAYERPAT``; ``row_order`` its ``ROWORDER``
    ('TOP-DOWN' or 'BOTTOM-UP'; absent means top-down, Siril's default);
    ``xoffset``/``yoffset`` its ``XBAYROFF``/``YBAYROFF``; ``height`` the
    image height in pixels (unknown: assumed even). Returns e.g. ``'GRBG'``,
    or None for no pattern. Non-2x2 patterns (X-Trans) come back unchanged.
    """
    p = _text(pattern)
    if p is None:
        return None
    p = p.upper()
    if p == "NONE":
        return None
    if len(p) != 4 or set(p) - set("RGB"):
        return p
    if (row_order or "").strip().upper() == "BOTTOM-UP" and (height is None or height % 2 == 0):
        p = _swap_rows(p)
    if (xoffset or 0) % 2:
        p = _swap_columns(p)
    if (yoffset or 0) % 2:
        p = _swap_rows(p)
    return p


def image_meta_from_header(
    header: Mapping[str, Any] | Any,
    *,
    height: int | None = None,
    xisf_properties: Mapping[str, Mapping[str, Any]] | None = None,
) -> ImageMeta:
    """Map FITS keywords (an astropy ``Header`` or a plain dict) to :class:`ImageMeta`.

    Keyword names are matched case-insensitively. ``EGAIN`` (or Siril's
    ``CVF``) gives e-/ADU. A ``GAIN`` whose comment says it is in e-/ADU (old
    CCD convention, e.g. "GAIN = 1.9 / e-/ADU") is taken as ``egain`` when no
    ``EGAIN``/``CVF`` is present, and then not as a gain setting. ``height``
    (default: ``NAXIS2``) is used for the Bayer pattern of BOTTOM-UP images.
    ``xisf_properties`` fill fields the FITS keywords leave empty.
    """
    values: dict[str, Any] = {}
    comments: dict[str, str] = {}
    if hasattr(header, "cards"):
        for card in header.cards:
            key = str(card.keyword).upper()
            if key and key not in values and key not in ("HISTORY", "COMMENT", ""):
                values[key] = card.value
                comments[key] = str(card.comment or "")
    else:
        for key, value in dict(header).items():
            values.setdefault(str(key).upper(), value)

    def get(*keys: str) -> Any:
        for k in keys:
            v = values.get(k)
            if v is not None and not (isinstance(v, str) and not v.strip()):
                return v
        return None

    egain = _num(get("EGAIN", "CVF"))
    gain = _num(get("GAIN"))
    if egain is None and gain is not None and _EGAIN_COMMENT.search(comments.get("GAIN", "")):
        egain, gain = gain, None

    stackcnt = _int(get("STACKCNT", "NCOMBINE"))
    exposure = _num(get("EXPTIME", "EXPOSURE"))
    livetime = _num(get("LIVETIME"))
    if height is None:
        height = _int(get("NAXIS2"))

    meta = ImageMeta(
        instrument=_text(get("INSTRUME")),
        gain=gain,
        offset=_num(get("OFFSET")),
        egain=egain,
        read_noise=_num(get("RDNOISE")),
        exposure=exposure,
        temperature=_num(get("CCD-TEMP", "CCD_TEMP")),
        set_temperature=_num(get("SET-TEMP", "SET_TEMP")),
        filter=_text(get("FILTER")),
        xbinning=_int(get("XBINNING")),
        ybinning=_int(get("YBINNING")),
        bayer_pattern=bayer_pattern_for_array(
            get("BAYERPAT"),
            row_order=_text(get("ROWORDER")),
            xoffset=_int(get("XBAYROFF")),
            yoffset=_int(get("YBAYROFF")),
            height=height,
        ),
        stackcnt=stackcnt,
        livetime=livetime,
        date_obs=_text(get("DATE-OBS")),
        object=_text(get("OBJECT")),
        pedestal=_num(get("PEDESTAL")),
    )
    if xisf_properties:
        for name, prop_id in _XISF_FALLBACK.items():
            prop = xisf_properties.get(prop_id)
            if getattr(meta, name) is None and prop is not None:
                v = prop.get("value")
                conv = {"xbinning": _int, "ybinning": _int}.get(name)
                if conv is None:
                    conv = _text if name in ("instrument", "filter", "object", "date_obs") else _num
                setattr(meta, name, conv(v))
    meta.is_stack = is_stack(meta)
    return meta


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

def _format_of(path: Path) -> str:
    ext = split_name(path)[1].lower()
    if ext in FITS_SUFFIXES:
        return "fits"
    if ext in XISF_SUFFIXES:
        return "xisf"
    raise InputError(
        f"{path.name}: unsupported file type. Use FITS (.fit, .fits, .fts) or XISF (.xisf)."
    )


def _to_siril_layout(data: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) stays; (1, H, W) -> (H, W); (C, H, W) stays; other shapes refused."""
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim not in (2, 3) or min(data.shape) < 1:
        raise InputError(
            f"{path.name}: the image has shape {data.shape}; expected a 2-D mono image "
            "or a 3-D colour image with the channels first."
        )
    return data


def _to_working_dtype(data: np.ndarray) -> np.ndarray:
    if data.dtype.kind == "u" and data.dtype.itemsize == 2:
        return np.ascontiguousarray(data, dtype=np.uint16)
    return np.ascontiguousarray(data, dtype=np.float32)


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Read a FITS or XISF image with its header and metadata.

    Multi-extension FITS: the first HDU that holds an image is used. Returns a
    :class:`LoadedImage` (layouts, dtypes and units in the module docstring).
    Raises :class:`InputError` for a missing file, an unsupported extension, a
    file with no image, and a truncated or corrupt file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file. Name one image in it, or use a "
                         "command that takes many frames (apply, train) with the folder or a pattern "
                         "such as \"DIR/*.fits\".")
    fmt = _format_of(path)
    if not path.exists():
        raise InputError(f"{path}: file not found.")
    if fmt == "fits":
        return _read_fits(path)
    return _read_xisf(path)


def _read_fits(path: Path) -> LoadedImage:
    from astropy.io import fits

    corrupt = (
        f"{path.name}: cannot read this FITS file; it looks truncated or corrupt "
        "(copy it again from the camera or the original folder)."
    )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False) as hdul:
                hdu = next(
                    (h for h in hdul if h.is_image and int(h.header.get("NAXIS", 0)) > 0), None
                )
                if hdu is None:
                    raise InputError(f"{path.name}: the FITS file holds no image.")
                raw = hdu.data
                if raw is None:
                    raise InputError(f"{path.name}: the FITS file holds no image.")
                header = hdu.header.copy()
                original_dtype = raw.dtype
                data = np.array(raw)  # a copy that outlives the file
    except DenoiseError:
        raise
    except (OSError, ValueError, TypeError, IndexError, KeyError, EOFError) as exc:
        raise InputError(f"{corrupt} ({exc})") from exc
    if any("truncated" in str(w.message).lower() for w in caught):
        raise InputError(corrupt)
    data = _to_working_dtype(_to_siril_layout(data, path))
    height = data.shape[-2]
    return LoadedImage(
        data=data,
        header=header,
        meta=image_meta_from_header(header, height=height),
        path=path,
        format="fits",
        original_dtype=np.dtype(original_dtype),
    )


def _parse_fits_value(text: Any) -> Any:
    """An XISF FITSKeyword value string ('80', '1.9', 'T', 'M 94') as a Python value."""
    if not isinstance(text, str):
        return text
    s = text.strip()
    if s in ("T", "F"):
        return s == "T"
    if len(s) >= 2 and s[0] == s[-1] == "'":
        return s[1:-1].replace("''", "'").rstrip()
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def _read_xisf(path: Path) -> LoadedImage:
    from astropy.io import fits
    from xisf import XISF

    try:
        x = XISF(str(path))
        images = x.get_images_metadata()
        if not images:
            raise InputError(f"{path.name}: the XISF file holds no image.")
        info = images[0]
        raw = x.read_image(0, data_format="channels_first")
    except DenoiseError:
        raise
    except Exception as exc:  # the xisf package raises many types on bad input
        raise InputError(
            f"{path.name}: cannot read this XISF file; it looks truncated, corrupt or uses "
            f"features the reader does not support ({type(exc).__name__}: {exc})."
        ) from exc

    header = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # long or odd keywords become HIERARCH, fine
        for name, entries in (info.get("FITSKeywords") or {}).items():
            for entry in entries:
                value = _parse_fits_value(entry.get("value"))
                comment = entry.get("comment") or ""
                if name == "HISTORY":
                    header.add_history(str(value if value is not None else ""))
                elif name == "COMMENT":
                    header.add_comment(str(value if value is not None else ""))
                elif name.upper() in _STRUCTURAL or name.upper().startswith(_STRUCTURAL_PREFIXES):
                    continue
                else:
                    try:
                        header.append((name, value, comment), end=True)
                    except (ValueError, TypeError):
                        log.debug("skipping XISF FITS keyword %r=%r", name, value)
    properties = dict(info.get("XISFProperties") or {})
    data = _to_working_dtype(_to_siril_layout(np.asarray(raw), path))
    return LoadedImage(
        data=data,
        header=header,
        meta=image_meta_from_header(header, height=data.shape[-2], xisf_properties=properties),
        path=path,
        format="xisf",
        original_dtype=np.dtype(info.get("dtype", raw.dtype)),
        xisf_properties=properties,
    )


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

def _check_data(data: np.ndarray) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim not in (2, 3):
        raise InputError(
            f"Cannot write an array of shape {data.shape}: expected (H, W) or (C, H, W)."
        )
    if data.dtype == np.uint16:
        return np.ascontiguousarray(data)
    if data.dtype.kind == "f":
        return np.ascontiguousarray(data, dtype=np.float32)
    raise InputError(
        f"Cannot write {data.dtype} pixels: give uint16 (ADU) or float32 data."
    )


def _is_structural(key: str) -> bool:
    key = key.upper()
    return key in _STRUCTURAL or key.startswith(_STRUCTURAL_PREFIXES)


def _output_header(like: LoadedImage | None, header: Any, history: list[str]) -> Any:
    """Source header minus structural keywords, updated by ``header``, plus HISTORY."""
    from astropy.io import fits

    out = fits.Header()
    if like is not None and like.header is not None:
        for card in like.header.cards:
            if not _is_structural(card.keyword):
                out.append(card, end=True)
    if hasattr(header, "cards"):
        for card in header.cards:
            if _is_structural(card.keyword):
                continue
            if card.keyword in ("HISTORY", "COMMENT", ""):
                out.append(card, end=True)
            else:
                out[card.keyword] = (card.value, card.comment)
    elif header is not None:
        for key, value in dict(header).items():
            if not _is_structural(key):
                out[key] = value  # a value, or a (value, comment) tuple
    for line in history:
        out.add_history(line)
    return out


def _xisf_value_string(value: Any) -> str:
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return "'" + str(value).replace("'", "''") + "'"


def _xisf_keywords(header: Any) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for card in header.cards:
        key = card.keyword
        if not key or _is_structural(key):
            continue
        if key in ("HISTORY", "COMMENT"):
            entry = {"value": str(card.value), "comment": ""}
        else:
            entry = {"value": _xisf_value_string(card.value), "comment": str(card.comment or "")}
        out.setdefault(key, []).append(entry)
    return out


def write_image(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    like: LoadedImage | None = None,
    header: Any = None,
    history: list[str] | str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``data`` as FITS or XISF (from the extension), keeping metadata.

    ``data``: ``(H, W)`` or ``(C, H, W)``; uint16 is written as FITS
    ``BITPIX = 16`` with ``BZERO = 32768`` (XISF ``UInt16``), float data as
    float32 (``BITPIX = -32``). ``like``: the image this one derives from;
    every keyword of its header (and for XISF output, its XISF properties) is
    kept, minus the structural keywords astropy writes from the data.
    ``header``: extra keywords (astropy ``Header`` or dict) that override the
    source's. ``history``: HISTORY line(s) to add, e.g.
    ``"siril-denoise 0.1.0: zsn2n, strength 1.0"``.

    Never replaces the file ``like`` was read from, nor any existing file
    unless ``overwrite=True``; raises :class:`InputError` instead. The file is
    written to a temporary name in the same folder and renamed, so a failure
    or Ctrl-C leaves no half-written file. Returns the path written.
    """
    path = Path(path).expanduser()
    fmt = _format_of(path)
    if path.name.lower().endswith(_COMPRESSED):
        raise InputError(f"{path.name}: write an uncompressed .fits or .xisf file instead.")
    if like is not None and like.path is not None:
        src = Path(like.path).expanduser()
        same = src.resolve() == path.resolve() or (
            path.exists() and src.exists() and os.path.samefile(src, path)
        )
        if same:
            raise InputError(
                f"{path}: this is the file the image was read from; choose another "
                "output name so the original stays untouched."
            )
    if path.exists() and not overwrite:
        raise InputError(f"{path}: the file already exists; remove it or allow overwriting.")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name to write to.")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"{folder}: the output folder does not exist.")

    data = _check_data(data)
    lines = [history] if isinstance(history, str) else list(history or [])
    out_header = _output_header(like, header, lines)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fmt == "fits":
            _write_fits(tmp, data, out_header)
        else:
            props = like.xisf_properties if like is not None else {}
            _write_xisf(tmp, data, out_header, props)
        os.chmod(tmp, _new_file_mode())  # mkstemp makes it private (0600)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DenoiseError(
            f"{path}: could not write the file ({exc.strerror or exc}); check free disk "
            "space and write permission. Nothing was written."
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("wrote %s", path)
    return path


def _new_file_mode() -> int:
    """The mode an ordinary new file gets here: 0o666 minus the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_fits(tmp: Path, data: np.ndarray, header: Any) -> None:
    from astropy.io import fits

    hdu = fits.PrimaryHDU(data=data, header=header)
    with open(tmp, "wb") as f:
        hdu.writeto(f, output_verify="silentfix")


def _write_xisf(tmp: Path, data: np.ndarray, header: Any, properties: Mapping) -> None:
    from xisf import XISF

    from . import __version__

    channels = 1 if data.ndim == 2 else data.shape[0]
    if channels not in (1, 3):
        raise InputError(
            f"XISF output supports 1 or 3 channels; this image has {channels}. Write FITS instead."
        )
    # The xisf package takes channel-last (H, W, 1) or (H, W, 3).
    hwc = data[:, :, None] if data.ndim == 2 else np.ascontiguousarray(np.moveaxis(data, 0, -1))
    metadata = {
        "FITSKeywords": _xisf_keywords(header),
        "XISFProperties": {k: dict(v) for k, v in (properties or {}).items()},
    }
    XISF.write(str(tmp), hwc, creator_app=f"siril-denoise {__version__}", image_metadata=metadata)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------

def check_output_name(path: str | os.PathLike) -> None:
    """Raise :class:`InputError` now if ``path`` names no format we can write.

    Called before any work, so a wrong extension is refused before minutes of
    training rather than after.
    """
    _format_of(Path(path))


def _is_image_name(p: Path) -> bool:
    try:
        _format_of(p)
    except InputError:
        return False
    return True


def expand_inputs(patterns: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand file paths, folders and glob patterns into a sorted list of files.

    Quoted globs (``"lights/*.fits"``, ``"**/*.fit"``) are expanded here; a
    folder stands for the FITS/XISF files directly inside it. Glob and folder
    matches keep only FITS/XISF names; a path named explicitly is kept as is.
    The result is sorted and has no duplicates. Raises :class:`InputError` for
    an empty list and for any pattern or path that matches nothing.
    """
    patterns = [str(p) for p in patterns]
    if not patterns:
        raise InputError("No input files given.")
    found: dict[Path, Path] = {}
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if glob.has_magic(expanded):
            matches = [
                Path(m) for m in glob.glob(expanded, recursive=True)
                if Path(m).is_file() and _is_image_name(Path(m))
            ]
            if not matches:
                raise InputError(f"No FITS or XISF file matches {pattern!r}.")
        else:
            p = Path(expanded)
            if p.is_dir():
                matches = [q for q in p.iterdir() if q.is_file() and _is_image_name(q)]
                if not matches:
                    raise InputError(f"{p}: the folder holds no FITS or XISF file.")
            elif p.is_file():
                matches = [p]
            else:
                raise InputError(f"{pattern}: file not found.")
        for m in matches:
            found.setdefault(m.resolve(), m)
    return sorted(found.values(), key=lambda q: str(q))


# --------------------------------------------------------------------------
# Output names
# --------------------------------------------------------------------------

def split_name(path: str | os.PathLike) -> tuple[str, str]:
    """(stem, extension) of an image file name, a compression suffix dropped.

    ``m94.fits.gz`` -> ``("m94", ".fits")``: outputs are written uncompressed.
    """
    name = Path(path).name
    for z in _COMPRESSED:
        if name.lower().endswith(z):
            name = name[: -len(z)]
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if dot else (name, "")


def output_for_image(src: str | os.PathLike, out: str) -> Path:
    """OUT as given, or ``OUT/<stem>_dn<ext>`` when OUT is a folder (existing, or ending in ``/``)."""
    path = Path(out).expanduser()
    if path.is_dir() or out.endswith(("/", os.sep)):
        stem, ext = split_name(src)
        return path / f"{stem}_dn{ext}"
    return path


def plan_outputs(inputs: Iterable[Path], out_dir: Path, prefix: str, overwrite: bool) -> list[tuple[Path, Path]]:
    """Pair each input with ``out_dir/<prefix><name>``, refusing anything that could clobber a file.

    Raises :class:`InputError` when ``out_dir`` is a file, when it is an
    input's folder and the prefix is empty, when two inputs would get the same
    output name, or when an output exists (unless ``overwrite``). Writes
    nothing: the caller creates ``out_dir`` (:func:`make_output_dir`) once the
    model is known to be usable.
    """
    inputs = list(inputs)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: is a file; --output must be a folder.")
    out_res = out_dir.resolve()
    if not prefix and any(p.resolve().parent == out_res for p in inputs):
        raise InputError(f"{out_dir} holds the input frames and the prefix is empty: the outputs would "
                         "replace them. Choose another --output folder or a --prefix (e.g. dn_).")
    plan: list[tuple[Path, Path]] = []
    seen: dict[Path, Path] = {}
    existing = []
    for src in inputs:
        stem, ext = split_name(src)
        dst = out_dir / f"{prefix}{stem}{ext}"
        if dst in seen:
            raise InputError(f"{seen[dst]} and {src} would both be written to {dst}; "
                             "process them into separate folders.")
        seen[dst] = src
        if dst.exists() and not overwrite:
            existing.append(dst)
        plan.append((src, dst))
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise InputError(f"{existing[0]}{more} already exist(s); remove them, choose another --output "
                         "folder or --prefix, or pass --overwrite.")
    return plan


def make_output_dir(out_dir: Path) -> None:
    """Create ``out_dir`` and its parents; :class:`InputError` naming the reason when that fails."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Cannot create the output folder {out_dir}: {exc.strerror or exc}.") from exc
