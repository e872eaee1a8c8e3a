"""JAX functions (``jax:`` in a spec) as gradrun black boxes.

``function(fn, name)`` wraps any function of jax arrays, ``jax.custom_jvp``
and ``jax.custom_vjp`` functions included, as a ``tree.PythonFunction``:

- ``forward`` takes and returns numpy arrays in the dtype it is given (float64
  for the numeric reference, float32 for a float32 check);
- ``vjp`` is ``jax.vjp``: a custom_vjp function's ``bwd``, a custom_jvp
  function's rule transposed, JAX's own rules elsewhere;
- ``jvp`` is ``jax.jvp`` where JAX allows it; JAX cannot take the JVP of a
  custom_vjp function, so one is checked in reverse mode only (``notes`` say so);
- ``hvp`` (for ``order: 2``) is jvp-of-vjp (JAX takes it of a custom_vjp
  function too: it differentiates the ``bwd`` rule);
- ``forward_batch`` evaluates a chunk of perturbations in one call, and
  ``jvp_batch`` a chunk of tangents, ``jax.vmap`` under ``jax.jit``.

JAX computes in float32 unless x64 is enabled. Every call gradrun makes runs
inside ``x64()``, which switches x64 on for that call only and restores the
user's setting after it (see ``x64`` for the fallback on JAX without a
context manager). Calls are jitted; a function JAX cannot trace (Python
control flow on values) is called eagerly, row by row.
"""

from __future__ import annotations

import contextlib
import inspect

import jax
import jax.numpy as jnp
import numpy as np

from ..tree import PythonFunction, python_params

REVERSE_ONLY = ("{name}: is or calls a custom_vjp function, whose JVP (forward mode) JAX cannot take, "
                "so it is checked in reverse mode only (jax.vjp, its bwd rule)")
BOTH_MODES = ("{name}: reverse mode (jax.vjp) checked, and forward mode (jax.jvp) "
              "cross-checked against it for every element checked in full")
UNTRACEABLE = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
               jax.errors.TracerIntegerConversionError)


@contextlib.contextmanager
def _x64_by_config():
    """Fallback for a JAX with no x64 context manager: set the flag, and put back
    the user's value afterwards. Unlike the context managers it is not
    thread-local: another thread calling JAX meanwhile computes in float64 too."""
    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def x64():
    """A context in which JAX computes in float64 (jax.enable_x64 on JAX >= 0.6,
    jax.experimental.enable_x64 before that, else ``_x64_by_config``)."""
    state = getattr(jax, "enable_x64", None)
    if callable(state):
        return state(True)
    try:
        from jax.experimental import enable_x64
    except ImportError:
        return _x64_by_config()
    return enable_x64()


LIBRARIES = ("jax", "jaxlib", "numpy", "scipy", "builtins")  # not searched for the user's custom_vjp


def _callees(fn, depth: int = 3):
    """``fn`` and the functions its code names (globals, closure), ``depth`` levels
    deep, each looked at through its wrappers (``jax.jit``, ``functools.wraps``)."""
    seen, todo = [], [(fn, 0)]
    while todo:
        f, level = todo.pop()
        if any(f is s for s in seen):
            continue
        seen.append(f)
        try:
            inner = inspect.unwrap(f)
        except ValueError:  # a cycle of __wrapped__
            continue
        code = getattr(inner, "__code__", None)
        module = (getattr(inner, "__module__", None) or "").split(".")[0]
        if code is None or level >= depth or module in LIBRARIES:
            continue
        names = [getattr(inner, "__globals__", {}).get(n) for n in code.co_names]
        cells = [c.cell_contents for c in (getattr(inner, "__closure__", None) or ()) if _filled(c)]
        todo += [(g, level + 1) for g in names + cells if callable(g)]
    return seen


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def reverse_only(fn) -> bool:
    """True when ``fn`` is, wraps or calls a custom_vjp function (JAX has no JVP of one)."""
    def wrapped(f):
        while f is not None:
            yield f
            f = getattr(f, "__wrapped__", None)

    return any(isinstance(g, jax.custom_vjp) for f in _callees(fn) for g in wrapped(f))


def _cotangents(out) -> tuple:
    """numpy cotangents, None for an integer input's (JAX's float0: labels take none)."""
    return tuple(None if np.dtype(c.dtype) == jax.dtypes.float0 else np.asarray(c) for c in out)


def _tangents(ts, xs) -> tuple:
    """The tangents, an integer input's (labels: never moved) as JAX wants it, float0 zeros."""
    return tuple(np.zeros(np.shape(x), dtype=jax.dtypes.float0) if np.issubdtype(x.dtype, np.integer) else t
                 for t, x in zip(ts, xs))


class _Calls:
    """One jax function's calls, jitted, in x64, falling back to eager where JAX cannot trace."""

    def __init__(self, fn, name, nargs):
        self.fn, self.name = fn, name
        self.traceable = True

        def vjp(g, *xs):
            out, pullback = jax.vjp(fn, *xs)
            return pullback(g.astype(out.dtype))  # code that computes in another dtype than given

        def jvp(ts, *xs):
            return jax.jvp(fn, xs, _tangents(ts, xs))[1]

        def hvp(g, ts, *xs):  # forward over reverse: the VJP's derivative along the tangents
            return jax.jvp(lambda *p: vjp(g, *p), xs, _tangents(ts, xs))[1]

        self.fn, self.jvp_fn, self.nargs = fn, jvp, nargs
        self.eager = {"forward": fn, "vjp": vjp, "jvp": jvp, "hvp": hvp}
        self.jitted = {"forward": jax.jit(fn), "vjp": jax.jit(vjp), "jvp": jax.jit(jvp), "hvp": jax.jit(hvp)}

    def __call__(self, what, *args):
        with x64():  # float64 stays float64 (outside it, JAX would cut it to float32)
            if self.traceable:
                try:  # numpy arrays go in as they are: jit copies them in, compiling nothing more
                    return self._jitted(what)(*args)
                except UNTRACEABLE:
                    self.traceable = False
            return self._eager(what)(*_owned(args))

    def _jitted(self, what):
        """The jitted call; a batched one (``(kind, axes)``) vmapped over the axes given, made once."""
        if what not in self.jitted:
            kind, axes = what
            if kind == "forward_batch":
                self.jitted[what] = jax.jit(jax.vmap(self.fn, in_axes=axes))
            else:
                self.jitted[what] = jax.jit(jax.vmap(self.jvp_fn, in_axes=(axes,) + (None,) * self.nargs))
        return self.jitted[what]

    def _eager(self, what):
        """The call made row by row, for code JAX cannot trace."""
        if what in self.eager:
            return self.eager[what]
        kind, axes = what
        if kind == "forward_batch":
            return lambda *xs: _row_by_row(self.fn, axes, xs)
        return lambda ts, *xs: _row_by_row(lambda *t: self.jvp_fn(t, *xs), axes, ts)

    def forward(self, *xs):
        return np.asarray(self("forward", *xs))

    def forward_batch(self, *xs):
        """The rows of a chunk; an argument the same in every row (a stride-0 view, as gradrun
        passes the inputs a chunk does not move) goes in once, unbatched, instead of being
        copied into every row and multiplied as a batch of copies."""
        axes, args = _unbatched(xs)
        rows, args = _padded(axes, args)
        return np.asarray(self(("forward_batch", axes), *args))[:rows]

    def vjp(self, g, *xs):
        g = np.asarray(g, dtype=np.result_type(*xs))
        return _cotangents(self("vjp", g, *xs))

    def hvp(self, g, tangents, *xs):
        g = np.asarray(g, dtype=np.result_type(*xs))
        return _cotangents(self("hvp", g, tuple(tangents), *xs))

    def jvp(self, tangents, *xs):
        return self._forward_mode("jvp", tangents, xs)

    def jvp_batch(self, tangents, *xs):
        """JVPs along a chunk of tangents; an input's tangent that is None (the input does not
        move) or the same in every row goes in once, unbatched."""
        rows = next(len(t) for t in tangents if t is not None)
        axes, full = _unbatched([np.broadcast_to(np.zeros(np.shape(x), np.result_type(x)), (rows,) + np.shape(x))
                                 if t is None else t for t, x in zip(tangents, xs)])
        rows, full = _padded(axes, full)
        return self._forward_mode(("jvp_batch", axes), full, xs)[:rows]

    def _forward_mode(self, what, tangents, xs):
        try:
            return np.asarray(self(what, tuple(tangents), *xs))
        except TypeError as e:
            if "custom_vjp" not in str(e):
                raise
            raise TypeError(f"JAX cannot take the JVP of '{self.name}': it calls a custom_vjp function "
                            "gradrun did not see; make the function itself a jax.custom_vjp") from None


def _owned(args):
    """The arguments as jax arrays, each on a copy of its own: code called eagerly gets arrays,
    and none shares memory with gradrun's working arrays (``device_put`` alone may alias a
    numpy array; ``jnp.asarray`` compiles a ``jit(stage)`` per shape and dtype)."""
    return jax.tree_util.tree_map(lambda a: jax.device_put(np.array(a)), args)


def _unbatched(stacked) -> tuple:
    """vmap's in_axes of a chunk's arguments and the arguments to pass: one that is the same in
    every row (a stride-0 view along its first axis) once, axis None; the others whole, axis 0
    (the first too when every one is the same)."""
    axes = tuple(None if np.ndim(a) and np.asarray(a).strides[:1] == (0,) else 0 for a in stacked)
    axes = axes if 0 in axes else (0,) + axes[1:]
    return axes, [a if axis == 0 else a[0] for a, axis in zip(stacked, axes)]


def _bucket(rows: int) -> int:
    """The batch a chunk of ``rows`` is padded to: the next power of two up to 64, above it the
    next multiple of a quarter of the power of two below (at most a quarter more rows). XLA
    compiles a vmapped call once per batch size, about 80 ms each: chunks of 55, 56 and 60
    rows were three compilations, now one."""
    if rows <= 64:
        return 1 << max(rows - 1, 0).bit_length()
    grain = 1 << (rows.bit_length() - 3)
    return -(-rows // grain) * grain


def _padded(axes, args) -> tuple:
    """(the chunk's rows, its batched arguments padded to ``_bucket`` rows by repeating the
    last row: a point already evaluated, so nothing new can overflow or raise)."""
    rows = next(len(a) for a, axis in zip(args, axes) if axis == 0)
    extra = _bucket(rows) - rows
    if not extra or not rows:
        return rows, args
    return rows, [a if axis is None else np.concatenate([a, np.repeat(np.asarray(a)[-1:], extra, axis=0)])
                  for a, axis in zip(args, axes)]


def _row_by_row(f, axes, batched):
    """``f`` of one row at a time of the arguments ``batched`` (those of axis None the same in
    every row), stacked: what vmap gives, for code JAX cannot trace."""
    rows = next(len(a) for a, axis in zip(batched, axes) if axis == 0)
    return jnp.stack([f(*(a if axis is None else a[b] for a, axis in zip(batched, axes))) for b in range(rows)])


def function(fn, name: str, source: str = "") -> PythonFunction:
    """``fn``, a function of jax arrays, as a black box gradrun can check."""
    params = python_params(fn)
    calls = _Calls(fn, name, len(params))
    if reverse_only(fn):
        return PythonFunction(name=name, params=params, forward=calls.forward, vjp=calls.vjp, hvp=calls.hvp,
                              forward_batch=calls.forward_batch, source=source,
                              notes=[REVERSE_ONLY.format(name=name)])
    return PythonFunction(name=name, params=params, forward=calls.forward, vjp=calls.vjp, jvp=calls.jvp,
                          hvp=calls.hvp, forward_batch=calls.forward_batch, jvp_batch=calls.jvp_batch,
                          source=source, notes=[BOTH_MODES.format(name=name)])


__all__ = ["function", "x64", "reverse_only"]
