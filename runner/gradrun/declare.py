"""Declared functions of a spec file: expression bodies, python: (with vjp/jvp/hvp), torch: and jax:.

``Declarations`` is the part of the resolver (``gradrun.resolve``) that reads the
``functions:`` mapping; code references go through ``gradrun.usercode`` and its policy.
"""

from __future__ import annotations

from . import primitives, tree, usercode
from .limits import MAX_FUNCTIONS
from .tree import ExprFunction, PythonFunction

_Problem = usercode.Refused  # a code reference the policy or the import refused


class Declarations:
    """Reads ``functions:`` into ``self.functions`` and ``self.arity``; a mixin of the resolver's checker."""

    def declare_functions(self, declared: dict):
        if len(declared) > MAX_FUNCTIONS:
            self.add(("functions",), f"{len(declared)} declared functions, more than {MAX_FUNCTIONS}",
                     "split the file", key=True)
            self.unusable.update(declared)
            return
        bodies = {}
        for name, decl in declared.items():
            path = ("functions", name)
            if not self.ok(*path):
                self.unusable.add(name)
            elif name in primitives.PRIMITIVES:
                self.add(path, f"function '{name}' has the name of a built-in", "choose another name", key=True)
            elif isinstance(decl, str):
                bodies[name] = (("x",), decl, path)
            elif "expr" in decl:
                bodies[name] = (tuple(decl.get("params", ["x"])), decl["expr"], path + ("expr",))
            else:
                kind = next((k for k in ("torch", "jax") if k in decl), "python")
                fn = {"torch": self.torch_function, "jax": self.jax_function,
                      "python": self.python_function}[kind](name, decl, path)
                if fn is not None:
                    self.functions[name] = fn
                    self.arity[name] = fn.nargs
                else:
                    self.unusable.add(name)
        for name, (params, _, _) in bodies.items():
            self.arity[name] = len(params)
        for name in self.unusable:
            self.arity[name] = None
        for name, (params, body, path) in bodies.items():
            parsed = self.expression(path, body, params) if params else None
            if not params:
                self.add(path[:2], f"function '{name}' has no parameters")
            if parsed is None:
                self.unusable.add(name)
            else:
                self.functions[name] = ExprFunction(name, params, parsed)
        self.check_recursion()

    def python_function(self, name, decl, path):
        refs = {}
        for key in ("python", "vjp", "jvp", "hvp"):
            if key in decl:
                try:
                    refs[key] = usercode.resolve(decl[key], self.spec_dir, self.policy)
                except _Problem as p:
                    self.add(path + (key,), p.message, p.hint)
        if "python" not in refs or len(refs) < len([k for k in ("python", "vjp", "jvp", "hvp") if k in decl]):
            return None
        if "vjp" not in refs and "jvp" not in refs:
            self.add(path, f"python function '{name}' needs a 'vjp' (or 'jvp')",
                     "gradrun compares finite differences with your analytic derivative", key=True)
            return None
        params = self.code_params(path, decl, "python", refs["python"])
        if params is None:
            return None
        guarded = {k: usercode.guarded(refs.get(k), decl.get(k, "")) for k in ("python", "vjp", "jvp", "hvp")}
        return PythonFunction(name=name, params=params, forward=guarded["python"], vjp=guarded["vjp"],
                              jvp=guarded["jvp"], hvp=guarded["hvp"], source=decl["python"],
                              complex_safe=bool(decl.get("complex_safe", False)))

    def torch_function(self, name, decl, path, seed=None):
        """A torch declaration (see frameworks/torch.py), built under ``seed`` (the defaults' seed)."""
        seed = self.seed if seed is None else seed
        if (name, seed) in self.torch_built:
            return self.torch_built[(name, seed)]
        try:
            code = usercode.resolve(decl["torch"], self.spec_dir, self.policy)
        except _Problem as p:
            return self.add(path + ("torch",), p.message, p.hint)
        try:
            from .frameworks import torch as adapter
        except ImportError as e:
            return self.add(path + ("torch",), f"torch: needs PyTorch, which cannot be imported ({e})",
                            "install it: pip install 'gradrun[torch]'")
        try:
            fn = adapter.function(name, code, init=decl.get("init"), mode=decl.get("mode", "eval"), seed=seed,
                                  device=self.device or decl.get("device", "cpu"),
                                  complex_safe=decl.get("complex_safe", False), source=decl["torch"])
        except adapter.TorchDeclarationError as p:
            return self.add(path + ((p.key,) if p.key in decl else ("torch",)), p.message, p.hint)
        self.torch_decls[name], self.torch_built[(name, seed)] = decl, fn
        return fn

    def seeded(self, functions: dict, seed: int) -> dict:
        """The experiment's functions, torch ones built under its own seed."""
        return {n: self.torch_function(n, self.torch_decls[n], ("functions", n), seed) or f
                if n in self.torch_decls else f for n, f in functions.items()}

    def jax_function(self, name, decl, path):
        """A ``jax:`` function: JAX itself supplies the VJP (and the JVP where it can)."""
        try:
            from .frameworks import jax as adapter
        except ImportError as e:
            self.add(path + ("jax",), f"jax: functions need JAX, which cannot be imported ({e})",
                     "pip install 'gradrun[jax]'")
            return None
        try:
            fn = usercode.resolve(decl["jax"], self.spec_dir, self.policy)
        except _Problem as p:
            self.add(path + ("jax",), p.message, p.hint)
            return None
        params = self.code_params(path, decl, "jax", fn)
        return None if params is None else adapter.function(fn, name, decl["jax"])

    def code_params(self, path, decl, key, fn):
        """The input names of a user's callable, or None after an issue."""
        try:
            params = tree.python_params(fn)
        except (TypeError, ValueError):
            self.add(path + (key,), f"cannot read the parameters of '{decl[key]}'")
            return None
        if not params:
            self.add(path + (key,), f"'{decl[key]}' takes no positional parameters")
            return None
        return params

    def check_recursion(self):
        graph = {n: [c for c in tree.calls(f.body) if c in self.functions]
                 for n, f in self.functions.items() if isinstance(f, ExprFunction)}
        for name in list(graph):
            trail = _cycle_through(graph, name)
            if trail:
                shown = trail if len(trail) <= 8 else trail[:4] + [f"({len(trail) - 6} more)"] + trail[-2:]
                how = "itself" if len(trail) == 2 else "itself through " + " -> ".join(shown)
                self.add(("functions", name), f"function '{name}' calls {how}",
                         "recursion cannot be expanded into a graph", key=True)
                del self.functions[name]
                self.unusable.add(name)

    # -- experiments


def _cycle_through(graph: dict, start: str):
    """The shortest call path from ``start`` back to itself (``[start, ..., start]``), or None.

    A breadth-first search keeping one parent per function: linear in the calls,
    so a file of many chained declarations costs no more than reading it.
    """
    parent = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for callee in graph.get(node, ()):
                if callee == start:
                    trail = [node]
                    while trail[-1] != start:
                        trail.append(parent[trail[-1]])
                    return trail[::-1] + [start]
                if callee not in parent:
                    parent[callee] = node
                    following.append(callee)
        frontier = following
    return None
