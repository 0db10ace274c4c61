"""The command line's hosts for the use cases: images and frames as FITS/XISF files.

- :class:`ImageFile`: one image read from a file, its result written to
  another (``siril-denoise denoise``);
- :class:`FileFrames`: a list of files as a set of frames; denoised frames go
  to ``out_dir/<prefix><name>`` (``apply``, ``train``, ``auto``).

Both speak to the terminal through :class:`~siril_denoise.console.Terminal`.
Every check on the files is made when the host is built or asked for the
frame set (``sequence_info``), before any training; an output folder is
created only when the first frame is written. Headers travel from each
input to its output, with a HISTORY line ``siril-denoise <version>: <note>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .console import Console, Terminal
from .errors import Cancelled, DenoiseError, InputError
from .io import (LoadedImage, check_output_name, expand_inputs, make_output_dir, output_for_image, plan_outputs,
                 read_image, write_image)
from .usecases import check_same_size


def history_line(note: str) -> str:
    """The HISTORY line of a written file: ``siril-denoise <version>: <note>``."""
    return f"siril-denoise {__version__}: {note}"


def gather_inputs(*groups: Sequence[str] | None) -> list[Path]:
    """The files named by the groups of paths, folders and globs (see :func:`~siril_denoise.io.expand_inputs`)."""
    patterns = [p for g in groups if g for p in g]
    if not patterns:
        raise InputError("No input files given: name them (IN...) or use --input \"lights/*.fits\".")
    return expand_inputs(patterns)


def refuse_existing(path: Path | None, overwrite: bool) -> None:
    """InputError when ``path`` (a file the command will write) exists and ``overwrite`` is off."""
    if path is not None and path.exists() and not overwrite:
        raise InputError(f"{path} already exists; remove it, choose another name, or pass --overwrite.")


class ImageFile(Terminal):
    """``src`` in, the result to ``output`` (a file name, or a folder: ``<stem>_dn<ext>`` inside it).

    The image is read and the output checked here: a format we cannot write,
    the input itself, an existing file (without ``overwrite``), a missing
    folder. An ``output`` ending in ``/`` is a folder, created now.
    """

    def __init__(self, con: Console, src: str, output: str, *, overwrite: bool = False, **kw: Any) -> None:
        super().__init__(con, "denoise", **kw)
        self.src = Path(src).expanduser()
        self.loaded = read_image(self.src)
        self.out = output_for_image(self.src, output)
        self.overwrite = overwrite
        check_output_name(self.out)
        if self.out.exists() and self.out.resolve() == self.src.resolve():
            raise InputError(f"{self.out} is the input file; choose another output name so the original "
                             "stays untouched.")
        refuse_existing(self.out, overwrite)
        if output.endswith(("/", os.sep)):
            make_output_dir(self.out.parent)
        if not self.out.parent.is_dir():
            raise InputError(f"{self.out.parent}: the output folder does not exist.")

    def read_image(self) -> tuple[Any, Any]:
        return self.loaded.data, self.loaded.meta

    def write_image(self, data: Any, note: str) -> None:
        write_image(self.out, data, like=self.loaded, history=history_line(note), overwrite=self.overwrite)


@dataclass
class FileSet:
    """The files as a frame set (see :class:`siril_denoise.usecases.FrameSet`): frame k is ``paths[k]``."""

    name: str
    paths: list[Path]
    selected: list[int]
    reference: int = 0
    homographies: list[Any] | None = None
    layout: tuple[int, Any] | None = None

    def frame_record(self, index: int) -> dict:
        """Frame ``index`` in the record kept beside a model trained on it: its file, absolute."""
        return {"file": str(self.paths[index].resolve())}


class FileFrames(Terminal):
    """``paths`` as a frame set; frame k is written to ``out_dir/<prefix><name of paths[k]>``.

    ``same_size``: refuse a frame whose shape differs from the first one read,
    naming both files (a training session). Without ``out_dir`` the set is
    read-only. After a run, :attr:`pairs` holds the (input, output) pairs
    written; when the run stopped half-way, :attr:`stopped` is True and
    :attr:`failed_at` is the file it failed on (None: between two frames).
    """

    def __init__(self, con: Console, desc: str, paths: list[Path], *, out_dir: Path | None = None,
                 prefix: str = "dn_", overwrite: bool = False, same_size: bool = False, **kw: Any) -> None:
        super().__init__(con, desc, **kw)
        folders = {p.parent.name for p in paths}
        self.info = FileSet(folders.pop() if len(folders) == 1 else "frames", list(paths), list(range(len(paths))))
        self.out_dir, self.prefix, self.overwrite, self.same_size = out_dir, prefix, overwrite, same_size
        self.plan: dict[Path, Path] = {}
        self.pairs: list[tuple[Path, Path]] = []
        self.stopped = False
        self.failed_at: Path | None = None
        self._current: Path | None = None
        self._loaded: tuple[int, LoadedImage] | None = None
        self._first: tuple[tuple[int, ...], str] | None = None

    def sequence_info(self, *, need_regular: bool = True) -> FileSet:
        """The frame set; with ``need_regular``, the outputs are planned and checked (nothing written)."""
        if need_regular:
            if self.out_dir is None:
                raise InputError("No output folder given.")
            self.plan = dict(plan_outputs(self.info.paths, self.out_dir, self.prefix, self.overwrite))
        return self.info

    def _load(self, index: int) -> LoadedImage:
        """Frame ``index``, read once however often it is asked for in a row."""
        if self._loaded is None or self._loaded[0] != index:
            self._loaded = None  # free the previous frame before reading the next
            loaded = read_image(self.info.paths[index])
            shape, name = self._first or (loaded.data.shape, loaded.path.name)
            if self.same_size:
                check_same_size(loaded.data.shape, shape, loaded.path.name, name)
            self._first = (shape, name)
            self._loaded = (index, loaded)
        return self._loaded[1]

    def frame_meta(self, info: Any, index: int) -> tuple[int, Any]:
        loaded = self._load(index)
        return loaded.data.ndim, loaded.meta

    def read_frame(self, info: Any, index: int) -> tuple[Any, Any]:
        self._current = self.info.paths[index]
        loaded = self._load(index)
        return loaded.data, loaded.meta

    def write_frame(self, info: Any, index: int, data: Any, prefix: str, history: str | None = None) -> Path:
        src = self.info.paths[index]
        dst = self.plan[src]
        make_output_dir(dst.parent)
        write_image(dst, data, like=self._load(index), history=history_line(history or "denoised"),
                    overwrite=self.overwrite)
        self.pairs.append((src, dst))
        self._current = None
        return dst

    def discard_frames(self, paths: list[Path]) -> None:
        """Keep them (each written file is complete); remember the frame the run stopped at."""
        self.stopped, self.failed_at = True, self._current

    def stopped_error(self, exc: DenoiseError) -> DenoiseError:
        """``exc`` as is, or, when it stopped a run half-way, with the file it happened on and how
        many frames were written before it."""
        if not self.stopped:
            return exc
        done = len(self.pairs)
        where = f" into {self.out_dir}" if done else ""
        tail = (f"{done} of {len(self.info.selected)} frame(s) were written{where} and are complete; "
                "no half-written file was left.")
        if isinstance(exc, Cancelled):
            return Cancelled(f"Cancelled: {tail}")
        text = str(exc)
        if self.failed_at is not None and self.failed_at.name not in text:
            text = f"{self.failed_at.name}: {text}"
        return type(exc)(f"{text}\n{tail}")
