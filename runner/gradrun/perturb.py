"""Batched perturbations for finite differences: how the output moves when inputs do.

``perturb`` evaluates a whole batch of one-element perturbations at once and
returns how the output moves (its *delta*), touching only what each
perturbation reaches: a perturbation of X[i, j] in ``X @ W`` moves row i of the
product only, elementwise ops keep it there, and ``sum`` adds up the deltas of
the touched part instead of differencing two large totals. ``perturb_along``
moves a whole input along given directions (a screen's). Each op's step is
chosen by the table's ``kind`` for it (sparse where the delta can stay sparse,
dense otherwise); the engine knows no primitive by name.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import primitives
from .graph import Graph, call_user, readonly
from .motion import (Dense, Motion, Sparse, branch_rows, broadcast_reach, coalesce, densify, kink_rows,
                     moved_positions, probes)


# Elements of one batched intermediate array (512 KiB in float64): perturbations
# are evaluated in chunks this small, which bounds memory and keeps the work in
# cache (a full check of 15k elements runs fastest near here; see benchmarks/).
MEMORY_CAP = 1 << 16

# The documented bound on a check's working memory: what checking gradrun's own
# graph allocates beyond its inputs and the Records it returns (which grow with
# the report's rows). Chunking at MEMORY_CAP keeps it there; benchmarks/bench_screen.py
# measures it at (300,300,100).
WORKING_MEMORY_CAP = 32 * 2**20  # bytes

# Chunks for a black box that evaluates a chunk per call (``forward_batch``, torch's
# or JAX's vmap): such a call has a fixed cost of its own, milliseconds, so a chunk
# is large, not cache-sized, for the one input it moves (the others are passed
# once); at most BATCH_ROWS rows, which bounds what the framework's own
# intermediates take (benchmarks/bench_torch.py). Half the working memory: a
# chunk of 32 MiB is at glibc's largest mmap threshold, so it and the framework's
# arrays of its size were mapped fresh and faulted in on every call (a JAX full
# check of 32k elements spent 24 s of its 29 in the kernel; at 16 MiB, 0.8 s of 11).
BATCH_CAP = WORKING_MEMORY_CAP // 16  # elements of the moved input (float64), over all rows of a chunk
BATCH_ROWS = 1024


def batch_rows(size: int) -> int:
    """Rows of a batched black box's chunk when the input it moves has ``size`` elements."""
    return max(1, min(BATCH_ROWS, BATCH_CAP // max(size, 1)))



def _elementwise_sparse(prim, node, i, vals, ps, batch, motion):
    """An elementwise op on sparse deltas; None when it must go dense."""
    out_shape = vals[i].shape
    moved = [k for k, p in enumerate(ps) if p is not None]
    spread = [broadcast_reach(vals[a].shape, out_shape) for a in node.args]
    out_idx = None
    reps = {}
    for k in moved:
        p = ps[k]
        source, reach = spread[k]
        fan = reach.shape[1]
        oi = p.idx if vals[node.args[k]].shape == out_shape else reach[p.idx].reshape(batch, -1)
        if out_idx is not None and not (out_idx is oi or np.array_equal(out_idx, oi)):
            return None
        out_idx = oi
        reps[k] = p.delta if fan == 1 else np.repeat(p.delta, fan, axis=1)
    unique = all(ps[k].unique for k in moved)
    nargs = len(node.args)

    gathered: dict = {}

    def base(k):  # argument k's primal values at the moved positions, gathered once, where an op needs them
        if k not in gathered:
            a = node.args[k]
            gathered[k] = vals[a].ravel()[out_idx if vals[a].shape == out_shape else spread[k][0][out_idx]]
        return gathered[k]

    kink = np.zeros(batch, dtype=bool)
    forward = node.forward()
    if prim.additive:
        delta = forward(*[reps.get(k, 0) for k in range(nargs)])
    elif len(moved) == 1 and moved[0] in prim.linear_in:
        delta = forward(*[reps[k] if k in reps else base(k) for k in range(nargs)])
    elif nargs == 1 and motion.infinitesimal(reps[0]):
        delta = motion.slopes(i, forward, vals[node.args[0]])[out_idx] * reps[0]
        if prim.kinks:
            x = base(0)
            kink = kink_rows(prim, x, x, reps[0] != 0)
    else:
        if not unique:
            return None
        old = [base(k) for k in range(nargs)]
        new = [motion.lift(old[k], reps[k]) if k in reps else old[k] for k in range(nargs)]
        delta = motion.change(forward(*new), vals[i].ravel()[out_idx])
        if prim.kinks:
            kink = kink_rows(prim, old[moved[0]], new[moved[0]], reps[moved[0]] != 0)
    if prim.branch is not None:
        old = [base(k) for k in range(nargs)]
        new = [motion.lift(old[k], reps[k]) if k in reps else old[k] for k in range(nargs)]
        kink |= branch_rows(prim, node.kwargs, old, new, batch, motion)
    return Sparse(out_idx, np.broadcast_to(delta, out_idx.shape), unique), kink


def _product_sparse(prim, node, vals, ps, batch):
    """A product (matmul) with one operand moved sparsely, as the table's ``moves`` rule spreads it."""
    moved = [k for k, p in enumerate(ps) if p is not None]
    if len(moved) != 1:
        return None
    p = ps[moved[0]]
    landed = prim.moves([vals[a] for a in node.args], moved[0], p.idx, p.delta)
    if landed is None:
        return None
    idx, delta = landed
    return Sparse(idx.reshape(batch, -1), delta.reshape(batch, -1), p.idx.shape[1] == 1), None


@lru_cache(maxsize=256)
def _weight_cached(name, params, shape):
    size = max(int(np.prod(shape, dtype=np.int64)), 1)
    return float(np.ravel(primitives.get(name).forward(np.ones(shape), **dict(params)))[0]) / size


def _weight(node, shape):
    """What one element contributes to a (linear, all-element) reduction."""
    return _weight_cached(node.op, node.params, tuple(shape))


def _sparse_step(node, i, vals, ps, batch, motion):
    """The sparse delta of one op, or None to fall back to dense."""
    prim = primitives.get(node.op)
    kind = prim.kind_for(node.kwargs)
    if kind == "elementwise":
        return _elementwise_sparse(prim, node, i, vals, ps, batch, motion)
    if kind == "product":
        return _product_sparse(prim, node, vals, ps, batch)
    if kind == "reduce":
        p = ps[0]
        delta = p.delta.sum(axis=1, keepdims=True) * _weight(node, vals[node.args[0]].shape)
        return Sparse(np.zeros((batch, 1), dtype=np.int64), delta), None
    if kind == "transpose":
        p = ps[0]
        axes = node.kwargs.get("axes")
        return Sparse(moved_positions(vals[node.args[0]].shape, axes)[p.idx], p.delta, p.unique), None
    if kind == "reshape":  # flat C-order positions stay where they are
        return ps[0], None
    return None


def _pad(d, ndim):
    """A batched delta (B, *shape) reshaped to broadcast against ndim-dimensional arrays."""
    return d.reshape((d.shape[0],) + (1,) * (ndim - (d.ndim - 1)) + d.shape[1:])


def _python_sparse(node, i, vals, ps, batch, motion):
    """A user's function called once per row on a working copy of its arguments
    with only the row's positions moved (and put back after the call); a batched
    forward gets every row at once instead."""
    args = [vals[a] for a in node.args]
    moved = [k for k, p in enumerate(ps) if p is not None]
    dtype = complex if motion.imaginary else None
    old = {k: args[k].ravel()[ps[k].idx] for k in moved}
    new = {k: motion.lift(old[k], ps[k].delta) for k in moved}
    if node.fn.forward_moved is not None and dtype is None:  # the function builds the chunk itself
        rows = np.asarray(node.fn.forward_moved(args, {k: (ps[k].idx, new[k]) for k in moved})).reshape(batch, -1)
    elif node.fn.forward_batch is not None:
        # unmoved arguments stay read-only broadcast views (stride 0 along the batch axis),
        # which a batched forward may pass once instead of once per row
        stacked = [np.broadcast_to(x, (batch,) + x.shape) for x in args]
        for k in moved:  # row b moves its own positions only
            # rows contiguous (numpy's default order would keep the broadcast batch axis innermost)
            stacked[k] = np.array(stacked[k], dtype=dtype or args[k].dtype, order="C")
            stacked[k].reshape(batch, -1)[np.arange(batch)[:, None], ps[k].idx] = new[k]
        rows = np.asarray(node.fn.forward_batch(*stacked)).reshape(batch, -1)
    else:
        work = [np.array(x, dtype=dtype or x.dtype) for x in args]
        flat = {k: work[k].reshape(-1) for k in moved}
        called = readonly([work[k] if k in flat else x for k, x in enumerate(args)])
        rows = np.empty((batch, vals[i].size), dtype=dtype or vals[i].dtype)
        for b in range(batch):
            for k in moved:
                flat[k][ps[k].idx[b]] = new[k][b]
            rows[b] = np.asarray(call_user(node.fn.forward, *called)).ravel()
            for k in moved:
                flat[k][ps[k].idx[b]] = old[k][b]
    return Dense(motion.change(rows, vals[i].ravel()).reshape((batch,) + vals[i].shape)), np.zeros(batch, bool)


def _dense_step(node, i, vals, ps, batch, motion):
    args = [vals[a] for a in node.args]
    ds = [None if p is None else p.delta for p in ps]
    out = vals[i]
    kink = np.zeros(batch, dtype=bool)
    if node.fn is not None and node.fn.forward_batch is not None:
        moved = [np.broadcast_to(x, (batch,) + x.shape) if d is None else motion.lift(x, d)
                 for x, d in zip(args, ds)]
        rows = np.asarray(node.fn.forward_batch(*moved)).reshape((batch,) + out.shape)
        return Dense(motion.change(rows, out)), kink
    if node.fn is not None:
        rows = []
        for b in range(batch):
            moved = readonly([x if d is None else motion.lift(x, d[b]) for x, d in zip(args, ds)])
            rows.append(motion.change(np.asarray(call_user(node.fn.forward, *moved)), out))
        return Dense(np.stack(rows)), kink
    prim = primitives.get(node.op)
    kind = prim.kind_for(node.kwargs)
    if kind == "reduce":
        return Dense(ds[0].reshape(batch, -1).sum(axis=1) * _weight(node, args[0].shape)), kink
    if kind == "transpose":
        axes = node.kwargs.get("axes") or tuple(range(ds[0].ndim - 2, -1, -1))
        return Dense(np.transpose(ds[0], (0,) + tuple(a % (ds[0].ndim - 1) + 1 for a in axes))), kink
    if kind == "reshape":
        return Dense(ds[0].reshape((batch,) + out.shape)), kink
    def lifted():  # the moved arguments, built only where an op needs them
        return [x if d is None else motion.lift(x, d) for x, d in zip(args, ds)]

    if kind == "elementwise":
        return _elementwise_dense(prim, node, i, args, ds, lifted, out, batch, motion)
    if kind == "product":
        moved = [k for k, d in enumerate(ds) if d is not None]
        linear = len(moved) == 1 and moved[0] in prim.linear_in  # the product of the delta is the delta
        new = [x if d is None else d for d, x in zip(ds, args)] if linear else lifted()
        product = prim.forward_batched(new, [d is not None for d in ds], args, out.shape)
        return Dense(product if linear else motion.change(product, out)), kink
    settings = prim.settings(node.params)
    moved = [(x, False) if d is None else (m, True) for x, d, m in zip(args, ds, lifted())]
    if prim.branch is not None:
        before = np.asarray(prim.branch(*args, **settings))
        for probe in probes(motion, [m for m, _ in moved]):
            after = _rows(prim.branch, prim, settings, list(zip(probe, (b for _, b in moved))), batch)
            kink |= (after != before).reshape(batch, -1).any(axis=1)
    return Dense(motion.change(_rows(prim.forward, prim, settings, moved, batch), out)), kink


def _elementwise_dense(prim, node, i, args, ds, lifted, out, batch, motion):
    """An elementwise op on dense deltas (B, *shape): the arguments broadcast against the batch.

    ``lifted()`` gives the moved arguments; ops that are additive never need them."""
    forward, nd = node.forward(), out.ndim
    kink = np.zeros(batch, dtype=bool)
    padded = [x if d is None else _pad(d, nd) for x, d in zip(args, ds)]

    def moved():
        return [x if d is None else _pad(n, nd) for x, d, n in zip(args, ds, lifted())]

    news = None
    if prim.additive:
        delta = forward(*[0 if d is None else p for p, d in zip(padded, ds)])
    elif len(args) == 1 and motion.infinitesimal(ds[0]):
        delta = motion.slopes(i, forward, args[0]).reshape(args[0].shape) * ds[0]
        if prim.kinks:
            base = np.broadcast_to(args[0], ds[0].shape)
            kink = kink_rows(prim, base, base, ds[0] != 0)
    else:
        news = moved()
        delta = motion.change(forward(*news), out)
        if prim.kinks:
            k = next(j for j, d in enumerate(ds) if d is not None)
            kink = kink_rows(prim, _pad(np.broadcast_to(args[k], ds[k].shape), nd), news[k], padded[k] != 0)
    if prim.branch is not None:
        kink |= branch_rows(prim, node.kwargs, args, moved() if news is None else news, batch, motion)
    full = (batch,) + out.shape
    fresh = np.shape(delta) == full and delta.flags.owndata and all(delta is not d for d in ds)
    return Dense(delta if fresh else np.broadcast_to(delta, full).copy()), kink  # a copy only of a broadcast or a view


def _rows(fn, prim, settings, args, batch):
    """``fn(*args, **settings)`` for every row of the moved arguments, as (B, ...).

    ``args`` are (array, batched) pairs. With a batch rule, one call on
    arguments that all carry the leading batch axis; without, one call per row.
    """
    if prim.batch is not None:
        full = [x if b else np.broadcast_to(x, (batch,) + x.shape) for x, b in args]
        return np.asarray(fn(*full, **prim.batch(settings, [x.ndim - b for x, b in args])))
    return np.stack([np.asarray(fn(*[x[r] if b else x for x, b in args], **settings)) for r in range(batch)])


def perturb(graph: Graph, vals: list, name: str, index, delta, cache=None):
    """Move element ``index[b]`` of input ``name`` by ``delta[b]``, for every b at once.

    Returns ``(out_delta, kink, width)``: the output's delta as a (B, output
    size) array (exactly zero where a perturbation does not reach), which rows
    reached or crossed a kink of a primitive, and the most elements one row
    kept alive at any node (what bounds the batch size for a memory cap).
    ``cache``, a dict kept across calls on the same graph and values, lets
    complex steps reuse what they measured (see ``Motion``).
    """
    index = np.asarray(index, dtype=np.int64)
    delta = np.asarray(delta)
    motion = Motion(np.iscomplexobj(delta), {} if cache is None else cache)
    start = Sparse(index[:, None], (np.imag(delta) if motion.imaginary else delta)[:, None])
    return _propagate(graph, vals, name, start, len(index), motion)


def perturb_along(graph: Graph, vals: list, name: str, directions, imaginary=False, cache=None):
    """Move the whole input ``name`` by ``directions[b]`` (shape (B, *input shape)); as ``perturb``.

    ``imaginary=True`` takes real directions as the imaginary parts of a complex
    step's (the complex array they would make is never built). ``cache``: as
    ``perturb``'s, and valid across inputs (a slope depends on the values alone)."""
    directions = np.asarray(directions)
    motion = Motion(imaginary or np.iscomplexobj(directions), {} if cache is None else cache)
    start = Dense(np.imag(directions) if np.iscomplexobj(directions) else directions)
    return _propagate(graph, vals, name, start, len(directions), motion)


def _propagate(graph, vals, name, start, batch, motion):
    state: list = [None] * len(graph.nodes)
    state[graph.inputs[name]] = start
    kink = np.zeros(batch, dtype=bool)
    width = 1
    with np.errstate(all="ignore"):
        for i, node in enumerate(graph.nodes):
            ps = [state[a] for a in node.args]
            if all(p is None for p in ps):
                continue
            step = None
            if node.fn is not None and all(p is None or (isinstance(p, Sparse) and p.unique) for p in ps):
                step = _python_sparse(node, i, vals, ps, batch, motion)
            elif node.fn is None and all(p is None or isinstance(p, Sparse) for p in ps):
                step = _sparse_step(node, i, vals, ps, batch, motion)
                if step is None and any(isinstance(p, Sparse) and not p.unique for p in ps):
                    merged = [None if p is None else coalesce(p) for p in ps]
                    if all((p is None) == (q is None) for p, q in zip(merged, ps)):
                        step = _sparse_step(node, i, vals, merged, batch, motion)
            if step is None:
                dense = [densify(p, vals[a].shape, batch) for p, a in zip(ps, node.args)]
                step = _dense_step(node, i, vals, dense, batch, motion)
            state[i], k = step
            if k is not None:
                kink |= k
            moved = state[i]
            width = max(width, moved.idx.shape[1] if isinstance(moved, Sparse) else vals[i].size,
                        *(vals[a].size for p, a in zip(ps, node.args) if isinstance(p, Dense)))
    out = state[graph.output]
    size = vals[graph.output].size
    if out is None:
        flat = np.zeros((batch, size))
    else:
        flat = densify(out, vals[graph.output].shape, batch).delta.reshape(batch, size)
    return (1j * flat if motion.imaginary else flat), kink, max(width, size)
