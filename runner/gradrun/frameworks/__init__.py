"""Adapters for code written in a framework (``torch:``, ``jax:`` functions).

Each framework lives behind one small module here, imported only when a spec
names that kind of function; the rest of gradrun sees a ``PythonFunction``
(forward on float64 numpy arrays, VJP, optional JVP and ``forward_batch``).
"""
