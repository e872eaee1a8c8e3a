"""One point's check as report columns: what ``verdict.check_input`` and a screen measured,
one row per Jacobian entry or projection (see ``gradrun.columns``)."""

from __future__ import annotations

import numpy as np

from .columns import Columns, constant, shared_strings, sweep_columns


# How check_input's arrays become element columns: a (M outputs, N elements) array is
# one value per Jacobian entry, a (N,) array one per element (repeated over its outputs);
# a key keeps its name unless renamed here. Placement keys are not values.
RENAMED = {"minus": "numeric_minus", "plus": "numeric_plus", "forward": "analytic_forward"}
PLACEMENT = ("columns", "output")


def errors(numeric, analytic) -> tuple:
    """abs_error and rel_error (0 where the two agree exactly)."""
    abs_err = np.abs(analytic - numeric)
    with np.errstate(all="ignore"):
        rel_err = abs_err / np.maximum(np.abs(numeric), np.abs(analytic))
    return abs_err, np.where(abs_err == 0, 0.0, rel_err)


def projection_columns(found, experiment, point, name, settings, coords) -> Columns:
    """One row per screening direction: the projection u . J v, numeric beside analytic."""
    k = len(found.numeric)
    num, ana = np.asarray(found.numeric, dtype=np.float64), np.asarray(found.analytic, dtype=np.float64)
    status = np.where(~found.bad, "pass", np.where(~np.isfinite(num + ana), "nan",
                                                   np.where(found.kink, "kink", "fail")))
    abs_err, rel_err = errors(num, ana)
    data = {"experiment": constant(experiment, k), "point": constant(point, k), "input": constant(name, k),
            "direction": np.arange(k), "numeric": num, "analytic": ana, "abs_error": abs_err,
            "rel_error": rel_err, "status": shared_strings(status),
            "tolerance": np.asarray(found.tolerance, dtype=np.float64), "method": constant(found.method, k),
            "step": constant(float(found.step), k),
            "error_estimate": np.asarray(found.error_estimate, dtype=np.float64),
            "dtype": constant(settings.dtype, k)}
    return Columns(data | sweep_columns(coords, k))


def element_columns(res, experiment, point, name, x, settings, coords, check="full") -> Columns:
    """check_input's result as element columns, element-major (all outputs of an element together)."""
    idx = np.asarray(res.columns, dtype=np.int64)
    m = res.numeric.shape[0]
    n = m * len(idx)
    data = {"experiment": constant(experiment, n), "point": constant(point, n), "input": constant(name, n),
            "index": np.repeat(idx, m), "output": np.tile(np.arange(m), len(idx)),
            "value": np.repeat(x.ravel()[idx], m)}
    for key, values in res._asdict().items():
        if key in PLACEMENT:
            continue
        values = np.asarray(values)
        column = values.T.ravel() if values.ndim == 2 else np.repeat(values, m)
        data[RENAMED.get(key, key)] = shared_strings(column) if column.dtype.kind in "UO" else column
    data["abs_error"], data["rel_error"] = errors(data["numeric"], data["analytic"])
    data["output_value"] = np.tile(np.asarray(res.output, dtype=np.float64), len(idx))
    data["dtype"], data["check"] = constant(settings.dtype, n), constant(check, n)
    return Columns(data | sweep_columns(coords, n))
