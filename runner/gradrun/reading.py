"""Files a run reads that a pull request can change as easily as a spec: spec files and baselines.

Such a file is read only if it is a regular file (a named pipe would hold the
run forever, ``/dev/zero`` never ends), at most ``limit`` bytes of it, and,
where it is a symlink, only if the link stays where its name is: a name inside
the project (the working directory) must lead to a file inside the project; a
link named from elsewhere must lead into its own folder. Otherwise a pull
request adding ``specs/x.yaml -> ~/.netrc`` would have gradrun read the file
and echo its lines in error messages, into a public CI log.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .atomic import not_a_file


class Unreadable(Exception):
    """A file gradrun will not read: ``message`` says why (no path: the caller names the file)."""


class TooLarge(Unreadable):
    """A file larger than its limit."""


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def escapes_project(path) -> Path | None:
    """Where ``path``, named inside the project (the working directory), leads out of it through
    a symlink among its parts; None when it does not, or is named outside the project."""
    named, real = Path(os.path.abspath(path)), Path(os.path.realpath(path))
    project = Path(os.path.realpath(os.getcwd()))
    return real if _within(named, project) and not _within(real, project) else None


def leads_outside(path) -> Path | None:
    """Where a symlink in ``path`` leads out of where its name says it is; None when it does not."""
    named = Path(os.path.abspath(path))
    if _within(named, Path(os.path.realpath(os.getcwd()))):
        return escapes_project(path)
    if os.path.islink(path):
        real = Path(os.path.realpath(path))
        return None if _within(real, Path(os.path.realpath(named.parent))) else real
    return None


def _check_regular(fd: int, limit: int) -> None:
    """Close ``fd`` and raise ``Unreadable`` unless it is a regular file of at most ``limit`` bytes."""
    mode = os.fstat(fd)
    kind = "a folder" if stat.S_ISDIR(mode.st_mode) else not_a_file(mode.st_mode)
    if kind or mode.st_size > limit:
        os.close(fd)
        raise Unreadable(f"it is {kind}, not a file") if kind else TooLarge(f"the file is larger than {limit} bytes")


def _open_regular(path, limit: int):
    """A file object of the regular file at ``path`` (of at most ``limit`` bytes) that no symlink
    leads astray (``leads_outside``); else ``Unreadable``. ``OSError`` as ``open`` raises it."""
    outside = leads_outside(path)
    if outside is not None:
        raise Unreadable(f"it is a symlink to {outside}, outside the project and the folder it is in; "
                         "name that file itself if you mean to read it")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a pipe must not block the open
    _check_regular(fd, limit)
    return os.fdopen(fd, "rb")


def read_bounded(path, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, if it has at most ``limit`` of them and no symlink
    leads it astray (``leads_outside``); else ``Unreadable``. ``OSError`` as ``open`` raises it."""
    with _open_regular(path, limit) as f:
        raw = f.read(limit + 1)  # a file that grows meanwhile costs no more
    if len(raw) > limit:
        raise TooLarge(f"the file is larger than {limit} bytes")
    return raw


def read_head(path, size: int) -> bytes:
    """The first ``size`` bytes of a file ``read_bounded`` would read, whatever its length."""
    with _open_regular(path, float("inf")) as f:
        return f.read(size)
