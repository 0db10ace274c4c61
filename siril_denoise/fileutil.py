"""Writing files so that they are either complete or absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    The temporary file is flushed to disk and renamed over ``path``; on any
    failure (full disk, Ctrl-C) it is removed, so a reader never sees a
    half-written file. Text is written as UTF-8. The file gets the usual
    permissions of a new file (0666 less the umask), not the 0600 of a
    temporary file, so a model saved by one user can be read by another.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
