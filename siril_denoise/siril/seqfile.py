"""A Siril sequence given by name: its ``.seq`` file read here, its frames read from disk.

Headless ``siril-cli`` cannot load a regular multi-file sequence, so the
Sequence and Train scripts take ``--seq NAME`` and do without Siril's loaded
sequence: :func:`find_seq` finds ``NAME.seq`` (in Siril's working directory,
or a path), :func:`parse_seq` reads it, and :class:`SeqFileHost` wraps the
connected host so that the jobs in :mod:`siril_denoise.siril.jobs` run
unchanged, reading each frame with :func:`siril_denoise.io.read_image` and
writing the results with :func:`siril_denoise.io.write_image`. No ``sirilpy``
import here.

The ``.seq`` format, as Siril 1.0 - 1.5 writes it (one record per line,
``#`` lines are comments)::

    S 'name' beg number selnum fixed reference_image version variable fz [drizzle]
    TS | TF | TA          type: SER, FITS cube (FITSEQ), film; absent = one FITS file per frame
    L nb_layers           (-1 until Siril opened the sequence once)
    I filenum incl        one per frame, in order; "I filenum incl rx,ry" when variable
    Rx ...                registration, one line per frame for layer x (0-9, or * for CFA)
    Mx-y ..., D..., O..., E ...   statistics, distortion, overlap, external reference

``R`` lines: version >= 4 (Siril 1.1+) ``fwhm wfwhm roundness quality
background stars H h00 h01 h02 h10 h11 h12 h20 h21 h22``, the homography
mapping the frame onto the reference frame in Siril's coordinates (rows
counted from the bottom: :func:`siril_to_array_homography` converts it; all
zeros for a frame that failed to register); versions 1-3 held a shift
(``shiftx shifty fwhm ...``) and version 0 ``shiftx shifty rx ry angle fwhm
quality``. Only version >= 4 homographies are used; older shifts are parsed
but not turned into matrices (their sign convention differs between Siril
versions), so such sequences are registered by the engine. ``M``, ``D``,
``O`` and ``E`` lines are skipped. The old unquoted ``S name ...`` form is
read too. ``reference_image`` is -1 when none was chosen.

Frame files are ``<name><filenum><ext>`` beside the ``.seq``, ``filenum``
zero-padded to ``fixed`` digits (5 for sequences Siril makes), ``ext`` one of
.fit, .fits, .fts (whichever exists).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import DenoiseError, InputError

SEQ_TYPES = {"": "regular", "S": "SER", "F": "FITSEQ", "A": "film"}
FRAME_EXTENSIONS = (".fit", ".fits", ".fts", ".FIT", ".FITS", ".FTS")


class SeqFileError(InputError):
    """A ``.seq`` file that is missing, unreadable or not usable here."""


@dataclass
class SeqImage:
    """One ``I`` line: the frame's file number, whether it is selected, its size when variable."""

    filenum: int
    incl: bool
    rx: int | None = None
    ry: int | None = None


@dataclass
class SeqReg:
    """One ``R`` line. ``H``: 9 floats (h00..h22, frame -> reference) or None (old versions)."""

    fwhm: float | None = None
    weighted_fwhm: float | None = None
    roundness: float | None = None
    quality: float | None = None
    background: float | None = None
    stars: int | None = None
    H: tuple[float, ...] | None = None
    shift: tuple[float, float] | None = None


@dataclass
class SeqFile:
    """A parsed ``.seq`` file."""

    path: Path | None
    name: str
    beg: int
    number: int
    selnum: int
    fixed: int
    reference: int
    version: int
    variable: bool = False
    fz: bool = False
    drizzle: bool = False
    type: str = "regular"
    layers: int = -1
    images: list[SeqImage] = field(default_factory=list)
    #: layer ('0'..'9' or '*') -> one :class:`SeqReg` per frame
    registration: dict[str, list[SeqReg]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    #: True when there is no .seq file yet and ``path`` is where Siril will write it
    from_files: bool = False

    @property
    def selected(self) -> list[int]:
        """0-based indices of the selected frames."""
        return [i for i, img in enumerate(self.images) if img.incl]

    def homographies(self) -> list[tuple[float, ...] | None] | None:
        """Per-frame 3x3 (row-major, 9 floats) frame -> reference, in Siril's own coordinates.

        From the first layer that registered any frame; a frame whose
        registration failed (no ``R`` line, an all-zero or degenerate matrix,
        as Siril writes for it) is None. None when no layer holds a usable
        homography (no registration, or a version < 4 file). Turn the
        matrices into array coordinates with :func:`siril_to_array_homography`.
        """
        for key in sorted(self.registration, key=lambda k: (k == "*", k)):
            regs = self.registration[key] + [SeqReg()] * (self.number - len(self.registration[key]))
            homs = [r.H if r.H is not None and registered(r.H) else None for r in regs]
            if any(h is not None for h in homs):
                return homs
        return None


def registered(h: Any) -> bool:
    """True when ``h`` (9 floats or 3x3) is an invertible homography; Siril stores all zeros
    for a frame it could not register."""
    import numpy as np

    m = np.asarray(h, dtype=np.float64).reshape(3, 3)
    return bool(np.all(np.isfinite(m)) and abs(m[2, 2]) > 1e-12 and abs(np.linalg.det(m)) > 1e-12)


def siril_to_array_homography(h: Any, height: int, ref_height: int | None = None) -> Any:
    """Siril's frame -> reference homography in the coordinates of the pixel arrays.

    Siril measures stars and warps with rows counted from the bottom of the
    image, ``y_siril = height - 1 - row``, while the arrays it hands out (and
    the engine's homographies) count rows from the top: ``H' = F_ref H F``
    with ``F = [[1, 0, 0], [0, -1, height - 1], [0, 0, 1]]`` (its own inverse).
    ``height``: the frame's rows, ``ref_height``: the reference frame's
    (default the same), full-resolution CFA pixels for a mosaic.

    Measured with Siril 1.4.4 (``register -2pass``): a 1024 px frame and its
    exact ``numpy.rot90`` copy map onto each other with ``height - 1`` (with
    ``height`` the translation is off by 1 px); on 11 Seestar M94 frames,
    stars mapped through ``H'`` land 0.11 px (median) from the reference's
    stars, and 1-65 px away through ``H`` as Siril stores it.
    """
    import numpy as np

    m = np.asarray(h, dtype=np.float64).reshape(3, 3)
    f = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, height - 1.0], [0.0, 0.0, 1.0]])
    f_ref = f if ref_height is None else np.array(
        [[1.0, 0.0, 0.0], [0.0, -1.0, ref_height - 1.0], [0.0, 0.0, 1.0]])
    out = f_ref @ m @ f
    return out / out[2, 2]


_S_QUOTED = re.compile(r"^S\s+'([^']*)'\s*(.*)$")


def _ints(words: list[str], what: str, line: str) -> list[int]:
    try:
        return [int(w) for w in words]
    except ValueError as exc:
        raise SeqFileError(f"{what}: cannot read the line '{line.strip()}'.") from exc


def parse_seq(text: str, path: Path | None = None) -> SeqFile:
    """Parse the text of a ``.seq`` file; :class:`SeqFileError` when it is not one."""
    where = str(path) if path is not None else "sequence file"
    seq: SeqFile | None = None
    for raw in text.splitlines():
        line = raw.rstrip("\r\n")
        if not line.strip() or line.startswith("#"):
            continue
        tag = line[0]
        if tag == "S":
            if seq is not None:
                raise SeqFileError(f"{where}: two S lines; the file is damaged.")
            m = _S_QUOTED.match(line)
            if m:
                name, rest = m.group(1), m.group(2).split()
            else:
                words = line[1:].split()
                if not words:
                    raise SeqFileError(f"{where}: cannot read the line '{line.strip()}'.")
                name, rest = words[0], words[1:]
            nums = _ints(rest, where, line)
            if len(nums) < 5:
                raise SeqFileError(f"{where}: the S line is too short ('{line.strip()}').")
            nums += [-1] * (9 - len(nums))
            beg, number, selnum, fixed, reference, version, variable, fz, drizzle = nums[:9]
            if number <= 0:
                raise SeqFileError(f"{where}: the sequence is empty.")
            seq = SeqFile(path=path, name=name, beg=beg, number=number, selnum=selnum,
                          fixed=fixed, reference=reference, version=max(version, 0),
                          variable=variable == 1, fz=fz == 1, drizzle=drizzle == 1)
            continue
        if seq is None:
            if tag in "LIRT":
                raise SeqFileError(f"{where}: no S line before the frame list; the file is damaged.")
            continue
        if tag == "T":
            seq.type = SEQ_TYPES.get(line[1:2], "unknown")
        elif tag == "L" and line[1:2] == " ":
            seq.layers = _ints(line[2:].split()[:1], where, line)[0] if line[2:].split() else -1
        elif tag == "I":
            if len(seq.images) >= seq.number:
                raise SeqFileError(f"{where}: more I lines than the {seq.number} frames declared.")
            words = line[1:].split()
            filenum, incl = _ints(words[:2], where, line) if len(words) >= 2 else (None, None)
            if filenum is None:
                raise SeqFileError(f"{where}: cannot read the line '{line.strip()}'.")
            image = SeqImage(filenum=filenum, incl=incl != 0)
            if len(words) >= 3 and "," in words[2]:
                rx, _, ry = words[2].partition(",")
                image.rx, image.ry = _ints([rx, ry], where, line)
            seq.images.append(image)
        elif tag == "R" and len(line) > 1:
            layer = line[1]
            regs = seq.registration.setdefault(layer, [])
            if len(regs) >= seq.number:
                raise SeqFileError(f"{where}: more R{layer} lines than the {seq.number} frames.")
            regs.append(_parse_reg(line[2:].split(), seq.version, where, line))
        else:
            seq.skipped[tag] = seq.skipped.get(tag, 0) + 1
    if seq is None:
        raise SeqFileError(f"{where}: no S line; this is not a Siril sequence file.")
    if len(seq.images) != seq.number:
        raise SeqFileError(f"{where}: declares {seq.number} frames but lists {len(seq.images)}; "
                           "the file is damaged (let Siril rebuild it: Search sequences).")
    return seq


def _parse_reg(words: list[str], version: int, where: str, line: str) -> SeqReg:
    def floats(ws: list[str]) -> list[float]:
        try:
            return [float(w) for w in ws]
        except ValueError as exc:
            raise SeqFileError(f"{where}: cannot read the line '{line.strip()}'.") from exc

    if "H" in words:  # version >= 4
        at = words.index("H")
        head, h = floats(words[:at]), floats(words[at + 1:at + 10])
        if len(h) != 9:
            raise SeqFileError(f"{where}: incomplete homography in '{line.strip()}'.")
        head += [None] * (6 - len(head))  # type: ignore[list-item]
        return SeqReg(fwhm=head[0], weighted_fwhm=head[1], roundness=head[2], quality=head[3],
                      background=head[4], stars=None if head[5] is None else int(head[5]),
                      H=tuple(h))
    vals = floats(words)
    if len(vals) < 2:
        return SeqReg()
    reg = SeqReg(shift=(vals[0], vals[1]))
    if version == 3 and len(vals) >= 6:
        reg.fwhm, reg.weighted_fwhm, reg.roundness, reg.quality = vals[2:6]
    elif version in (1, 2) and len(vals) >= 5:
        reg.fwhm, reg.roundness, reg.quality = vals[2:5]
    elif len(vals) >= 7:
        reg.fwhm, reg.quality = vals[5], vals[6]
    return reg


def read_seq(path: Path) -> SeqFile:
    """Read and parse a ``.seq`` file."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SeqFileError(f"Cannot read the sequence file {path}: {exc.strerror or exc}.") from exc
    return parse_seq(text, Path(path))


def find_seq(name: str, working_dir: Path) -> Path:
    """The ``.seq`` file for ``name``: a sequence name in ``working_dir`` (with or without
    ``.seq``), or a path to a ``.seq`` file (relative paths against ``working_dir`` first)."""
    text = str(name).strip()
    if not text:
        raise SeqFileError("--seq needs a sequence name, e.g. --seq light_ (or light_.seq).")
    given = Path(os.path.expanduser(text))
    names = [given] if given.suffix.lower() == ".seq" else [given.with_name(given.name + ".seq"), given]
    candidates: list[Path] = []
    for n in names:
        if n.is_absolute():
            candidates.append(n)
        else:
            candidates += [Path(working_dir) / n, Path.cwd() / n]
    seen: list[Path] = []
    for c in candidates:
        if c not in seen:
            seen.append(c)
        if c.is_file() and c.suffix.lower() == ".seq":
            return c
    looked = ", ".join(str(c) for c in seen if c.suffix.lower() == ".seq")
    raise SeqFileError(
        f"Sequence '{text}' not found: looked for {looked} (Siril's working directory is "
        f"{working_dir}). Give the name of a sequence in the working directory (set it with "
        "`cd` in the script first), or the path of its .seq file.")


def scan_frames(name: str, working_dir: Path) -> SeqFile | None:
    """A sequence without its ``.seq`` file: the files ``<name><digits><ext>`` in the folder.

    ``convert light -out=DIR`` makes the frame files (links) but writes
    ``light_.seq`` only when a later command opens the sequence (measured
    with Siril 1.4.4). All frames found are selected, in file-number order,
    with no registration. None when there are none.
    """
    given = Path(os.path.expanduser(str(name).strip()))
    if given.suffix.lower() == ".seq":
        given = given.with_suffix("")
    folder = given.parent if given.is_absolute() else Path(working_dir) / given.parent
    stem = given.name
    if not stem or not folder.is_dir():
        return None
    pattern = re.compile(re.escape(stem) + r"(\d+)(" + "|".join(re.escape(e) for e in FRAME_EXTENSIONS) + ")$")
    found = sorted((int(m.group(1)), len(m.group(1))) for f in os.listdir(folder)
                   if (m := pattern.match(f)) and (folder / f).is_file())
    if not found:
        return None
    widths = {w for _, w in found}
    seq = SeqFile(path=folder / f"{stem}.seq", name=stem, beg=found[0][0], number=len(found),
                  selnum=len(found), fixed=widths.pop() if len(widths) == 1 else 0, reference=-1,
                  version=4, from_files=True)
    seq.images = [SeqImage(filenum=n, incl=True) for n, _ in found]
    return seq


def _frame_height(image: SeqImage, default: int) -> int:
    return int(image.ry) if image.ry else int(default)


def _digits(seq: SeqFile, filenum: int) -> str:
    return f"{filenum:0{seq.fixed}d}" if seq.fixed > 0 else str(filenum)


def frame_file(seq: SeqFile, folder: Path, index: int, ext: str | None = None) -> Path | None:
    """The existing file of frame ``index`` (0-based), or None. ``ext`` first when given."""
    filenum = seq.images[index].filenum
    digits = [_digits(seq, filenum)]
    if f"{filenum:05d}" not in digits:
        digits.append(f"{filenum:05d}")
    exts = ([ext] if ext else []) + [e for e in FRAME_EXTENSIONS if e != ext]
    for d in digits:
        for e in exts:
            p = Path(folder) / f"{seq.name}{d}{e}"
            if p.is_file():
                return p
    return None


# --------------------------------------------------------------------------


@dataclass
class SequenceInfo:
    """The loaded sequence, as far as the scripts need it."""

    name: str
    number: int
    selected: list[int]
    layers: int
    width: int
    height: int
    reference: int
    filenums: list[int]
    #: one 3x3 per frame (frame -> reference, array coordinates: rows from the top), None for a
    #: frame Siril could not register; None for the whole list when there is no registration
    homographies: list[Any] | None = field(default=None, repr=False)
    #: (ndim, ImageMeta) of the sequence once worked out (usecases.frames_layout)
    layout: tuple[int, Any] | None = field(default=None, repr=False)
    #: who made ``homographies`` (recorded beside a trained model)
    registered_by: str = field(default="siril", repr=False)

    def frame_record(self, index: int) -> dict:
        """What identifies frame ``index`` in the record of a model's training frames: its file number."""
        return {"filenum": self.filenums[index] if index < len(self.filenums) else None}


@dataclass
class FileSequenceInfo(SequenceInfo):
    """A :class:`SequenceInfo` read from a ``.seq`` file, plus the frame files."""

    files: dict[int, Path] = field(default_factory=dict, repr=False)
    seq: SeqFile | None = field(default=None, repr=False)


class SeqFileHost:
    """The connected host, except that the sequence comes from a ``.seq`` file and its frames.

    Everything not about the sequence (log, progress, folders, creating and
    loading the new sequence) goes to the wrapped host. Frames are read with
    :func:`siril_denoise.io.read_image` and written with
    :func:`siril_denoise.io.write_image` as ``<prefix><name><NNNNN><ext>`` in
    Siril's working directory (``ext`` is Siril's FITS extension, so that
    ``create_new_seq`` finds them), keeping the header and bit depth; the
    original files are never opened for writing.
    """

    def __init__(self, host: Any, seq_name: str) -> None:
        self._host = host
        self.seq_name = seq_name
        self._info: FileSequenceInfo | None = None
        self._cache: tuple[int, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)

    def has_sequence(self) -> bool:
        return True

    def sequence_info(self, *, need_regular: bool = True) -> FileSequenceInfo:
        """The sequence from its ``.seq`` file; frames read here must be FITS files.

        ``need_regular`` is accepted for the host interface; both jobs need a
        regular sequence here, since the frames are read from their files.
        """
        if self._info is not None:
            return self._info
        try:
            path = find_seq(self.seq_name, self._host.working_dir())
        except SeqFileError:
            seq = scan_frames(self.seq_name, self._host.working_dir())
            if seq is None:
                raise
            path = seq.path
            self._host.log(
                f"No {seq.name}.seq yet (Siril writes it the first time a command opens the "
                f"sequence, not at `convert`): using the {seq.number} frame files {seq.name}* "
                f"found in {path.parent}, all selected, without registration data.")
        else:
            seq = read_seq(path)
        folder = path.parent
        seq.name = os.path.basename(seq.name) or path.stem
        if seq.type != "regular":
            raise SeqFileError(
                f"Sequence '{seq.name}' is a {seq.type} file, not one FITS file per frame, which "
                "--seq needs. Convert it first (the `convert` command, or the Conversion tab), "
                "then run the script again on the converted sequence.")
        if seq.fz:
            raise SeqFileError(
                f"Sequence '{seq.name}' holds compressed (.fz) FITS files, which --seq cannot "
                "read. Convert it to uncompressed FITS first (turn FITS compression off in "
                "Preferences, then `convert`), or load it in Siril's GUI and run the script there.")
        probe = seq.selected[0] if seq.selected else 0
        if frame_file(seq, folder, probe) is None and path.stem != seq.name:
            named_as_file = replace(seq, name=path.stem)  # a renamed .seq: frames follow the file
            if frame_file(named_as_file, folder, probe) is not None:
                seq.name = path.stem
        files: dict[int, Path] = {}
        missing = []
        ext = None
        for i in seq.selected:
            found = frame_file(seq, folder, i, ext)
            if found is None:
                missing.append(f"{seq.name}{_digits(seq, seq.images[i].filenum)}.fit")
            else:
                files[i] = found
                ext = ext or found.suffix
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise SeqFileError(
                f"{len(missing)} selected frame file(s) of sequence '{seq.name}' are missing in "
                f"{folder}: {shown} (looked for .fit, .fits and .fts). Were the frames moved or "
                "deleted? Let Siril rebuild the sequence (Search sequences) or unselect them.")
        width = height = 0
        layers = seq.layers
        if seq.selected:
            ndim, meta, data_shape = self._peek(seq.selected[0], files[seq.selected[0]])
            height, width = data_shape[-2], data_shape[-1]
            layers = 1 if ndim == 2 else data_shape[0]
        homs = None
        h = seq.homographies()
        if h is not None:
            ref_height = height
            homs = [None if m is None else siril_to_array_homography(
                m, _frame_height(seq.images[i], height), ref_height) for i, m in enumerate(h)]
        self._info = FileSequenceInfo(
            name=seq.name, number=seq.number, selected=seq.selected, layers=layers,
            width=width, height=height, reference=seq.reference if seq.reference >= 0 else 0,
            filenums=[img.filenum for img in seq.images], homographies=homs, files=files, seq=seq)
        if not seq.from_files:
            self._host.log(f"Sequence '{seq.name}' read from {path}: {seq.number} frames, "
                           f"{len(seq.selected)} selected"
                           + (", with registration data." if homs is not None else "."))
        return self._info

    def _load(self, index: int, path: Path) -> Any:
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1]
        from ..io import read_image

        loaded = read_image(path)
        self._cache = (index, loaded)
        return loaded

    def _peek(self, index: int, path: Path) -> tuple[int, Any, tuple[int, ...]]:
        loaded = self._load(index, path)
        return loaded.data.ndim, loaded.meta, loaded.data.shape

    def _file(self, info: FileSequenceInfo, index: int) -> Path:
        path = info.files.get(index)
        if path is None:
            raise InputError(f"Frame {index + 1} of '{info.name}' is not a selected frame.")
        return path

    def read_frame(self, info: FileSequenceInfo, index: int) -> tuple[Any, Any]:
        """Frame ``index`` (0-based) read from its file: pixels (Siril layout) and ImageMeta."""
        loaded = self._load(index, self._file(info, index))
        return loaded.data, loaded.meta

    def frame_meta(self, info: FileSequenceInfo, index: int) -> tuple[int, Any]:
        ndim, meta, _ = self._peek(index, self._file(info, index))
        return ndim, meta

    def output_path(self, info: FileSequenceInfo, index: int, prefix: str) -> Path:
        return (Path(self._host.working_dir())
                / f"{prefix}{info.name}{info.filenums[index]:05d}{self._host.fits_extension()}")

    def write_frame(self, info: FileSequenceInfo, index: int, data: Any, prefix: str,
                    history: str | None = None) -> Path:
        """Write the denoised frame as a new file, with the original's header and bit depth."""
        import numpy as np

        from .. import __version__
        from ..io import write_image

        if not prefix:
            raise InputError("A prefix is needed for the new sequence (e.g. dn_): without one "
                             "the original frames would be overwritten.")
        source = self._load(index, self._file(info, index))
        out = self.output_path(info, index, prefix)
        if out.resolve() == Path(source.path).resolve():
            raise InputError(f"{out.name} is an original frame; choose another prefix.")
        data = np.asarray(data)
        original = np.dtype(source.original_dtype)
        if original.kind in "ui" and original.itemsize <= 2 and data.dtype != np.uint16:
            # 16-bit frames stay 16-bit (8-bit ones are written as 16-bit)
            data = np.clip(np.rint(data), 0, 65535).astype(np.uint16)
        note = f"siril-denoise {__version__}: " + (history or "denoised")
        try:
            write_image(out, data, like=source, history=note, overwrite=True)
        except DenoiseError:
            raise
        except Exception as exc:  # noqa: BLE001 - astropy refusals come in many types
            raise DenoiseError(f"Could not write {out.name}: {exc}") from exc
        return out
