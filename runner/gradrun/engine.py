"""The gradient engine's public face: one import for the graph and its walkers.

The engine knows no primitive by name: it asks the table (``gradrun.primitives``)
for each op's ``kind`` and rules. Its parts, one concern each:

- ``gradrun.graph``: ``build`` a ``Graph`` (nodes in evaluation order) and ``evaluate`` it;
- ``gradrun.reverse``: reverse mode, ``vjp``, ``vjp_rows``, ``jacobian``;
- ``gradrun.forward_mode``: forward mode, ``jvp``, ``forward_columns``, ``jacobian_forward``;
- ``gradrun.perturb`` (with ``gradrun.motion``): batched perturbations for
  finite differences, ``perturb`` and ``perturb_along``, and the memory caps.

``from gradrun import engine; engine.vjp(...)`` keeps working for all of them.
"""

from __future__ import annotations

from . import primitives  # noqa: F401  (engine.primitives, as callers have read it)
from .forward_mode import forward_columns, jacobian_forward, jvp
from .graph import Graph, GraphError, Node, build, evaluate, output_scale
from .motion import INFINITESIMAL, Dense, Motion, Sparse
from .perturb import (BATCH_CAP, BATCH_ROWS, MEMORY_CAP, WORKING_MEMORY_CAP, batch_rows, perturb,
                      perturb_along)
from .reverse import jacobian, unbroadcast, vjp, vjp_rows

__all__ = [
    "Graph", "GraphError", "Node", "build", "evaluate", "output_scale",
    "vjp", "vjp_rows", "jacobian", "unbroadcast",
    "jvp", "forward_columns", "jacobian_forward",
    "perturb", "perturb_along", "Motion", "Sparse", "Dense", "INFINITESIMAL",
    "MEMORY_CAP", "WORKING_MEMORY_CAP", "BATCH_CAP", "BATCH_ROWS", "batch_rows",
]
