"""Meaning checks and resolution of one spec document: defaults, experiments, sweeps, points.

``Checker`` collects every issue instead of stopping at the first; ``gradrun.spec.load_spec``
drives it and raises ``SpecError`` with them all.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from . import expr as exprs
from . import hessian, primitives, tree, usercode, yamlload
from . import values as values_rules
from .columns import misread
from .declare import Declarations
from .graph import GraphError, UnknownFunction, build
from .graphcheck import check_work, full_check, full_work, screen_rows, shaped
from .inputs import SEQUENCES, Inputs, finite, sequence
from .limits import (MAX_CHECK_WORK, MAX_EXPERIMENTS, MAX_FILE_CHECK_WORK, MAX_FILE_INPUT_ELEMENTS, MAX_FILE_REPORT_ROWS,
                     MAX_REPORT_ROWS, MAX_SWEEP_POINTS)
from .model import METHODS, Experiment, Point, Settings
from .schema import schema_issues
from .tree import Call, PythonFunction, Var

SETTING_KEYS = ("method", "step", "rtol", "atol", "dtype", "check", "seed", "order")
SWEPT_SETTINGS = ("step", "method")  # sweep keys that mean settings, not inputs
FORMS = ("function", "chain", "expr")

_Problem = usercode.Refused  # a message, a hint and (inside an expression) a column


def listing_issues(doc, items: list) -> list:
    """What is wrong with the experiments list as a whole: too many, or a name used twice."""
    if len(items) > MAX_EXPERIMENTS:
        return [doc.issue(("experiments",), f"{len(items)} experiments, more than {MAX_EXPERIMENTS}", "split the file")]
    issues, first_seen = [], {}
    for i, data in enumerate(items):
        name = data.get("name") if isinstance(data, dict) else None
        if isinstance(name, str):
            if misread(name):
                issues.append(doc.issue(("experiments", i, "name"), _misread_message("experiment name", name),
                                        f"e.g. '{name}_' or 'e{name}'"))
            if name in first_seen:
                issues.append(doc.issue(("experiments", i, "name"), f"duplicate experiment name '{name}' "
                                        f"(first on line {doc.where(('experiments', first_seen[name], 'name'))[0]})"))
            first_seen.setdefault(name, i)
    return issues


def _misread_message(what: str, name: str) -> str:
    return f"{what} '{name}' would be read back from the report as {misread(name)} (pandas.read_csv reads it so)"


class Checker(Declarations):
    """Meaning checks and resolution of one document; collects every issue."""

    def __init__(self, doc: yamlload.Document, spec_dir: Path, device: str | None = None,
                 policy: usercode.Policy = usercode.DEFAULT):
        self.doc = doc
        self.spec_dir = spec_dir
        self.policy = policy  # what code references may reach (gradrun.usercode)
        self.device = device  # overrides every torch declaration's device
        self.seed = 0  # the defaults' seed, which declared torch modules are built under
        self.torch_decls: dict = {}  # name -> its torch declaration, to rebuild under another seed
        self.torch_built: dict = {}  # (name, seed) -> PythonFunction
        self.issues, self.broken = schema_issues(doc)
        self.functions: dict = {}  # declared name -> ExprFunction | PythonFunction
        self.arity = {n: primitives.get(n).nargs for n in primitives.names()}  # None: any
        # Declared functions already reported as broken: using them is no second error.
        self.unusable: set = set()
        self.file_rows = 0  # report rows of the experiments resolved so far
        self.file_work = 0  # their checks' work (graphcheck.check_work)
        self.file_elements = 0  # elements of every input generated so far: the file's are held together

    def ok(self, *path) -> bool:
        """False where the schema found an error: that part's shape is unknown, so it is not checked further."""
        return not any(b[: len(path)] == path or path[: len(b)] == b for b in self.broken)

    def add(self, path, message, hint="", key=False, column_offset=None):
        self.issues.append(self.doc.issue(path, message, hint, key=key, column_offset=column_offset))

    def expression(self, path, text, names):
        """Parse an expression string; problems become issues pointing inside the string."""
        try:
            return exprs.parse(text, self.arity, names)
        except exprs.ExprError as e:
            for p in e.problems:
                self.add(path, p.message, p.hint, column_offset=p.column)
            return None

    # -- defaults and functions

    def settings(self, path, data: dict, base: Settings) -> Settings:
        """The settings ``data`` gives over ``base``; a value breaking its rule is an issue and is not used."""
        values = {k: data[k] for k in SETTING_KEYS if k in data}
        if "reduce" in data:
            values["reduce"] = data["reduce"]
        for key, message in values_rules.setting_problems(values):
            self.add(path + (key,), message, "a whole number, written without a decimal point" if key == "seed"
                     else "a finite number is needed here")
            del values[key]
        for k in ("rtol", "atol", "step"):
            if values_rules.is_number(values.get(k)):
                values[k] = float(values[k])
        return base.updated(**values)

    def experiments(self, items: list, defaults: Settings) -> list:
        listed = listing_issues(self.doc, items)
        self.issues += listed
        if len(items) > MAX_EXPERIMENTS:
            return []
        out = []
        for i, data in enumerate(items):
            if self.ok("experiments", i):
                exp = self.experiment(i, data, defaults)
                if exp is not None:
                    out.append(exp)
        return out

    def written_order(self, path, names):
        return sorted(names, key=lambda n: self.doc.where(path + (n,), key=True))

    def experiment(self, i, data, defaults):
        path = ("experiments", i)
        before = len(self.issues)
        settings = self.settings(path, data, defaults)
        inputs, sweep = data.get("inputs", {}), data.get("sweep", {})
        swept_settings = [k for k in sweep if k in SWEPT_SETTINGS]
        swept_inputs = [k for k in sweep if k not in SWEPT_SETTINGS]
        given = self.given_inputs(path, inputs, swept_inputs)

        written = list(given)
        named = data.get("function")  # a torch module's parameters are inputs too
        fn = self.seeded({named: self.functions[named]}, settings.seed)[named] if named in self.functions else None
        supplied = fn.defaults if isinstance(fn, PythonFunction) else {}
        given += [n for n in supplied if n not in given]
        expr = self.build_expr(path, data, inputs, given)
        integers = [n for n in written if isinstance(inputs.get(n), dict) and "integer" in inputs[n]]
        labels = set(integers)
        differentiable = [n for n in written if n not in labels]
        if expr is not None and not given:
            self.add(path, "has no inputs, so nothing to differentiate", "add inputs or sweep")
        elif expr is not None and not differentiable and "wrt" not in data:
            self.add(path, "has only integer inputs, so nothing to differentiate", "add inputs or sweep")
        wrt = self.wrt_names(path, data, given, supplied, integers, differentiable)
        fixed = self.fixed_inputs(path, inputs, given, supplied, settings)
        axes = self.sweep_axes(path, sweep, swept_inputs, swept_settings, settings.dtype)
        if len(self.issues) > before or expr is None or axes is None or fixed is None:
            return None
        points = self.points(axes, fixed, settings, swept_settings)
        graph = self.graph(path, data, expr, settings, points[0], integers)
        if graph is None or not self.fits(path, data, graph, wrt, settings, points):
            return None
        line, column = self.doc.where(path)
        return Experiment(
            name=data["name"], expr=expr, functions=graph.functions, points=points, wrt=wrt,
            settings=settings, file=self.doc.file, line=line, column=column,
            description=data.get("description", self.source_form(data)),
            integers=tuple(integers), graph=graph, sweep_points=len(points),
        )

    def graph(self, path, data, expr, settings, first: Point, integers):
        """The experiment's graph, built once (summed under ``reduce: sum``), its declared functions
        built under the experiment's seed and its shapes found at the first point; None after an issue."""
        form = next(k for k in FORMS if k in data)
        try:
            graph = build(Call("sum", (expr,)) if settings.reduce == "sum" else expr, self.functions,
                          list(first.inputs), integers)
            graph = shaped(graph.bind(self.seeded(graph.functions, settings.seed)), first.inputs)
        except UnknownFunction as e:
            if e.name not in self.unusable:  # else already reported where the function is declared
                self.add(path + (form,), str(e))
            return None
        except GraphError as e:
            self.add(path + (form,), str(e), e.hint)
            return None
        except _Problem as p:
            self.add(path + (form,), p.message, p.hint,
                     column_offset=p.column if form == "expr" and p.column is not None else None)
            return None
        return graph if self.labels_ok(path + (form,), graph, integers, form == "expr") else None

    def labels_ok(self, path, graph, integers, own_columns: bool) -> bool:
        """Whether every one_hot's labels are an integer input: one_hot rounds what it is given,
        so one_hot(x, 3) of a float input (or of x * 2) picked a class silently."""
        for node in graph.nodes:
            if node.op != "one_hot":
                continue
            labels = graph.nodes[node.args[0]]
            if not (labels.is_input and labels.name in integers):
                what = f"input '{labels.name}' is a float input" if labels.is_input else "they are computed"
                self.add(path, f"one_hot's labels must be an integer input, but {what}",
                         "give the labels as {integer: [...]} under inputs and pass them to one_hot directly",
                         column_offset=node.source.column if own_columns and node.own else None)
                return False
        return True

    def given_inputs(self, path, inputs, swept_inputs) -> list:
        """The inputs and swept names of an experiment, in the order written."""
        for name in swept_inputs:
            if name in inputs:
                self.add(path + ("sweep", name), f"'{name}' is both an input and swept", "keep one", key=True)
        given = self.written_order(path + ("inputs",), inputs) + [n for n in swept_inputs if n not in inputs]
        for name in given:
            if misread(name):
                self.add(path + (("inputs",) if name in inputs else ("sweep",)) + (name,),
                         _misread_message("input name", name), f"e.g. {name}_", key=True)
        return sorted(given, key=lambda n: self.doc.where(
            path + (("inputs",) if n in inputs else ("sweep",)) + (n,), key=True))

    def wrt_names(self, path, data, given, supplied, integers, differentiable) -> list:
        """The inputs differentiated: wrt as written (params meaning a torch module's), or every float input."""
        wrt = [w for n in data.get("wrt", differentiable)
               for w in (list(supplied) if n == "params" and supplied and n not in given else [n])]
        integers, given_set = set(integers), set(given)  # a file may list thousands of names
        for k, name in enumerate(wrt):
            if name in integers:
                self.add(path + ("wrt", k), f"'{name}' is an integer input, which is never differentiated",
                         "remove it from wrt; integer inputs (labels, indices) are passed to the function as they are")
            elif name not in given_set:
                self.add(path + ("wrt", k), f"wrt names '{name}', which is not an input",
                         exprs.did_you_mean(name, given) or f"inputs: {', '.join(given)}")
        return wrt

    def fixed_inputs(self, path, inputs, given, supplied, settings):
        """name -> value of every input not swept, generated in the order written; None once the
        file's inputs come to more than ``MAX_FILE_INPUT_ELEMENTS`` (said once, where they do)."""
        fixed = {}
        generator = Inputs(self.doc, settings, self.issues)
        for position, name in enumerate(given):
            if name in inputs:
                if self.file_elements > MAX_FILE_INPUT_ELEMENTS:
                    return None
                value = generator.value(path + ("inputs", name), inputs[name], position)
                if value is not None:
                    fixed[name] = value
                    self.file_elements += np.size(value)
                    if self.file_elements > MAX_FILE_INPUT_ELEMENTS:
                        self.add(path + ("inputs", name),
                                 f"the inputs of this file come to more than {MAX_FILE_INPUT_ELEMENTS} elements here",
                                 "split the file, or use smaller inputs")
                        return None
            elif name in supplied:
                fixed[name] = supplied[name]
        return fixed

    @staticmethod
    def source_form(data) -> str:
        if "chain" in data:
            return "chain: " + ", ".join(data["chain"])
        return f"function: {data['function']}" if "function" in data else f"expr: {data['expr']}"

    def build_expr(self, path, data, inputs, given):
        forms = [k for k in FORMS if k in data]
        if len(forms) != 1:
            message = ("needs one of 'function', 'chain' or 'expr'" if not forms
                       else f"has both {' and '.join(repr(f) for f in forms)}; keep exactly one")
            self.add(path, message)
            return None
        form = forms[0]
        if form == "expr":
            parsed = self.expression(path + ("expr",), data["expr"], given)
            if parsed is not None:
                self.unused(path, inputs, given, tree.variables(parsed), "the expression")
            return parsed
        if form == "chain":
            ok = True
            for k, name in enumerate(data["chain"]):
                ok &= self.known(path + ("chain", k), name, want_one=True)
            params = ("x",)
            built = tree.chain(data["chain"], var="x") if ok else None
        else:
            name = data["function"]
            if not self.known(path + ("function",), name):
                return None
            params = self.params_of(name)
            built = Call(name, tuple(Var(p) for p in params))
        what = "the chain (its input is x)" if form == "chain" else f"'{data.get('function')}' (parameters: {', '.join(params)})"
        given_set = set(given)  # a declared function may have thousands of parameters
        for p in params:
            if p not in given_set:
                self.add(path, f"input '{p}' of {what} is not given", "add it under inputs or sweep")
        self.unused(path, inputs, given, params, what)
        return built

    def unused(self, path, inputs, given, used, what):
        used = set(used)
        for name in given:
            if name not in used:
                where = path + ("inputs" if name in inputs else "sweep", name)
                self.add(where, f"input '{name}' is not used by {what}", "remove it, or use it", key=True)

    def known(self, path, name, want_one=False) -> bool:
        if name in self.unusable:
            return False  # already reported where it is declared
        if name not in self.arity:
            self.add(path, f"unknown function '{name}'", exprs.did_you_mean(name, self.arity)
                     or "`gradrun functions` lists the built-ins")
            return False
        if want_one and self.arity[name] != 1:
            self.add(path, f"chain members take one argument; '{name}' takes {self.arity[name]}",
                     "use expr for functions of several inputs")
            return False
        needs = [p.name for p in getattr(primitives.PRIMITIVES.get(name), "params", ()) if p.required]
        if needs and name not in self.functions:
            self.add(path, f"{name} needs {' and '.join(needs)}, which only an expression can give",
                     f"write expr: \"{primitives.get(name).signature()}\" with values for them")
            return False
        return True

    def params_of(self, name) -> tuple:
        fn = self.functions.get(name)
        if fn is not None:
            return tuple(fn.params)
        prim = primitives.get(name)
        if prim.nargs is None:  # concatenate, stack: two inputs, a and b
            return ("a", "b")
        return prim.arg_names or primitives.ARG_NAMES[prim.nargs]

    def sweep_axes(self, path, sweep, swept_inputs, swept_settings, dtype):
        """name -> list of values, in the order written (each within ``dtype``'s range, but
        steps); None after an issue."""
        axes = {}
        ok = True
        for name in self.written_order(path + ("sweep",), sweep):
            spec, where = sweep[name], path + ("sweep", name)
            if isinstance(spec, dict):
                kind = next(k for k in SEQUENCES if k in spec)
                with np.errstate(all="ignore"):
                    values = sequence(self.doc, where, kind, spec[kind], MAX_SWEEP_POINTS, self.issues)
                values = finite(self.doc, where, values, self.issues, dtype if name != "step" else "float64")
                values = None if values is None else [float(v) for v in values]
            else:
                values = self.sweep_list(where, name, spec)
                if values is not None and name != "method":
                    values = finite(self.doc, where, np.asarray(values), self.issues,
                                    dtype if name != "step" else "float64")
                    values = None if values is None else [float(v) for v in values]
            if name == "step" and values is not None and not all(v > 0 for v in values):
                bad = next(v for v in values if not v > 0)
                self.add(where, f"a swept step must be positive, and this sweep gives {bad:g}",
                         "sweep steps with logspace, or list positive numbers")
                values = None
            ok &= values is not None
            axes[name] = values
        if not ok:
            return None
        total = math.prod(len(v) for v in axes.values())
        if total > MAX_SWEEP_POINTS:
            self.add(path + ("sweep",), f"the sweep has {total} points, more than {MAX_SWEEP_POINTS}",
                     "sweep fewer values, or fewer names at once", key=True)
            return None
        return axes

    def sweep_list(self, where, name, values):
        if name == "method":
            bad = [v for v in values if v not in METHODS]
            if bad:
                self.add(where, f"method sweep holds {bad[0]!r}, not a method",
                         exprs.did_you_mean(str(bad[0]), METHODS) or f"methods: {', '.join(METHODS)}")
                return None
            return list(values)
        bad = [v for v in values if isinstance(v, str)]
        if bad:
            self.add(where, f"sweep of '{name}' holds the string {bad[0]!r}", "sweep numbers here")
            return None
        return [float(v) for v in values]

    def points(self, axes, fixed, settings, swept_settings) -> list:
        names = list(axes)
        points = []
        for index, combo in enumerate(itertools.product(*(axes[n] for n in names))):
            coords = dict(zip(names, combo))
            inputs = dict(fixed)
            for n, v in coords.items():
                if n not in SWEPT_SETTINGS:
                    inputs[n] = np.asarray(v, dtype=np.float64)
            changed = {k: coords[k] for k in swept_settings}
            points.append(Point(index, inputs, coords, settings.updated(**changed) if changed else None))
        return points or [Point(0, dict(fixed))]

    def fits(self, path, data, graph, wrt, settings, points) -> bool:
        """Complex-safety and report size, read off the graph; False after an issue."""
        methods = {settings.method} | {p.settings.method for p in points if p.settings}
        if "complex" in methods and graph.complex_unsafe:
            if "method" in data:
                where = path + ("method",)
            elif "method" in data.get("sweep", {}):
                where = path + ("sweep", "method")
            else:
                where = ("defaults", "method")
            self.add(where, f"method complex needs a complex-safe graph; not complex-safe: "
                     f"{', '.join(graph.complex_unsafe)}",
                     "declare complex_safe: true if your code takes complex input, or use another method")
            return False
        sizes = {n: math.prod(graph.shapes[graph.inputs[n]]) for n in wrt}
        per_output = math.prod(graph.output_shape)
        empty = [n for n, size in sizes.items() if size == 0]
        if empty or per_output == 0:
            what = f"input '{empty[0]}' has no elements" if empty else "the output has no elements"
            self.add(path + (("inputs", empty[0]) if empty and empty[0] in data.get("inputs", {}) else ()),
                     f"{what}: an empty Jacobian has nothing to check", "give it a size, or leave it out of wrt")
            return False
        entries = sum(sizes.values()) * per_output
        elements = sum(math.prod(shape) for shape in graph.shapes)  # what one evaluation holds
        whole = full_work(graph, wrt, per_output)
        full = full_check(settings.check, entries, graph, whole)
        rows = len(points) * (entries if full else len(wrt) * screen_rows())
        work = len(points) * (whole if full else check_work(False, sum(sizes.values()), per_output, len(wrt), elements))
        if settings.order == 2:
            if not self.second_order_ok(path, data, per_output, methods, graph.functions):
                return False
            entries = sum(sizes.values()) ** 2
            rows = len(points) * (entries if settings.check == "full" else min(entries, hessian.FULL_LIMIT))
            # a Hessian column is a gradient's difference: one evaluation and its pullback per column
            full = settings.check == "full" or (settings.check == "auto" and entries <= hessian.FULL_LIMIT)
            work = len(points) * check_work(full, sum(sizes.values()), 1, len(wrt), 2 * elements)
        if work > MAX_CHECK_WORK:
            self.add(path, f"the check would evaluate about {work:.1e} elements, more than {MAX_CHECK_WORK:.0e} "
                     f"({len(points)} point(s) of {elements} elements, "
                     f"{'every Jacobian element moved' if full else 'screened'})",
                     "use check: auto or screen, smaller inputs or intermediates, or a coarser sweep")
            return False
        self.file_work += work  # one file's checks run one after another
        if self.file_work > MAX_FILE_CHECK_WORK:
            if self.file_work - work <= MAX_FILE_CHECK_WORK:  # said once, at the experiment that passes the limit
                self.add(path, f"the file's checks would evaluate more than {MAX_FILE_CHECK_WORK:.0e} elements "
                         "from here on", "split the file, or use check: auto, smaller inputs or coarser sweeps")
            return False
        if rows > MAX_REPORT_ROWS:
            self.add(path, f"the report would have {rows} rows, more than {MAX_REPORT_ROWS}",
                     "use reduce: sum, fewer wrt inputs, smaller inputs or a coarser sweep")
            return False
        self.file_rows += rows  # a run holds a file's results until its report is written whole
        if self.file_rows > MAX_FILE_REPORT_ROWS:
            if self.file_rows - rows <= MAX_FILE_REPORT_ROWS:  # said once, at the experiment that passes the limit
                self.add(path, f"the file's report would have more than {MAX_FILE_REPORT_ROWS} rows from here on",
                         "split the file, or use reduce: sum, fewer wrt inputs or coarser sweeps")
            return False
        return True

    def second_order_ok(self, path, data, per_output, methods, reach) -> bool:
        """order: 2 needs a scalar output, a numeric method other than complex, and user
        functions it can differentiate twice."""
        ok = True
        if per_output != 1:
            self.add(path + ("order",) if "order" in data else path, "order: 2 needs a scalar output",
                     "add reduce: sum to check the Hessian of the sum of the outputs")
            ok = False
        if "complex" in methods:
            self.add(path + ("method",) if "method" in data else path,
                     "method complex of the gradient is the analytic side itself at order: 2",
                     "use central, central4, richardson or auto")
            ok = False
        for name, fn in sorted(reach.items()):
            if isinstance(fn, PythonFunction) and fn.hvp is None and not fn.complex_safe:
                self.add(("functions", name), f"python function '{name}' needs an 'hvp' rule for order: 2",
                         "hvp(cotangent, tangents, *inputs) -> one block per input, or complex_safe: true "
                         "if its vjp takes complex input", key=True)
                ok = False
        return ok


