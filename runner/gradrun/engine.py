"""The gradient engine: graphs, evaluation, reverse mode, forward mode, perturbations.

A ``Graph`` is a list of nodes in evaluation order. It is built once from an
expression tree (``build``), with declared expression functions inlined and
identical subexpressions shared. On it:

- ``evaluate`` gives every node's primal value;
- ``vjp`` walks the nodes backwards, accumulating cotangents (the walker, not
  the rules, sums a broadcast cotangent back to its argument's shape);
- ``jvp`` walks forwards with tangents, a second, independent analytic path;
- ``perturb`` evaluates a whole batch of one-element perturbations at once and
  returns how the output moves (its *delta*), touching only what each
  perturbation reaches: a perturbation of X[i, j] in ``X @ W`` moves row i of
  the product only, elementwise ops keep it there, and ``sum`` adds up the
  deltas of the touched part instead of differencing two large totals.

The engine knows no primitive by name: it asks the table for each op's
``kind`` and rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Optional

import numpy as np

from . import primitives
from .tree import Call, Const, ExprFunction, PythonFunction, Var

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
# is as large as the working memory allows for the one input it moves (the others
# are passed once), not cache-sized; at most BATCH_ROWS rows, which bounds what
# the framework's own intermediates take (benchmarks/bench_torch.py).
BATCH_CAP = WORKING_MEMORY_CAP // 8  # elements of the moved input, over all rows of a chunk
BATCH_ROWS = 1024


def batch_rows(size: int) -> int:
    """Rows of a batched black box's chunk when the input it moves has ``size`` elements."""
    return max(1, min(BATCH_ROWS, BATCH_CAP // max(size, 1)))


class GraphError(ValueError):
    """An expression that cannot be built or evaluated as a graph."""


@dataclass
class Node:
    op: Optional[str] = None  # primitive name; None for inputs, constants and Python functions
    args: tuple = ()
    name: str = ""  # input name, or the Python function's name
    value: Optional[np.ndarray] = None  # a constant's value
    fn: Optional[PythonFunction] = None
    params: tuple = ()  # a primitive's static arguments, (name, value) pairs

    @property
    def kwargs(self) -> dict:
        return dict(self.params)

    def forward(self):
        """The primitive's forward function with this node's static arguments bound."""
        prim = primitives.get(self.op)
        return partial(prim.forward, **self.kwargs) if self.params else prim.forward


@dataclass
class Graph:
    nodes: list
    inputs: dict  # input name -> node id
    output: int
    needs: list = field(default_factory=list)  # node depends on an input

    @property
    def complex_safe(self) -> bool:
        return all(
            (n.fn.complex_safe if n.fn else primitives.get(n.op).complex_safe)
            for n in self.nodes
            if n.op or n.fn
        )

    @property
    def transparent(self) -> bool:
        """True when every op is gradrun's own, so perturbations can be tracked sparsely."""
        return not any(n.fn for n in self.nodes)

    @property
    def batched(self) -> bool:
        """True when every black box evaluates a chunk of perturbations per call."""
        boxes = [n.fn for n in self.nodes if n.fn]
        return bool(boxes) and all(fn.forward_batch is not None for fn in boxes)

    @property
    def has_jvp(self) -> bool:
        return all(n.fn.jvp is not None for n in self.nodes if n.fn)

    @property
    def has_vjp(self) -> bool:
        return all(n.fn.vjp is not None for n in self.nodes if n.fn)


def build(expr, functions: dict, inputs) -> Graph:
    """Build the graph of ``expr`` over the named inputs, inlining declared functions."""
    nodes: list = []
    memo: dict = {}

    def add(key, node):
        if key not in memo:
            memo[key] = len(nodes)
            nodes.append(node)
        return memo[key]

    input_ids = {name: add(("input", name), Node(name=name)) for name in inputs}

    def walk(e, env, depth):
        if depth > 200:
            raise GraphError("functions nest more than 200 deep (does a function call itself?)")
        if isinstance(e, Var):
            if e.name in env:
                return env[e.name]
            if e.name in input_ids:
                return input_ids[e.name]
            raise GraphError(f"unknown name '{e.name}'")
        if isinstance(e, Const):
            v = float(e.value)
            return add(("const", v), Node(name=repr(v), value=np.asarray(v)))
        args = tuple(walk(a, env, depth + 1) for a in e.args)
        fn = functions.get(e.fn)
        if isinstance(fn, ExprFunction):
            if len(args) != len(fn.params):
                raise GraphError(f"{fn.name} takes {len(fn.params)} arguments, got {len(args)}")
            return walk(fn.body, dict(zip(fn.params, args)), depth + 1)
        if isinstance(fn, PythonFunction):
            if len(args) != fn.nargs:
                raise GraphError(f"{fn.name} takes {fn.nargs} arguments, got {len(args)}")
            return add(("python", fn.name, args), Node(args=args, name=fn.name, fn=fn))
        if e.fn not in primitives.PRIMITIVES:
            raise GraphError(f"unknown function '{e.fn}'")
        prim = primitives.get(e.fn)
        if prim.nargs is not None and len(args) != prim.nargs:
            raise GraphError(f"{e.fn} takes {prim.nargs} arguments, got {len(args)}")
        return add((e.fn, args, e.params), Node(op=e.fn, args=args, params=e.params))

    output = walk(expr, {}, 0)
    needs = [False] * len(nodes)
    for i, n in enumerate(nodes):
        needs[i] = (n.op is None and n.fn is None and n.value is None) or any(needs[a] for a in n.args)
    return Graph(nodes, input_ids, output, needs)


# ---------------------------------------------------------------- evaluation


def _apply(node: Node, args):
    if node.fn is not None:
        return np.asarray(node.fn.forward(*args))
    return np.asarray(node.forward()(*args))


def evaluate(graph: Graph, values: dict, dtype=np.float64, apply=None) -> list:
    """Every node's primal value, inputs cast to ``dtype``.

    ``apply(node, args)``, when given, evaluates the user's Python functions
    instead of calling them as they are (second order carries tangents through them).
    """
    vals: list = [None] * len(graph.nodes)
    with np.errstate(all="ignore"):
        for i, node in enumerate(graph.nodes):
            if node.value is not None:
                vals[i] = node.value.astype(dtype)
            elif node.op is None and node.fn is None:
                vals[i] = np.asarray(values[node.name], dtype=dtype)
            else:
                vals[i] = (apply if apply is not None and node.fn is not None else _apply)(
                    node, [vals[a] for a in node.args])
    return vals


def output_scale(graph: Graph, vals: list) -> np.ndarray:
    """The size of the numbers each output element is computed from: |f(x)[o]|, or the
    largest value anywhere in the graph if larger (f = tanh(|x| - x) cancels to 0; the
    round-off of |x| - x does not)."""
    def finite_abs(v):
        v = np.abs(np.real(np.asarray(v)))
        return np.where(np.isfinite(v), v, 0.0)

    def largest(v):  # one pass where every value is finite (a NaN or inf makes the max so)
        top = np.abs(np.real(np.asarray(v))).max(initial=0.0)
        return top if np.isfinite(top) else finite_abs(v).max(initial=0.0)

    out = finite_abs(vals[graph.output]).ravel()
    return np.maximum(out, max((largest(v) for v in vals), default=0.0))


def unbroadcast(g, shape):
    """Sum a cotangent that was broadcast back down to ``shape``."""
    g = np.asarray(g)
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _node_vjp(node: Node, g, ans, args) -> tuple:
    if node.fn is not None:
        out = node.fn.vjp(g, *args)
        out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    else:
        out = primitives.get(node.op).vjp(g, ans, *args, **node.kwargs)
    if len(out) != len(args):
        raise GraphError(f"the VJP of {node.name or node.op} gave {len(out)} cotangents for {len(args)} inputs")
    return out


def vjp(graph: Graph, vals: list, cotangent, node_vjp=None) -> dict:
    """Reverse mode: the cotangent of every input, given the output's cotangent.

    ``node_vjp(node, g, ans, args)``, when given, replaces the user's VJP rules
    (as ``apply`` does in ``evaluate``).
    """
    ct: list = [None] * len(graph.nodes)
    ct[graph.output] = np.asarray(cotangent, dtype=vals[graph.output].dtype)
    with np.errstate(all="ignore"):
        for i in range(len(graph.nodes) - 1, -1, -1):
            node, g = graph.nodes[i], ct[i]
            if g is None or not node.args:
                continue
            args = [vals[a] for a in node.args]
            rule = node_vjp if node_vjp is not None and node.fn is not None else _node_vjp
            for a, ga in zip(node.args, rule(node, g, vals[i], args)):
                if ga is None or not graph.needs[a]:
                    continue
                try:
                    ga = unbroadcast(ga, vals[a].shape)
                except ValueError:
                    raise GraphError(f"the VJP of {node.name or node.op} gave a cotangent of shape "
                                     f"{np.shape(ga)} for an input of shape {vals[a].shape}") from None
                ct[a] = ga if ct[a] is None else ct[a] + ga
    return {
        name: (ct[i] if ct[i] is not None else np.zeros_like(vals[i]))
        for name, i in graph.inputs.items()
    }


def vjp_rows(graph: Graph, vals: list, cotangents) -> dict:
    """Reverse mode for a batch of output cotangents, one per row of ``cotangents``
    (B, output size): {input name: (B, input size)}.

    gradrun's own VJP rules are linear in the cotangent and IEEE rounding is
    symmetric under a change of sign, so on a transparent graph a row that is
    another's negation costs no pass of its own: its VJP is the negated one, the
    same numbers (a zero may differ in sign, where a rule subtracts equal terms);
    the sign directions of a scalar output take one pass, not one each. A
    user's VJP is not assumed linear: there every row gets its own pass.
    """
    out_shape = vals[graph.output].shape
    passes, ran = [], {}  # the VJPs run; a row's bytes in canonical sign -> (its pass, the sign it ran with)
    which, flip = [], []
    for b, row in enumerate(np.asarray(cotangents)):
        sign, key = 1.0, b
        if graph.transparent:
            nonzero = np.flatnonzero(row)
            sign = -1.0 if len(nonzero) and row[nonzero[0]] < 0 else 1.0
            key = (sign * row).tobytes()
        if key not in ran:
            ran[key] = len(passes), sign
            passes.append(vjp(graph, vals, row.reshape(out_shape)))
        which.append(ran[key][0])
        flip.append(1.0 if sign == ran[key][1] else -1.0)
    result = {}
    for name in graph.inputs:
        done = np.stack([np.ravel(p[name]) for p in passes])
        result[name] = done[which] * np.array(flip, dtype=done.dtype)[:, None]  # -1 * x is -x, exactly
    return result


def jvp(graph: Graph, vals: list, tangents: dict):
    """Forward mode: the output's tangent, given a tangent for some inputs."""
    tan: list = [None] * len(graph.nodes)
    for name, t in tangents.items():
        i = graph.inputs[name]
        tan[i] = np.asarray(t, dtype=vals[i].dtype).reshape(vals[i].shape)
    with np.errstate(all="ignore"):
        for i, node in enumerate(graph.nodes):
            if not node.args or all(tan[a] is None for a in node.args):
                continue
            args = [vals[a] for a in node.args]
            ts = [tan[a] for a in node.args]
            if node.fn is not None:
                full = [t if t is not None else np.zeros_like(v) for t, v in zip(ts, args)]
                tan[i] = np.asarray(node.fn.jvp(tuple(full), *args))
            else:
                tan[i] = np.asarray(primitives.get(node.op).jvp(tuple(ts), vals[i], *args, **node.kwargs))
            try:
                tan[i] = np.broadcast_to(tan[i], vals[i].shape)
            except ValueError:
                raise GraphError(f"the JVP of {node.name or node.op} gave a tangent of shape "
                                 f"{np.shape(tan[i])} for an output of shape {vals[i].shape}") from None
    out = tan[graph.output]
    return np.zeros_like(vals[graph.output]) if out is None else out


def jacobian(graph: Graph, vals: list, wrt) -> dict:
    """The full Jacobian of the output by reverse mode: name -> (output size, input size)."""
    out = vals[graph.output]
    m = out.size
    jac = {name: np.zeros((m, vals[graph.inputs[name]].size), dtype=out.dtype) for name in wrt}
    for k in range(m):
        seed = np.zeros(m, dtype=out.dtype)
        seed[k] = 1
        grads = vjp(graph, vals, seed.reshape(out.shape))
        for name in wrt:
            jac[name][k] = grads[name].ravel()
    return jac


def jacobian_forward(graph: Graph, vals: list, wrt) -> dict:
    """The full Jacobian by forward mode, one JVP per input element."""
    return {name: forward_columns(graph, vals, name, range(vals[graph.inputs[name]].size)) for name in wrt}


def forward_columns(graph: Graph, vals: list, name: str, columns) -> np.ndarray:
    """Jacobian columns of one input by forward mode, one JVP per column: (M, len(columns))."""
    out = vals[graph.output]
    x = vals[graph.inputs[name]]
    box = graph.nodes[graph.output]
    if box.fn is not None and box.fn.jvp_batch is not None and not any(graph.nodes[a].args for a in box.args):
        return _batched_columns(graph, vals, name, columns)
    cols = np.zeros((out.size, len(columns)), dtype=out.dtype)
    for p, j in enumerate(columns):
        t = np.zeros(x.size, dtype=x.dtype)
        t[j] = 1
        cols[:, p] = jvp(graph, vals, {name: t.reshape(x.shape)}).ravel()
    return cols


def _batched_columns(graph: Graph, vals: list, name: str, columns) -> np.ndarray:
    """Forward columns of a black box applied to the inputs themselves, a chunk of
    one-hot tangents per ``jvp_batch`` call (as ``forward_batch`` takes perturbations)."""
    box, i = graph.nodes[graph.output], graph.inputs[name]
    x, out = vals[i], vals[graph.output]
    args = [vals[a] for a in box.args]
    columns = np.asarray(columns, dtype=np.int64)
    cols = np.zeros((out.size, len(columns)), dtype=out.dtype)
    chunk = batch_rows(x.size)
    for start in range(0, len(columns), chunk):
        at = columns[start:start + chunk]
        if box.fn.jvp_basis is not None:  # the function builds the one-hot tangents itself
            block = box.fn.jvp_basis(tuple(k for k, a in enumerate(box.args) if a == i), at, *args)
        else:
            basis = np.zeros((len(at), x.size), dtype=x.dtype)
            basis[np.arange(len(at)), at] = 1
            block = box.fn.jvp_batch([basis.reshape((len(at),) + x.shape) if a == i else None for a in box.args], *args)
        cols[:, start:start + len(at)] = np.asarray(block).reshape(len(at), -1).T
    return cols


# ------------------------------------------------------- batched perturbations
#
# A perturbed node is None (unmoved), Sparse or Dense. Both store deltas: the
# perturbed value minus the primal value, one row per perturbation in the
# batch. Sparse rows list the flat positions that moved (the same count in
# every row, possibly repeated, repeats adding up); Dense rows hold the whole
# array.


@dataclass
class Sparse:
    idx: np.ndarray  # (B, K) flat positions
    delta: np.ndarray  # (B, K)
    unique: bool = True  # no position repeats within a row


@dataclass
class Dense:
    delta: np.ndarray  # (B, *shape)


@lru_cache(maxsize=256)
def _spread(shape: tuple, out_shape: tuple):
    """For broadcasting ``shape`` to ``out_shape``: the source of every output
    position, and the output positions every source element reaches."""
    size = int(np.prod(shape, dtype=np.int64))
    source = np.broadcast_to(np.arange(size).reshape(shape), out_shape).ravel()
    reach = np.argsort(source, kind="stable").reshape(size, -1)
    return source, reach


@lru_cache(maxsize=256)
def _moved(shape: tuple, axes=None):
    """For a transpose of ``shape`` (by ``axes``, default reversed): where each flat input position goes."""
    size = int(np.prod(shape, dtype=np.int64))
    return np.argsort(np.arange(size).reshape(shape).transpose(axes).ravel(), kind="stable")


def _densify(p, shape, batch):
    if p is None or isinstance(p, Dense):
        return p
    size = int(np.prod(shape, dtype=np.int64))
    out = np.zeros((batch, size), dtype=p.delta.dtype)
    rows = np.broadcast_to(np.arange(batch)[:, None], p.idx.shape)
    np.add.at(out, (rows, p.idx), p.delta)
    return Dense(out.reshape((batch,) + tuple(shape)))


def _coalesce(p: Sparse) -> Optional[Sparse]:
    """Merge repeated positions in every row; None when rows would differ in length."""
    if p.unique:
        return p
    order = np.argsort(p.idx, axis=1, kind="stable")
    idx = np.take_along_axis(p.idx, order, axis=1)
    delta = np.take_along_axis(p.delta, order, axis=1)
    first = np.ones(idx.shape, dtype=bool)
    first[:, 1:] = idx[:, 1:] != idx[:, :-1]
    counts = first.sum(axis=1)
    if not np.all(counts == counts[0]):
        return None
    starts = np.flatnonzero(first.ravel())
    summed = np.add.reduceat(delta.ravel(), starts).reshape(len(idx), -1)
    return Sparse(idx.ravel()[starts].reshape(len(idx), -1), summed, True)


INFINITESIMAL = 1e-12  # an imaginary step this small moves f linearly (auto complex steps are ~1e-20)


@dataclass(frozen=True)
class Motion:
    """How a delta moves a value: a real step, or an imaginary one (complex
    step), whose deltas are carried as their real imaginary parts so that
    linear ops stay in real arithmetic.

    An infinitesimal imaginary step d moves f(a) by exactly d * Im f(a + ih) / h
    for any other infinitesimal h (the complex step has no truncation error
    left at that size), so ``slopes`` measures Im f(a + ih) / h once per value
    of a one-argument op's argument and every perturbation reuses it. The
    slope comes from evaluating the forward function at a complex point, never
    from the op's derivative rule.
    """

    imaginary: bool = False
    cache: dict = field(default_factory=dict)

    def infinitesimal(self, d) -> bool:
        return self.imaginary and float(np.max(np.abs(d), initial=0.0)) <= INFINITESIMAL

    def slopes(self, i, forward, a):
        """Im f(a + ih) / h for every element of the argument a of node i (cached)."""
        if i not in self.cache:
            h = 1e-20 * np.maximum(1.0, np.abs(a))
            self.cache[i] = np.imag(forward(a + 1j * h)).ravel() / h.ravel()
        return self.cache[i]

    def lift(self, x, d):
        return x + 1j * d if self.imaginary else x + d

    def change(self, new, old):
        return np.imag(new) if self.imaginary else new - old


BRANCH_PROBE = 1e-7  # relative size of the real steps that stand in for an imaginary one at a branch


def _probes(motion, new):
    """The moved arguments a branch is looked at with: the real moves themselves, or, for an
    imaginary step (which never moves a branch), real neighbours on both sides of it."""
    if not motion.imaginary:
        return [new]
    return [[n if not np.iscomplexobj(n) else
             np.real(n) + side * BRANCH_PROBE * np.maximum(1.0, np.abs(np.real(n))) * np.sign(np.imag(n))
             for n in new] for side in (1, -1)]


def _branch_rows(prim, params, base, new, batch, motion):
    """Rows whose perturbation changes, or starts on the edge of, the discrete choice a primitive
    makes (a mask, an argmax): a kink reached or crossed."""
    before = np.asarray(prim.branch(*base, **params))
    hit = np.zeros(batch, dtype=bool)
    for moved in _probes(motion, new):
        after = np.asarray(prim.branch(*moved, **params))
        changed = np.broadcast_to(after != before, np.broadcast_shapes(after.shape, before.shape))
        hit |= changed.reshape(batch, -1).any(axis=1)
    return hit


def _kink_rows(prim, x_base, x_new, moved):
    """Rows whose perturbation reaches or crosses a point where ``prim`` has a kink."""
    hit = np.zeros(moved.shape[0], dtype=bool)
    for k in prim.kinks:
        side = (np.real(x_base) - k) * (np.real(x_new) - k) <= 0
        hit |= (side & moved).reshape(len(hit), -1).any(axis=1)
    return hit


def _elementwise_sparse(prim, node, i, vals, ps, batch, motion):
    """An elementwise op on sparse deltas; None when it must go dense."""
    out_shape = vals[i].shape
    moved = [k for k, p in enumerate(ps) if p is not None]
    spread = [_spread(vals[a].shape, out_shape) for a in node.args]
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
    base = [vals[a].ravel()[out_idx if vals[a].shape == out_shape else spread[k][0][out_idx]]
            for k, a in enumerate(node.args)]
    kink = np.zeros(batch, dtype=bool)
    forward = node.forward()
    if prim.additive:
        delta = forward(*[reps.get(k, 0) for k in range(len(node.args))])
    elif len(moved) == 1 and moved[0] in prim.linear_in:
        delta = forward(*[reps[k] if k in reps else base[k] for k in range(len(base))])
    elif len(base) == 1 and motion.infinitesimal(reps[0]):
        delta = motion.slopes(i, forward, vals[node.args[0]])[out_idx] * reps[0]
        if prim.kinks:
            kink = _kink_rows(prim, base[0], base[0], reps[0] != 0)
    else:
        if not unique:
            return None
        new = [motion.lift(base[k], reps[k]) if k in reps else base[k] for k in range(len(base))]
        delta = motion.change(forward(*new), vals[i].ravel()[out_idx])
        if prim.kinks:
            kink = _kink_rows(prim, base[moved[0]], new[moved[0]], reps[moved[0]] != 0)
    if prim.branch is not None:
        new = [motion.lift(base[k], reps[k]) if k in reps else base[k] for k in range(len(base))]
        kink |= _branch_rows(prim, node.kwargs, base, new, batch, motion)
    return Sparse(out_idx, np.broadcast_to(delta, out_idx.shape), unique), kink


def _matmul_sparse(node, i, vals, ps, batch):
    a, b = (vals[k] for k in node.args)
    if a.ndim != 2 or b.ndim != 2 or (ps[0] is not None and ps[1] is not None):
        return None
    n, k = a.shape
    m = b.shape[1]
    if ps[0] is not None:
        p = ps[0]
        r, c = np.divmod(p.idx, k)
        idx = (r * m)[:, :, None] + np.arange(m)
        delta = p.delta[:, :, None] * b[c]
    else:
        p = ps[1]
        r, c = np.divmod(p.idx, m)
        idx = (np.arange(n) * m)[None, None, :] + c[:, :, None]
        delta = p.delta[:, :, None] * a.T[r]
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
    if kind == "matmul":
        return _matmul_sparse(node, i, vals, ps, batch)
    if kind == "reduce":
        p = ps[0]
        delta = p.delta.sum(axis=1, keepdims=True) * _weight(node, vals[node.args[0]].shape)
        return Sparse(np.zeros((batch, 1), dtype=np.int64), delta), None
    if kind == "transpose":
        p = ps[0]
        axes = node.kwargs.get("axes")
        return Sparse(_moved(vals[node.args[0]].shape, axes)[p.idx], p.delta, p.unique), None
    if kind == "reshape":  # flat C-order positions stay where they are
        return ps[0], None
    return None


def _pad(d, ndim):
    """A batched delta (B, *shape) reshaped to broadcast against ndim-dimensional arrays."""
    return d.reshape((d.shape[0],) + (1,) * (ndim - (d.ndim - 1)) + d.shape[1:])


def _batched_matmul(operands, batched, primals, out_shape):
    """numpy's matmul of operands some of which carry a leading batch axis."""
    a_nd, b_nd = primals[0].ndim, primals[1].ndim
    lifted = [operands[0][..., None, :] if a_nd == 1 else operands[0],
              operands[1][..., :, None] if b_nd == 1 else operands[1]]
    nd = max(a_nd, b_nd, 2)
    for k in range(2):
        if batched[k]:
            x = lifted[k]
            lifted[k] = x.reshape((x.shape[0],) + (1,) * (nd + 1 - x.ndim) + x.shape[1:])
    product = np.matmul(lifted[0], lifted[1])
    return product.reshape((len(product),) + tuple(out_shape))


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
        called = [work[k] if k in flat else x for k, x in enumerate(args)]
        rows = np.empty((batch, vals[i].size), dtype=dtype or vals[i].dtype)
        for b in range(batch):
            for k in moved:
                flat[k][ps[k].idx[b]] = new[k][b]
            rows[b] = np.asarray(node.fn.forward(*called)).ravel()
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
            moved = [x if d is None else motion.lift(x, d[b]) for x, d in zip(args, ds)]
            rows.append(motion.change(np.asarray(node.fn.forward(*moved)), out))
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
    if kind == "matmul":
        linear = (ds[0] is None) != (ds[1] is None)  # then the product of delta and the other is the delta
        new = [x if d is None else d for d, x in zip(ds, args)] if linear else lifted()
        product = _batched_matmul(new, [d is not None for d in ds], args, out.shape)
        return Dense(product if linear else motion.change(product, out)), kink
    settings = prim.settings(node.params)
    moved = [(x, False) if d is None else (m, True) for x, d, m in zip(args, ds, lifted())]
    if prim.branch is not None:
        before = np.asarray(prim.branch(*args, **settings))
        for probe in _probes(motion, [m for m, _ in moved]):
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
            kink = _kink_rows(prim, base, base, ds[0] != 0)
    else:
        news = moved()
        delta = motion.change(forward(*news), out)
        if prim.kinks:
            k = next(j for j, d in enumerate(ds) if d is not None)
            kink = _kink_rows(prim, _pad(np.broadcast_to(args[k], ds[k].shape), nd), news[k], padded[k] != 0)
    if prim.branch is not None:
        kink |= _branch_rows(prim, node.kwargs, args, moved() if news is None else news, batch, motion)
    return Dense(np.broadcast_to(delta, (batch,) + out.shape).copy()), kink


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


def perturb_along(graph: Graph, vals: list, name: str, directions, imaginary=False):
    """Move the whole input ``name`` by ``directions[b]`` (shape (B, *input shape)); as ``perturb``.

    ``imaginary=True`` takes real directions as the imaginary parts of a complex
    step's (the complex array they would make is never built)."""
    directions = np.asarray(directions)
    motion = Motion(imaginary or np.iscomplexobj(directions))
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
                    merged = [None if p is None else _coalesce(p) for p in ps]
                    if all((p is None) == (q is None) for p, q in zip(merged, ps)):
                        step = _sparse_step(node, i, vals, merged, batch, motion)
            if step is None:
                dense = [_densify(p, vals[a].shape, batch) for p, a in zip(ps, node.args)]
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
        flat = _densify(out, vals[graph.output].shape, batch).delta.reshape(batch, size)
    return (1j * flat if motion.imaginary else flat), kink, max(width, size)
