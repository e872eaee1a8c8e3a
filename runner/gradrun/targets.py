"""What a run will write, checked before anything runs.

A run writes, per spec file, ``<stem>.csv`` (or ``.parquet``) and ``<stem>.run.json``
into ``--out`` (and a shard file, a baseline, pictures), and perhaps a JUnit file.
Before any experiment runs, ``check(planned, reads)`` makes sure that

- no file the run writes is one it reads: a spec file called ``x.csv`` in the
  ``--out`` folder, a ``--junit`` or ``--baseline`` path equal to a report, a
  baseline compared with that a report would replace;
- no two things the run writes are the same file;
- nothing but a file (or nothing) is where a file will be: not a folder, and not a
  device, pipe or socket (``--junit /dev/null`` would put a plain file in its place),
  and no name is too long for its folder;
- every folder written into can be written (or the nearest one above it that
  exists, where it is still to be made): a run that cannot write its reports
  stops before it runs, not after replacing some of them.

Paths are compared with their folders resolved (symlinks, ``..``) and their last
part as written: reports replace a symlink in ``--out``, they never write
through it (``gradrun.atomic``). Nothing here prints; a problem is a ``Clash``
or ``Unwritable``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .atomic import in_the_way
from .reading import escapes_project


class Clash(ValueError):
    """Files of a run that collide; ``option`` is the one to change."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


class Unwritable(Exception):
    """A folder the run would write into that cannot be made or written."""


def place(path) -> Path:
    """``path`` with its folder resolved and its last part kept: where a replacing write lands."""
    path = Path(path)
    return Path(os.path.realpath(path.parent)) / path.name


def check(planned: list, reads: list, folders: list = ()) -> None:
    """``planned``: (what, path, option) per file the run writes; ``reads``: (what, path) per file it
    reads; ``folders``: (what, path) per folder it writes files into (pictures). Raise ``Clash`` for
    a written file that is read or written twice, ``Unwritable`` for a folder that cannot be written
    or a file in the way of one."""
    for what, folder in folders:
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise Unwritable(f"cannot write {what} into {folder}: a file of that name is in the way")
        _stays(what, folder, None)
    for what, path, option in planned:
        _stays(what, Path(path).parent, option)
    read = {}
    for what, path in reads:
        read.setdefault(place(path), what)
        read.setdefault(Path(os.path.realpath(path)), what)  # a symlinked spec is read through its link
    written: dict = {}
    for what, path, option in planned:
        where = place(path)
        if where in read:
            raise Clash(f"{what} {path} would overwrite {read[where]}; "
                        f"choose another {option or 'path'}", option)
        if where in written:
            raise Clash(f"{what} and {written[where]} are the same file {path}; "
                        f"choose another {option or 'path'}", option)
        problem = in_the_way(where)
        if problem:
            raise Unwritable(f"cannot write {path}: {problem}")
        written[where] = what
    firsts = {}
    for _, path, _ in planned:
        firsts.setdefault(place(path).parent, path)
    for folder, path in firsts.items():
        _writable(folder, path)


def _stays(what: str, folder, option) -> None:
    """Raise ``Clash`` where ``folder``, named inside the project, is (or is under) a symlink out
    of it: a pull request adding ``results -> ~/.config/x`` had the reports written there."""
    outside = escapes_project(folder)
    if outside is not None:
        raise Clash(f"{what} would be written into {folder}, which a symlink leads to {outside}, outside the "
                    f"project; name that folder itself if you mean to write there", option)


def _writable(folder: Path, path) -> None:
    """Write a file into ``folder``, or into the nearest folder above it that exists (``folder``
    is made only when the run writes), or raise ``Unwritable`` naming ``path``, its first file."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".gradrun-probe.")
    except OSError as error:
        raise Unwritable(f"cannot write {path}: {error.strerror or error}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
