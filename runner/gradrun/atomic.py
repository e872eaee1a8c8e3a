"""Files written whole or not at all: a temporary file in the target's folder, then ``os.replace``.

A reader never sees half a report, and a crash leaves the previous file in place.
Inside ``together()``, files are replaced only when the whole block succeeds: a
report and its run record are both new or both old, even when the disk fills up
while the second is written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import threading
from pathlib import Path

_staging = threading.local()  # .files: (temporary, target) pairs waiting for together() to end
TEMPORARY_STEM = 64  # characters of the target's name kept in its temporary file's name
_NOT_FILES = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
              (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))


def in_the_way(path) -> str | None:
    """Why a written file cannot replace ``path``: a folder, or a device, pipe or socket is there
    (``/dev/null``: replacing it would put a plain file in its place). None when nothing is there,
    or a file or a symlink is (a symlink is replaced itself: nothing is written through it)."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return _too_long(Path(path))
    except OSError as error:  # a name too long, a folder that cannot be searched
        return error.strerror or str(error)
    if stat.S_ISDIR(mode):
        return "a folder of that name is in the way"
    kind = not_a_file(mode)
    return None if kind is None else f"it is {kind}, not a file; give the path of a file to write"


def not_a_file(mode: int) -> str | None:
    """"a character device", "a named pipe", ... for an ``st_mode`` of such a thing; else None."""
    return next((what for test, what in _NOT_FILES if test(mode)), None)


def atomic_write(path, content) -> None:
    """Write ``content`` (text, or an iterable of bytes) to ``path`` whole or not at all.

    A temporary file in the same folder, then os.replace.
    """
    with _atomic(path) as f:
        if isinstance(content, str):
            f.write(content.encode("utf-8"))
        else:
            for chunk in content:
                f.write(chunk)


def _too_long(path: Path) -> str | None:
    """"File name too long" when a part of ``path`` still to be made is longer than its file system allows."""
    existing = path.parent
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    too_long = any(len(os.fsencode(part)) > limit for part in path.relative_to(existing).parts)
    return os.strerror(errno.ENAMETOOLONG) if too_long else None


@contextlib.contextmanager
def _atomic(path):
    """A binary file at a temporary name that replaces ``path`` when the block ends without error."""
    path = Path(path)
    problem = in_the_way(path)
    if problem:
        raise OSError(errno.EEXIST, problem, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name is never much longer than a short target's: a name that fits fits with it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:TEMPORARY_STEM]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is an ordinary file
        staged = getattr(_staging, "files", None)
        if staged is None:
            os.replace(tmp, path)
        else:
            staged.append((tmp, path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def together():
    """Files written in the block replace their targets when it ends without error, else none does.

    Renames need no space, so once every file is written whole, replacing them all succeeds.
    """
    if getattr(_staging, "files", None) is not None:  # nested: the outer block decides
        yield
        return
    _staging.files = []
    try:
        yield
        for tmp, path in _staging.files:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in _staging.files:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    finally:
        _staging.files = None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
