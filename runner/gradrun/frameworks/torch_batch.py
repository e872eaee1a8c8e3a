"""Many perturbations of torch code per call: ``torch.func.vmap`` over the code.

The engine asks a batched black box for a chunk of perturbed points in one of
two ways. ``forward_moved(args, moved)`` says which flat positions of which
argument row b moves, and to what; ``BatchedForward.moved`` writes them into a
working batch kept in torch between calls (the input repeated once per row),
calls the code, and puts the primal values back: a row costs what the code
reads, not a fresh copy of the input. ``forward_batch(*stacked)`` hands over
every argument with a leading batch axis, built by the engine
(``BatchedForward.__call__``).

Either way the chunk is one vmapped call (over ``functional_call`` for
modules, the module's buffers batched too so in-place updates stay per row,
``randomness="same"`` so train-mode dropout repeats). The first chunk is
compared with single calls at its first and last rows; where vmap fails or
disagrees, every perturbation is one call, and the experiment's notes say so.
Code that writes into its inputs in place writes into the working batch:
torch's version counter shows it, and the batch is rebuilt for the next call.
Two calls may run at once, from two threads (``numeric.stacking``): each
takes a working set of its own (and ``TorchCode.borrowed`` a module copy).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import vmap

from .. import perturb
from .torch_code import TORCH_DTYPES, Spares, eps_of, gap, numpy_of, scale_of

# how far one vmapped row may sit from the same point evaluated alone, in eps of the output's scale
VMAP_AGREEMENT = 64
# A chunk's rows (``BatchedForward.rows``). The moved input's working batch is kept between
# calls, so it may be larger than the engine's chunk (perturb.BATCH_CAP), spreading a call's
# fixed cost (vmap's and the module's Python, about 0.2 ms) over more rows; what a call
# allocates is bounded instead, from one call measured at the first point: its largest tensor
# times the rows stays under glibc's largest mmap threshold (32 MiB), so it comes from the
# heap, not from pages mapped fresh and faulted in on every call, and all it allocates stays
# near the cache (on the ~15k-parameter MLP of bench_torch.py, 32 MiB of working batch took
# 0.33 s of CPU where 16 MiB took 0.40; on the transformer block, 16 MiB of allocations per
# call 1.30 s, 8 MiB 1.36 s, 4 MiB 1.71 s).
WORKING_BATCH_BYTES = 32 * 2**20
ALLOCATION_BYTES = 24 * 2**20
CALL_BYTES = 16 * 2**20


class BatchedForward:
    """Chunks of perturbations of one TorchCode: vmap, else one call per perturbation."""

    def __init__(self, code):
        self.code = code
        self.batched = None  # None: vmap not tried yet; then True or False
        # working sets, each argument position -> (primal array, its working batch): one per
        # call running at once (calls from two threads each write their rows)
        self.working = Spares(dict)

    def rows(self, size: int, args) -> int:
        """Rows of a chunk that moves an input of ``size`` elements at the point ``args``: as
        many as the working batch (float64), the largest allocation of a call and all a call
        allocates (measured at ``args``) allow, at most ``perturb.BATCH_ROWS``; the engine's
        default where the allocations cannot be told."""
        largest, allocated = self.code.allocations(args)
        if not largest:
            return perturb.batch_rows(size)
        return max(1, min(perturb.BATCH_ROWS, WORKING_BATCH_BYTES // (8 * max(size, 1)),
                          ALLOCATION_BYTES // largest, CALL_BYTES // allocated))

    def __call__(self, *stacked) -> np.ndarray:
        """``forward_batch``: every argument with a leading batch axis, (B, *output shape) out."""
        return self._rows(lambda: self._stacked_tensors(stacked), lambda b: [a[b] for a in stacked],
                          len(stacked[0]))

    def moved(self, args, moved) -> np.ndarray:
        """``forward_moved``: row b is ``args`` with, for every ``k: (idx, values)`` of
        ``moved``, argument k's flat positions ``idx[b]`` set to ``values[b]``."""
        with self.working.lent() as working:
            return self._moved(working, args, moved)

    def _moved(self, working, args, moved) -> np.ndarray:
        batch = len(next(iter(moved.values()))[0])
        placed = {}
        for k in set(working) - set(moved):  # one input's working batch at a time
            del working[k]

        def tensors():
            out, dims = [], []
            for k, a in enumerate(args):
                if k in moved:
                    placed[k] = self._place(working, k, np.asarray(a), *moved[k])
                    out.append(placed[k][0])
                else:
                    out += self.code.tensors([a])
                dims.append(0 if k in moved else None)
            return out, dims

        def point(b):
            row = [np.array(a) if k in moved else a for k, a in enumerate(args)]
            for k, (idx, values) in moved.items():
                row[k].reshape(-1)[idx[b]] = values[b]
            return row

        try:
            return self._rows(tensors, point, batch)
        finally:
            for k, (work, where, version) in placed.items():
                self._restore(working, k, work, where, version)

    # -- one chunk

    def _rows(self, tensors, point, batch) -> np.ndarray:
        """The chunk by one vmapped call where vmap works and agrees, else one call per row."""
        if self.batched is not False:
            try:
                rows = self._vmapped(*tensors(), batch)
            except Exception as e:  # vmap cannot run this code: say so, then go one by one
                self._give_up(f"torch.func.vmap failed ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
            else:
                if self.batched is None:
                    self._confirm(point, rows)
                if self.batched:
                    return rows
        return np.stack([self.code.evaluate(point(b)) for b in range(batch)])

    def _vmapped(self, tensors, dims, batch) -> np.ndarray:
        code = self.code
        n = len(tensors)
        if code.module is not None:  # buffers batched too, so in-place updates stay per row
            _, kept = code.twin(code.working_dtype(tensors))
            tensors = tensors + [b.expand(batch, *b.shape).clone() for b in kept]
            dims = dims + [0] * len(kept)

        # only the batched tensors go through vmap's argument handling (its fixed cost grows
        # with the arguments); the others are closed over, which vmap treats as unbatched
        moving = [k for k, d in enumerate(dims) if d is not None]

        def one(*moved):  # the values alone: a Function's own forward (see TorchCode.apply)
            row = list(tensors)
            for k, t in zip(moving, moved):
                row[k] = t
            return code.apply(row[:n], row[n:] if code.module is not None else None, forward_only=True)

        with torch.no_grad():
            return numpy_of(vmap(one, randomness="same")(*[tensors[k] for k in moving]))

    def _stacked_tensors(self, stacked) -> tuple:
        """Tensors of a chunk's arguments and their vmap in_dims: an argument that is the
        same in every row (a stride-0 view) is passed once; the engine's own per-chunk
        arrays, temporaries it never reads again, are wrapped rather than copied."""
        tensors, dims = [], []
        for a in stacked:
            a = np.asarray(a)
            if a.strides[:1] == (0,):
                tensors += self.code.tensors([a[0]])
                dims.append(None)
                continue
            fresh = a.flags.owndata and a.flags.writeable and a.flags.c_contiguous and a.dtype in TORCH_DTYPES
            t = torch.from_numpy(a).to(self.code.device) if fresh else self.code.tensors([a])[0]
            tensors.append(t)
            dims.append(0)
        return tensors, dims

    def _confirm(self, point, rows):
        """vmap's first and last rows must be what one call gives at those points."""
        for b in {0, len(rows) - 1}:
            alone = self.code.evaluate(point(b))
            if gap(rows[b], alone) > VMAP_AGREEMENT * eps_of(alone) * scale_of(alone):
                self._give_up(f"torch.func.vmap disagreed with single calls by {gap(rows[b], alone):.3g}")
                return
        self.batched = True

    def _give_up(self, why):
        self.batched = False
        self.code.note(f"{why}; perturbations evaluated one call each")

    # -- the working batch of a moved argument

    def _place(self, working, k, primal, idx, values) -> tuple:
        """Argument k's working batch, (B, *shape), with row b's positions ``idx[b]`` set to
        ``values[b]``; and what ``_restore`` needs: (the batch, where it moved, its version)."""
        batch = len(idx)
        kept = working.get(k)
        if kept is None or kept[0] is not primal or len(kept[1]) < batch:
            base = self.code.tensors([primal])[0]
            kept = (primal, base.expand(batch, *base.shape).contiguous())
            working[k] = kept
        work = kept[1][:batch]
        flat = work.view(batch, -1)
        positions = torch.from_numpy(np.array(idx, dtype=np.int64)).to(flat.device)
        at = (torch.arange(batch, device=flat.device)[:, None].expand(idx.shape), positions)
        flat[at] = self._tensor(values, flat)
        return work, (at, idx), work._version

    def _restore(self, working, k, work, where, version):
        """Put the primal values back, or drop the working batch if the code wrote into it."""
        if work._version != version:  # an in-place op of the code: rebuilt at the next call
            working.pop(k, None)
            return
        (at, idx), primal = where, working[k][0]
        work.view(len(work), -1)[at] = self._tensor(np.asarray(primal).reshape(-1)[idx], work)

    def _tensor(self, values, like):
        """A small numpy array (positions' values) as a tensor of ``like``'s dtype and device."""
        return torch.from_numpy(np.array(values)).to(like.device, like.dtype)
