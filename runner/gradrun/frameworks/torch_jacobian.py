"""Forward mode for torch code: JVPs by ``torch.func.jvp``, many per call.

gradrun's cross-check of forward against reverse mode asks for one JVP per
input element, each along a one-hot tangent, at the same primal point. When
the code is the whole graph the engine asks for a chunk of them at once
(``batch``: one ``vmap`` of ``jvp`` over the chunk's tangents; ``basis``: the
same, told only which element each row's one-hot tangent moves). Otherwise it
asks one at a time (``apply``): the first JVP at a point that moves an input
then computes that input's forward-mode Jacobian by ``vmap`` of ``jvp`` over
basis tangents (what ``torch.func.jacfwd`` does), in chunks, and every JVP at
that point is those Jacobians times its tangents. A point is the same point in
other arrays of the same values (second order asks at the real parts of its
dual numbers, new arrays every time). Where vmap cannot run the code, or the Jacobian
would be too large, every JVP is one ``torch.func.jvp`` call; where the code
has no forward mode at all, JVPs come from reverse mode and a note says the
two were not cross-checked.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import jvp, vmap

MAX_ENTRIES = 1 << 22  # the largest Jacobian kept (32 MiB in float64)
CHUNK_ELEMENTS = 1 << 20  # tangent elements per vmapped chunk


class ForwardJacobian:
    """JVPs of one TorchCode, the Jacobian of the last primal point kept."""

    def __init__(self, code):
        self.code = code
        self.primals = None  # the arrays of the kept point (held, so their ids stay theirs)
        self.copies = None  # and their values then: the same point in other arrays is the same point
        self.columns = None  # input position -> (M, size) forward-mode Jacobian, made when first asked
        self.batched = True
        self.vmappable = True  # for batch(): False once vmap of jvp has failed
        self.onehot = None  # basis(): the working batch of one-hot tangents

    def apply(self, tangents, arrays) -> np.ndarray:
        """The output tangent for ``tangents`` (one per input) at ``arrays``."""
        if self.batched and not self._kept(arrays):
            self._keep(arrays)
        if not self.batched:
            return self._one(tangents, arrays)
        out = None
        for k, t in enumerate(tangents):
            t = np.asarray(t).ravel()
            if not t.any():
                continue
            block = self._block(k)
            if block is None:  # vmap cannot run the code: one call each from now on
                return self._one(tangents, arrays)
            hit = np.flatnonzero(t)
            column = block[:, hit[0]] * t[hit[0]] if len(hit) == 1 else block @ t
            out = column if out is None else out + column
        return (np.zeros(self.shape, dtype=self.dtype) if out is None else out).reshape(self.shape)

    def batch(self, tangents, arrays) -> np.ndarray:
        """JVPs along a chunk of tangents ((B, *shape) per input, None where it does not move):
        one vmap of torch.func.jvp, else one JVP per row (as ``apply``)."""
        if self.vmappable:
            try:
                return self._vmapped(tangents, arrays)
            except Exception:  # apply() finds out what does work, and notes it
                self.vmappable = False
        batch = len(next(t for t in tangents if t is not None))
        zeros = [np.zeros(np.shape(a), dtype=np.asarray(a).dtype) for a in arrays]
        return np.stack([self.apply([z if t is None else t[b] for t, z in zip(tangents, zeros)], arrays)
                         for b in range(batch)])

    def basis(self, moving, at, arrays) -> np.ndarray:
        """JVPs along one-hot tangents: row b's is 1 at flat position ``at[b]`` of each argument
        in ``moving`` (the positions of one input), 0 elsewhere. The rows are a working batch
        kept between calls, ones set and then put back to zero, not built per chunk."""
        at = np.asarray(at, dtype=np.int64)
        like = np.asarray(arrays[moving[0]])
        if self.vmappable:
            work = self._onehot(like, len(at))
            rows = (torch.arange(len(at), device=work.device), torch.from_numpy(at).to(work.device))
            work[rows] = 1
            version = work._version
            try:
                return self._vmapped_tensors({k: work.view(len(at), *like.shape) for k in moving}, arrays)
            except Exception:  # batch() finds out what does work, and notes it
                self.vmappable = False
            finally:
                if work._version == version:
                    work[rows] = 0
                else:  # the code wrote into its tangent: a fresh batch next time
                    self.onehot = None
        dense = np.zeros((len(at), like.size), dtype=like.dtype)
        dense[np.arange(len(at)), at] = 1
        return self.batch([dense.reshape((len(at),) + like.shape) if k in moving else None
                           for k in range(len(arrays))], arrays)

    def _onehot(self, like, batch):
        """The working batch of one-hot tangents for an input like ``like``, (batch, size), all zero."""
        kept = self.onehot
        if kept is None or kept.shape[1] != like.size or len(kept) < batch or kept.dtype != self._dtype(like):
            kept = self.onehot = self.code.tensors([np.zeros((batch, like.size), dtype=like.dtype)])[0]
        return kept[:batch]

    def _dtype(self, like):
        return self.code.tensors([np.zeros(0, dtype=like.dtype)])[0].dtype

    def _vmapped(self, tangents, arrays) -> np.ndarray:
        # the tangents are the engine's per-chunk temporaries, only read: wrapped, not copied
        return self._vmapped_tensors({k: torch.from_numpy(np.ascontiguousarray(t)) for k, t in enumerate(tangents)
                                      if t is not None}, arrays)

    def _vmapped_tensors(self, tangents: dict, arrays) -> np.ndarray:
        """One vmap of torch.func.jvp over batched tangents (argument position -> (B, *shape))."""
        primals = tuple(self.code.tensors(arrays))
        if self.code.module is not None and primals:  # the twin built outside vmap, which forbids it
            self.code.twin(primals[0].dtype)
        moving = list(tangents)
        f = self._function(primals)

        def along(*moved):
            full = [torch.zeros_like(p) for p in primals]
            for k, t in zip(moving, moved):
                full[k] = t
            return jvp(f, primals, tuple(full))[1]

        batched = [tangents[k].to(primals[k].device, primals[k].dtype) for k in moving]
        return vmap(along, randomness="same")(*batched).detach().cpu().numpy()

    def _kept(self, arrays) -> bool:
        """Whether ``arrays`` are the kept point: the same arrays, or arrays of the same values
        (second order asks at the real parts of its dual numbers, new arrays every time)."""
        return self.primals is not None and len(arrays) == len(self.primals) and all(
            a is b or (np.asarray(a).dtype == c.dtype and np.array_equal(a, c))
            for a, b, c in zip(arrays, self.primals, self.copies))

    def _keep(self, arrays):
        """Keep the point ``arrays`` (or decide to go call by call); its forward-mode Jacobian
        is made an input at a time, for the inputs a tangent moves (``_block``)."""
        primals = self.code.tensors(arrays)
        with torch.no_grad():
            out = self.code.apply(primals)
        if out.numel() * sum(int(p.numel()) for p in primals) > MAX_ENTRIES:
            self.batched = False
            return
        self.primals, self.tensors, self.shape, self.columns = tuple(arrays), primals, tuple(out.shape), {}
        self.copies = tuple(np.array(a) for a in arrays)
        self.dtype = _numpy_dtype(out)

    def _block(self, k):
        """The kept point's forward-mode Jacobian of input k, (M, size); None where vmap
        cannot run the code and JVPs go one call each."""
        if k not in self.columns:
            try:
                self.columns[k] = self._columns(self.tensors, k)
            except Exception as e:
                columns = self._without_vmap(self.primals, self.tensors, e)
                if columns is None:
                    self.primals = None
                    return None
                self.columns = dict(enumerate(columns))
        return self.columns[k]

    def _without_vmap(self, arrays, primals, error):
        """vmap failed: one torch.func.jvp per call if forward AD works at all, else reverse mode (noted)."""
        try:
            self._one([np.zeros(np.shape(a), dtype=np.asarray(a).dtype) for a in arrays], arrays)
        except Exception as e:  # no forward mode: JVPs from the reverse-mode Jacobian
            self.code.note(f"no forward-mode AD ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                           "its JVPs come from reverse mode, so forward and reverse mode are not cross-checked")
            return self._reverse(arrays)
        self.batched = False
        self.code.note(f"forward-mode columns one torch.func.jvp call each (vmap failed: {type(error).__name__})")
        return None

    def _reverse(self, arrays) -> list:
        """The Jacobian by one VJP per output element, as columns per input."""
        out = self.code.evaluate(arrays)
        rows = []
        for k in range(out.size):
            seed = np.zeros(out.size, dtype=out.dtype)
            seed[k] = 1
            rows.append([np.asarray(g).ravel() for g in self.code.vjp(seed.reshape(out.shape), *arrays)])
        return [np.array([r[j] for r in rows]).reshape(out.size, -1) for j in range(len(arrays))]

    def _function(self, primals):
        def f(*xs):
            return self.code.apply(list(xs))

        return f

    def _columns(self, primals, k) -> np.ndarray:
        """(M, size of input k): JVPs along every basis tangent of input k, in vmapped chunks."""
        x = primals[k]
        n = int(x.numel())
        f = self._function(primals)

        def along(t):
            tangents = tuple(t.reshape(x.shape) if j == k else torch.zeros_like(p) for j, p in enumerate(primals))
            return jvp(f, tuple(primals), tangents)[1]

        chunk = max(1, CHUNK_ELEMENTS // max(n, 1))
        parts = []
        for start in range(0, n, chunk):
            basis = torch.zeros((min(chunk, n - start), n), dtype=x.dtype, device=x.device)
            basis[torch.arange(len(basis)), torch.arange(start, start + len(basis))] = 1
            parts.append(vmap(along, randomness="same")(basis).reshape(len(basis), -1))
        cols = torch.cat(parts) if parts else torch.zeros((0, 1), dtype=x.dtype)
        return cols.detach().cpu().numpy().T

    def _one(self, tangents, arrays) -> np.ndarray:
        """One JVP by one torch.func.jvp call."""
        primals = self.code.tensors(arrays)
        ts = self.code.tensors(tangents)
        _, out = jvp(self._function(primals), tuple(primals), tuple(ts))
        return out.detach().cpu().numpy()


def _numpy_dtype(t):
    return t.detach().cpu().numpy().dtype
