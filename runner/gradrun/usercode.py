"""The code a spec names (``python:``, ``torch:``, ``jax:``), and the trust rule that bounds it.

A spec file may arrive in a pull request, so what it names is resolved under a
rule the spec itself cannot loosen:

- a reference ``module:name`` resolves only to a module *file* under the spec's
  folder or under the current working directory (the project), after symlinks
  are followed;
- files of installed packages are never the user's own code, even inside the
  project: any path through ``.venv``, ``venv``, ``site-packages``,
  ``dist-packages`` or ``__pypackages__``, and anything under the running
  Python's prefixes (the standard library);
- ``name`` is one attribute of that module, and it must be *defined* in a
  trusted file (a function, a class, or a wrapper whose ``__wrapped__`` leads
  to one): a name the module merely imported (``from os import system``) is
  refused;
- only the user widens this, from the command line or a config file, never the
  spec: ``Policy.allowed`` names modules (``numpy``, ``mypkg``) resolved the
  ordinary way with no file or definition check; ``Policy.code=False`` (the
  safe mode, ``--no-code``) refuses every reference.

Modules are isolated per folder: the modules a user module imports from its own
folder (its helpers) are loaded for that folder only, so the same module name
beside two specs loads twice and each spec sees its own.

``resolve(ref, spec_dir, policy)`` is the one resolver every code reference goes
through; it raises ``Refused`` (an actionable message and hint) and never
prints.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import sysconfig
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")  # used with fullmatch: no "\n" after
ATTRIBUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
INSTALLED_PARTS = frozenset({".venv", "venv", "site-packages", "dist-packages", "__pypackages__"})
INSTALLED_ANYWHERE = frozenset({"site-packages", "dist-packages"})  # above the project too: no project is in one
MAX_UNWRAP = 16  # __wrapped__ links followed to find where a callable is defined


@dataclass(frozen=True)
class Policy:
    """What code references may reach; set by the user (CLI, config), never by a spec.

    ``code``: False refuses every reference (the safe mode). ``allowed``:
    module names (a name allows its submodules too) resolved from ``sys.path``
    as Python would, beyond the spec's folder and the project.
    """

    code: bool = True
    allowed: tuple = ()
    project: str | None = None  # the project's folder; None: the working directory (a Dask worker's is another)

    def allows(self, module: str) -> bool:
        return any(module == name or module.startswith(name + ".") for name in self.allowed)


DEFAULT = Policy()
NO_CODE = Policy(code=False)


class Refused(Exception):
    """A reference that cannot or may not be resolved; ``message`` and ``hint`` for the user."""

    def __init__(self, message: str, hint: str = "", column=None):
        super().__init__(message)
        self.message, self.hint, self.column = message, hint, column


# ---------------------------------------------------------------- where trusted code lives

@functools.lru_cache(maxsize=1)
def _installed_roots() -> tuple:
    """Python's own folders and its installed packages' (fixed for the life of a process)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths |= {sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(Path(p).resolve() for p in paths if p)


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def trusted_roots(spec_dir, project=None) -> list:
    """The folders whose files are the user's own code: the spec's folder, then the project
    (``project``, by default the working directory)."""
    roots = []
    for folder in (Path(spec_dir), Path(project) if project else Path.cwd()):
        folder = folder.resolve()
        if folder not in roots:
            roots.append(folder)
    return roots


def is_trusted_file(path, roots) -> bool:
    """A real file under a trusted root that is no installed package and no part of Python itself."""
    try:
        real = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    holding = [r for r in roots if _within(real, r)]
    if not holding or not real.is_file():
        return False
    root = min(holding, key=lambda r: len(r.parts))  # the outermost: a spec inside .venv/ is no way in
    if INSTALLED_PARTS.intersection(real.relative_to(root).parts) or INSTALLED_ANYWHERE.intersection(real.parts):
        return False  # a spec, or the current directory, inside an installed package makes it no one's own
    # A Python prefix that holds the whole project (/usr for /usr/src/project) says nothing.
    return not any(_within(real, p) and not (_within(root, p) and root != p) for p in _installed_roots())


def _candidates(module: str, roots):
    """The paths that would be ``module``, in order: ``a/b.py`` or ``a/b/__init__.py`` under each root."""
    parts = module.split(".")
    for root in roots:
        yield from (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py"))


def _module_file(module: str, roots) -> Path | None:
    """The first trusted file that is ``module``."""
    return next((c for c in _candidates(module, roots) if c.is_file() and is_trusted_file(c, roots)), None)


def _untrusted(module: str, roots) -> str | None:
    """Why the first path that would be ``module`` but is not trusted is refused; None if there is none."""
    from .atomic import not_a_file

    for candidate in _candidates(module, roots):
        if not os.path.lexists(candidate):
            continue
        real = Path(os.path.realpath(candidate))
        if not any(_within(real, r) for r in roots):
            return f"{candidate} leads to {real}, outside the spec's folder and the project"
        if real.is_dir():
            return f"{candidate} is a folder, not a Python file"
        kind = not_a_file(os.stat(real).st_mode) if real.exists() else "a broken symlink"
        return f"{candidate} is {kind or 'part of an installed package or of Python itself'}"
    return None


def _class_file(cls) -> str | None:
    """The file of the module that defines ``cls``, a folder's isolated helpers included."""
    name = getattr(cls, "__module__", None) or ""
    qualname = getattr(cls, "__qualname__", "")
    candidates = [sys.modules.get(name)] + [loaded.get(name) for loaded in _LOADED.values()]
    for module in candidates:
        if module is not None and ("." in qualname or getattr(module, qualname, None) is cls):
            return getattr(module, "__file__", None)
    return None


def defined_in(obj) -> str | None:
    """The file that defines a callable: its code's file, or its class's module file; None when unknown.

    A wrapper object (``jax.custom_vjp``, ``functools.lru_cache``) is judged by
    what its ``__wrapped__`` leads to.
    """
    for _ in range(MAX_UNWRAP):
        if inspect.ismethod(obj):
            obj = obj.__func__
        if inspect.isfunction(obj):
            return obj.__code__.co_filename
        if inspect.isclass(obj):
            return _class_file(obj)
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is None:
            return _class_file(type(obj))
        obj = wrapped
    return None


# ---------------------------------------------------------------- loading, isolated per folder

_LOADED: dict = {}  # resolved folder -> {module name: module}, the helpers each folder imported


@contextmanager
def _folder_imports(folder: Path):
    """Imports inside see ``folder``'s own helper modules, and leave none behind in ``sys.modules``."""
    mine = _LOADED.setdefault(folder, {})
    others = {n for loaded in _LOADED.values() if loaded is not mine for n in loaded}
    hidden = {n: sys.modules.pop(n) for n in others if n in sys.modules}
    sys.modules.update(mine)
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], "__file__", None)
            if name.startswith("_gradrun_user_") or name.split(".")[0] in before:
                continue  # a spec's own module, or a submodule of a package loaded before (gradrun itself)
            if file and _within(Path(file).resolve(), folder):
                mine[name] = sys.modules.pop(name)
        for name in mine:
            sys.modules.pop(name, None)
        sys.modules.update(hidden)


@contextmanager
def kept_cwd():
    """The working directory as it was, whatever the user's code inside changed it to.

    gradrun's own relative paths (the spec, its modules, the reports) mean the
    folder it was started in, and a worker must see what a serial run sees
    whichever experiments ran in it before: the user's code that moves the
    process (``os.chdir``) is moved back after each point, and after loading.
    """
    before = os.getcwd()
    try:
        yield
    finally:
        try:
            moved = os.getcwd() != before
        except OSError:  # the user's code removed the folder it moved to
            moved = True
        if moved:
            os.chdir(before)


def own_files(folder) -> list:
    """The files of the user's modules this process has loaded from under ``folder``: the modules
    specs named and the helpers those imported (what a worker without the folder needs)."""
    folder = Path(folder).resolve()
    modules = [m for name, m in list(sys.modules.items()) if name.startswith("_gradrun_user_")]
    modules += [m for loaded in _LOADED.values() for m in loaded.values()]
    files = {Path(f).resolve() for f in (getattr(m, "__file__", None) for m in modules) if f and f.endswith(".py")}
    return sorted(f for f in files if _within(f, folder))


def _load_file(module: str, path: Path, root: Path):
    """The module at ``path`` under a name unique to its file, loaded once per process."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"_gradrun_user_{digest}_{module.replace('.', '_')}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        with _folder_imports(root):
            spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def _import(module: str, policy: Policy, roots):
    """(module, whether it is the user's own file); ``Refused`` for anything else."""
    path = _module_file(module, roots)
    if path is not None:
        root = next(r for r in roots if _within(path.resolve(), r))
        return _load_file(module, path, root), True
    if policy.allows(module):
        return importlib.import_module(module), False
    why = _untrusted(module, roots)
    if why:
        raise Refused(f"module '{module}' is not the project's own code: {why}",
                      "a spec may name only .py files under its folder or the project (docs/security.md)")
    names = sorted({p.stem for r in roots[:1] for p in r.glob("*.py")})
    from .expr import did_you_mean

    try:
        installed = importlib.util.find_spec(module.split(".")[0]) is not None  # finds; runs nothing
    except (ImportError, ValueError):  # __main__ and the like
        installed = True
    if installed:
        raise Refused(f"module '{module}' is not the project's own code (installed or part of Python)",
                      f"a spec may only name modules under its folder or the project; "
                      f"to allow it, run with --allow-module {module.split('.')[0]}")
    raise Refused(f"module '{module}' not found under the spec's folder or the project",
                  did_you_mean(module, names) or f"put {module.replace('.', '/')}.py next to the spec file")


# ---------------------------------------------------------------- the resolver

def resolve(ref: str, spec_dir, policy: Policy = DEFAULT):
    """``"module:name"`` -> the callable it names, under ``policy``; raise ``Refused``.

    Importing runs the module's top-level code, so a refusal is decided before
    any import: by the name's form, the safe mode and the module's file.
    """
    if not policy.code:
        raise Refused(f"code reference '{ref}' refused: the safe mode (--no-code, --safe) runs no code from specs",
                      "use built-ins and expressions, or run without --no-code for specs you trust")
    module, sep, attr = str(ref).partition(":")
    if not sep or not MODULE.fullmatch(module) or not ATTRIBUTE.fullmatch(attr):
        raise Refused(f"'{ref}' is not a code reference", "write module:callable, e.g. layers:dense")
    if attr.startswith("__"):
        raise Refused(f"'{attr}' is a special name, not a callable of the user's code")
    roots = trusted_roots(spec_dir, policy.project)
    try:
        mod, own = _import(module, policy, roots)
    except Refused:
        raise
    except ModuleNotFoundError as e:
        raise Refused(f"importing '{module}' failed: {e}") from None
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # the user's module raised while importing (SystemExit too)
        raise Refused(f"importing '{module}' raised {type(e).__name__}: {e}") from None
    fn = getattr(mod, attr, None)
    if fn is None:
        from .expr import did_you_mean

        public = [n for n in dir(mod) if not n.startswith("_")]
        raise Refused(f"module '{module}' has no '{attr}'", did_you_mean(attr, public))
    if not callable(fn):
        raise Refused(f"'{ref}' is not callable")
    if own:
        where = defined_in(fn)
        if where is None or not is_trusted_file(where, roots):
            raise Refused(f"'{ref}' is not defined in the project's own code "
                          f"(it comes from {getattr(fn, '__module__', None) or 'elsewhere'})",
                          "name a function or class written in that module, or allow its module "
                          "with --allow-module")
    return fn


def _not_real(value, complex_in: bool) -> str | None:
    """Why a value user code returned is not real numbers (complex ones only for complex input)."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    for item in items:
        if item is None:
            continue  # a VJP's "no gradient for this input"
        kind = getattr(item, "dtype", None)
        kind = kind.kind if kind is not None else np.asarray(item).dtype.kind
        if kind == "c" and not complex_in:
            return "complex values for real inputs"
        if kind not in "biufc":
            dtype = getattr(item, "dtype", None)
            return f"{dtype.name if dtype is not None else type(item).__name__} values, not numbers"
    return None


class Guarded:
    """User code that must return numbers: anything else is a ``TypeError`` naming its source.

    A class, not a closure, so that it pickles (by reference to the code it
    wraps) when experiments travel to worker processes.
    """

    def __init__(self, fn, source: str):
        functools.update_wrapper(self, fn)
        self.fn, self.source = fn, source

    def __call__(self, *args, **kwargs):
        out = self.fn(*args, **kwargs)
        flat = [x for a in args for x in (a if isinstance(a, (tuple, list)) else (a,))]
        problem = _not_real(out, any(np.iscomplexobj(x) for x in flat))
        if problem:
            raise TypeError(f"{self.source} returned {problem}")
        return out


def guarded(fn, source: str):
    """``fn`` wrapped in ``Guarded`` (None stays None)."""
    return None if fn is None else Guarded(fn, source)


def policy_from(no_code: bool = False, allow_modules=()) -> Policy:
    """A Policy from the user's options; names are checked to be module names."""
    allowed = tuple(dict.fromkeys(m.strip() for m in allow_modules if m and m.strip()))
    bad = [m for m in allowed if not MODULE.fullmatch(m)]
    if bad:
        raise ValueError(f"'{bad[0]}' is not a module name")
    return Policy(code=not no_code, allowed=allowed)


__all__ = ["own_files", "guarded", "Policy", "DEFAULT", "NO_CODE", "Refused", "resolve", "policy_from", "trusted_roots",
           "is_trusted_file", "defined_in"]
