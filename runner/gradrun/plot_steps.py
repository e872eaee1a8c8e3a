"""The step study of an experiment that sweeps ``step``: error against step, per method."""

from __future__ import annotations

import numpy as np

from . import numeric
from .plot_common import (SETTING_SWEEPS, STATUS_COLOURS, log_floor, picture_path, require_matplotlib, save,
                          sweep_names)


def plot_step_study(rows, out_dir) -> list:
    """|numeric − analytic| against the step, log-log, one line per method.

    Truncation error falls as the step shrinks (slope = the stencil's order)
    until round-off, about eps·|f|/step, takes over and rises again. The step
    gradrun's ``step: auto`` would take is a dotted vertical line per method.
    """
    Figure, Canvas = require_matplotlib()
    experiment = rows["experiment"].iloc[0]
    elements = rows[["input", "element", "output"]].drop_duplicates()
    others = [n for n in sweep_names(rows) if n not in SETTING_SWEEPS]
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    floor = log_floor(rows["abs_error"])
    for n, (method, group) in enumerate(rows.groupby("method", sort=False)):
        colour = f"C{n}"
        # the worst element at each step, when the experiment has several
        key = group["abs_error"].fillna(np.inf)  # an undefined error is the worst
        worst = group.loc[key.groupby(group["step"]).idxmax()].sort_values("step")
        error = worst["abs_error"].to_numpy(dtype=float)
        shown = np.where(error > 0, error, floor)
        order = numeric.ORDER.get(method)
        ax.plot(worst["step"], shown, "o-", ms=4, color=colour,
                label=f"{method}" + (f" (order {order})" if order else ""))
        ax.plot(worst["step"], worst["tolerance"], "--", lw=0.8, color=colour, alpha=0.7)
        failed = worst[worst["status"].isin(["fail", "nan"])]
        if len(failed):
            ax.plot(failed["step"], failed["abs_error"].clip(lower=floor), "x", ms=10, mew=2,
                    color=STATUS_COLOURS["fail"])
        for h in _auto_steps(method, group):
            ax.axvline(h, color=colour, ls=":", lw=1.5)
            ax.annotate(f"auto {method}\n{h:.1e}", (h, 1), xycoords=("data", "axes fraction"),
                        xytext=(3, -4), textcoords="offset points", va="top", fontsize="x-small",
                        color=colour)
    _roundoff_guide(ax, rows)
    ax.plot([], [], "--", color="0.3", lw=0.8, label="tolerance (dashed, per method)")
    if rows["status"].isin(["fail", "nan"]).any():
        ax.plot([], [], "x", ms=10, mew=2, color=STATUS_COLOURS["fail"], label="failed")
    if (rows["abs_error"] == 0).any():
        ax.axhline(floor, color="0.8", lw=0.8)
        ax.annotate("exact (0) drawn here", (0.01, floor), xycoords=("axes fraction", "data"),
                    xytext=(0, 3), textcoords="offset points", fontsize="x-small", color="0.4")
    ax.set_xlabel("step h")
    ax.set_ylabel("|numeric \u2212 analytic|")
    where = _where(rows, elements, others)
    ax.set_title(f"{experiment}: error against step{where}")
    ax.legend(loc="lower left", fontsize="small")
    ax.grid(True, which="major", color="0.92")
    return [save(fig, Canvas, picture_path(out_dir, rows, "step"))]


def _auto_steps(method, rows) -> list:
    """The step(s) ``step: auto`` would take for this method at these rows' values (none for auto itself)."""
    if method not in numeric.AUTO_STEP:
        return []
    eps = numeric.EPS[str(rows["dtype"].iloc[0])]
    return sorted(set(numeric.steps(method, rows["value"].to_numpy(dtype=float), "auto", eps).tolist()))


def _roundoff_guide(ax, rows) -> None:
    """The line eps·|f|/h: where round-off in f starts to dominate a real-step difference."""
    steps = np.sort(rows["step"].unique())
    magnitude = np.nanmax(np.abs(rows["output_value"].to_numpy(dtype=float)), initial=0.0)
    eps = numeric.EPS[str(rows["dtype"].iloc[0])]
    if magnitude > 0 and len(steps) > 1:
        ax.plot(steps, eps * magnitude / steps, color="0.5", ls="-.", lw=1,
                label="round-off guide eps\u00b7|f|/h")


def _where(rows, elements, others) -> str:
    first = rows.iloc[0]
    if len(elements) == 1:
        text = f"\nd out/d{first['element']} at {first['element']} = {first['value']:g}"
        text = text.replace("d out/", "df/") if first["output"] == 0 else text
    else:
        text = f"\nworst of {len(elements)} elements at each step"
    return text + (f", worst over {', '.join(others)}" if others else "")
