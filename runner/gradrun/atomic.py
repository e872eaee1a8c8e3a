"""Files written whole or not at all: a temporary file in the target's folder, then ``os.replace``.

A reader never sees half a report, and a crash leaves the previous file in place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


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
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
