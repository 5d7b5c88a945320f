"""Writing files so that a kill never leaves half of one: a temporary file beside the target,
fsync, then an atomic rename; and folders made for output. Every failure is a `DataError` naming
the path and the cause.

Checkpoints, run directories, reports and the toy model's output all write through here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import write_error


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _file_mode() -> int:
    """The mode a plain `open` would give a new file (0o666 less the umask), not mkstemp's 0o600."""
    return 0o666 & ~_umask()


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write(file)` on a temporary file beside `path`, then fsync and rename it to `path`.

    Any OSError (read-only file system, disk full, no permission) becomes a DataError naming
    `path` and the cause, and leaves no temporary file and no partial `path` behind.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and an atomic rename."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode())


def new_dir_beside(path: Path) -> Path:
    """A new empty hidden folder next to `path`, with the mode `mkdir` would give it (not mkdtemp's
    0o700), to fill and then rename onto `path` so that a folder is never seen half-written."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{Path(path).name}.", dir=Path(path).parent))
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as exc:
        raise write_error(Path(path).parent, exc) from exc
    return tmp


def make_dir(path: Path) -> Path:
    """Create a folder (and its parents) for output, or raise a DataError naming it and the cause."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from exc
    return Path(path)
