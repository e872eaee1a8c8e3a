"""Forward mode for torch code: JVPs by ``torch.func.jvp``, a point's columns in batches.

gradrun's cross-check of forward against reverse mode asks for one JVP per
input element, each with a one-hot tangent, at the same primal point. One
``torch.func.jvp`` call per element costs a Python round trip each; instead,
the first JVP at a point computes the whole forward-mode Jacobian by
``vmap`` of ``jvp`` over basis tangents (what ``torch.func.jacfwd`` does),
in chunks, and every JVP at that point is then that Jacobian times its
tangent. Where vmap cannot run the code, or the Jacobian would be too large,
every JVP is one ``torch.func.jvp`` call.
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
        self.columns = None  # input position -> (M, size) forward-mode Jacobian
        self.batched = True

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
            hit = np.flatnonzero(t)
            column = self.columns[k][:, hit[0]] * t[hit[0]] if len(hit) == 1 else self.columns[k] @ t
            out = column if out is None else out + column
        return (np.zeros(self.shape, dtype=self.dtype) if out is None else out).reshape(self.shape)

    def _kept(self, arrays) -> bool:
        return self.primals is not None and len(arrays) == len(self.primals) and all(
            a is b for a, b in zip(arrays, self.primals))

    def _keep(self, arrays):
        primals = self.code.tensors(arrays)
        out = self._function(primals)(*primals)
        size = sum(int(p.numel()) for p in primals)
        if out.numel() * size > MAX_ENTRIES:
            self.batched = False
            return
        try:
            self.columns = [self._columns(primals, k) for k in range(len(primals))]
        except Exception as e:  # vmap cannot run this code: one jvp per call
            self.batched = False
            self.code.notes.append(f"{self.code.name}: forward-mode columns one torch.func.jvp call each "
                                   f"(vmap failed: {type(e).__name__})")
            return
        self.primals, self.shape = tuple(arrays), tuple(out.shape)
        self.dtype = self.columns[0].dtype if self.columns else np.float64

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
        primals = self.code.tensors(arrays)
        ts = self.code.tensors(tangents)
        _, out = jvp(self._function(primals), tuple(primals), tuple(ts))
        return out.detach().cpu().numpy()
