"""Files written whole or not at all: a temporary file in the target's folder, then ``os.replace``.

A reader never sees half a report, and a crash leaves the previous file in place.
Inside ``together()``, files are replaced only when the whole block succeeds: a
report and its run record are both new or both old, even when the disk fills up
while the second is written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path

_staging = threading.local()  # .files: (temporary, target) pairs waiting for together() to end


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


@contextlib.contextmanager
def _atomic(path):
    """A binary file at a temporary name that replaces ``path`` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
