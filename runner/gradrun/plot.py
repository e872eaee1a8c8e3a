"""Pictures of a report: derivative curves, error maps and error against step.

Plots are one more reader of the result columns, and they read them from the
report file only (``read_report``: CSV or Parquet), so any report can be drawn
after the fact. Every picture is drawn from whole columns at once, so drawing
is linear in the report's size; elements whose error is infinite or NaN are
drawn as the worst and marked, never dropped. Each
``plot_*`` function takes the DataFrame of one experiment and a folder, writes
PNGs and returns their paths; ``plot_report`` draws every experiment of a
report. Nothing here prints or exits.

matplotlib is optional (``pip install 'gradrun[plot]'``) and imported only
when a picture is drawn. Figures are drawn on matplotlib's Agg canvas
directly, never through pyplot, so plotting works without a display and never
changes the backend of a session that imported gradrun.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from . import numeric
from .plot_second_order import plot_second_order_curve

INSTALL_HINT = "matplotlib is not installed: pip install 'gradrun[plot]'"

# Colours of a row's status, the same in every picture.
STATUS_COLOURS = {"pass": "tab:green", "fail": "tab:red", "kink": "tab:orange", "nan": "tab:purple"}
SETTING_SWEEPS = ("step", "method")  # sweep names that are settings, not inputs
HEATMAP_LABELS_UP_TO = 64  # cells annotated with their error; a bigger map is colour only
STRIP_LABELS_UP_TO = 40  # x tick labels written out on a strip plot
STRIP_MARKERS_UP_TO = 5_000  # rows drawn with full-size markers on a strip; beyond, pixels
DPI = 110


class PlotUnavailable(ImportError):
    """matplotlib is missing; the message says how to install it."""

    def __init__(self):
        super().__init__(INSTALL_HINT)


class NotAReport(ValueError):
    """A CSV that lacks the columns of a gradrun report."""


REQUIRED_COLUMNS = ("experiment", "point", "input", "element", "output", "value", "numeric",
                    "analytic", "abs_error", "status", "tolerance", "method", "step", "output_value",
                    "dtype")


def require_matplotlib():
    """Import matplotlib's object-oriented pieces, or raise ``PlotUnavailable``."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise PlotUnavailable() from error
    return Figure, FigureCanvasAgg


def read_report(path):
    """A gradrun report (CSV, or Parquet by its suffix) as a DataFrame; ``status`` keeps its text
    ``nan`` (pandas would read it as missing)."""
    import pandas as pd

    try:
        if Path(path).suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as error:
        raise NotAReport(f"{path} is not a gradrun report: {error}") from error
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise NotAReport(f"{path} is not a gradrun report: no column {', '.join(missing)}")
    df["status"] = df["status"].fillna("nan").astype(object)
    return df


def plot_report(df, out_dir) -> list:
    """Every picture of a report: each experiment's error map, plus its curve or step study when it has one."""
    require_matplotlib()
    written = []
    for name, rows in df.groupby("experiment", sort=False):
        rows = rows.reset_index(drop=True)
        if swept_input(rows):
            second = "order" in rows and (rows["order"] == 2).all()
            written += (plot_second_order_curve if second else plot_curve)(rows, out_dir)
        if "sweep_step" in rows and rows["sweep_step"].notna().any():
            written += plot_step_study(rows, out_dir)
        written += plot_errors(rows, out_dir)
    return written


# --- what kind of experiment a set of rows is ---------------------------------


def sweep_names(rows) -> list:
    """The names this experiment sweeps (inputs, ``step``, ``method``), from its non-empty sweep_ columns."""
    return [c[len("sweep_"):] for c in rows.columns if c.startswith("sweep_") and rows[c].notna().any()]


def swept_input(rows):
    """The one swept scalar input when the rows are a curve f(x) with scalar output, else None."""
    names = sweep_names(rows)
    inputs = [n for n in names if n not in SETTING_SWEEPS]
    if len(inputs) != 1 or len(names) != 1 or rows["point"].nunique() < 2:
        return None
    if (rows["output"] != 0).any() or (rows["check"] != "full").any():
        return None
    return inputs[0]


def element_shape(rows):
    """The shape of one input, read from its element names (``X[2,1]`` -> at least (3, 2)); () for a scalar.

    The names are parsed in Arrow's C loops: a report may name a million elements.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    names = pa.array(np.asarray(rows["element"].unique(), dtype=object).astype(str), pa.string())
    pattern = r"\[(?P<ix>[\d,]+)\]$"
    indexed = pc.filter(names, pc.match_substring_regex(names, pattern))
    inside = pc.extract_regex(indexed, pattern).field("ix")
    if not len(inside):
        return ()
    parts = pc.split_pattern(inside, ",")
    ndim = len(parts[0].as_py())
    coords = pc.cast(pc.list_flatten(parts), pa.int64()).to_numpy().reshape(-1, ndim)
    return tuple(int(c) + 1 for c in coords.max(axis=0))


def _file(out_dir, experiment, kind) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(experiment)).strip("_") or "experiment"
    return Path(out_dir) / f"{safe}-{kind}.png"


def _save(fig, canvas_class, path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas_class(fig)
    fig.savefig(path, dpi=DPI)
    return path


def _floor(*arrays) -> float:
    """A value below every positive number given, where exact zeros are drawn on a log axis."""
    values = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays])
    positive = values[np.isfinite(values) & (values > 0)]
    return float(positive.min() / 10) if positive.size else 1e-17


# --- f and f' over a sweep ----------------------------------------------------


def plot_curve(rows, out_dir) -> list:
    """f (output_value) above, analytic f' (line) and numeric f' (markers) below, over the swept input.

    Kinks are marked with a dotted vertical line and their one-sided slopes,
    failures with a red cross.
    """
    Figure, Canvas = require_matplotlib()
    name = swept_input(rows)
    experiment = rows["experiment"].iloc[0]
    x_column = f"sweep_{name}"
    fig = Figure(figsize=(7, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1.3])
    primal = rows.drop_duplicates("point").sort_values(x_column)
    top.plot(primal[x_column], primal["output_value"], "-", color="tab:blue", label="f(x)")
    top.plot(primal[x_column], primal["output_value"], ".", color="tab:blue")
    top.set_ylabel("f  (output_value)")
    top.set_title(f"{experiment}: f and f\u2032 over {name}")
    top.legend(loc="best")
    elements = list(dict.fromkeys(rows["element"]))
    for n, (element, group) in enumerate(rows.groupby("element", sort=False)):
        group = group.sort_values(x_column)
        colour = f"C{n}"
        wrt = f"\u2202f/\u2202{element}" if len(elements) > 1 or element != name else "f\u2032"
        bottom.plot(*_broken_at_kinks(group, x_column, "analytic"), "-", color=colour,
                    label=f"{wrt} analytic")
        bottom.plot(group[x_column], group["numeric"], "o", mfc="none", color=colour,
                    label=f"{wrt} numeric ({_methods(group)})")
        _mark_curve_trouble(top, bottom, group, x_column)
    bottom.set_xlabel(name)
    bottom.set_ylabel("derivative")
    bottom.axhline(0, color="0.85", lw=0.8, zorder=0)
    bottom.legend(loc="best", fontsize="small")
    return [_save(fig, Canvas, _file(out_dir, experiment, "curve"))]


def _broken_at_kinks(group, x_column, column):
    """(x, y) of a column with the line cut on both sides of every kink: the derivative jumps there.

    A NaN between two points stops matplotlib drawing the segment across.
    """
    xs, ys = [], []
    kinked = (group["status"] == "kink").to_numpy()
    for i, (x, y) in enumerate(zip(group[x_column], group[column])):
        if kinked[i] and i > 0:
            xs.append(x), ys.append(np.nan)
        xs.append(x), ys.append(y)
        if kinked[i]:
            xs.append(x), ys.append(np.nan)
    return xs, ys


def _methods(rows) -> str:
    return ", ".join(dict.fromkeys(rows["method"].astype(str)))


def _mark_curve_trouble(top, bottom, group, x_column) -> None:
    kinks = group[group["status"] == "kink"]
    for i, (_, row) in enumerate(kinks.iterrows()):
        for ax in (top, bottom):
            ax.axvline(row[x_column], color=STATUS_COLOURS["kink"], ls=":", lw=1.2,
                       label="kink" if (ax is bottom and i == 0) else None)
        bottom.plot(row[x_column], row["analytic"], "s", ms=5, color=STATUS_COLOURS["kink"],
                    label="analytic at the kink" if i == 0 else None)
        sides = [row["numeric_minus"], row["numeric_plus"]] if "numeric_plus" in row else []
        if sides and np.isfinite(sides).all():
            bottom.plot([row[x_column]] * 2, sides, "_", ms=14, mew=2, color=STATUS_COLOURS["kink"],
                        label="one-sided slopes" if i == 0 else None)
    failed = group[group["status"].isin(["fail", "nan"])]
    if len(failed):
        bottom.plot(failed[x_column], failed["numeric"], "x", ms=10, mew=2, color=STATUS_COLOURS["fail"],
                    label="failed")


# --- |analytic - numeric| per element -----------------------------------------


def plot_errors(rows, out_dir) -> list:
    """|analytic − numeric| of every element beside its tolerance: a heat map per matrix input, else a strip."""
    Figure, Canvas = require_matplotlib()
    experiment = rows["experiment"].iloc[0]
    located = rows[rows["index"] >= 0]  # a screen's projections (index -1) have no cell in a map
    inputs = list(dict.fromkeys(located["input"]))
    shapes = {name: element_shape(located[located["input"] == name]) for name in inputs}
    maps = [n for n in inputs if len(shapes[n]) == 2]
    on_strip = rows[~rows["input"].isin(maps) | (rows["index"] < 0)]
    strips = len(on_strip) > 0
    panels = len(maps) + (1 if strips else 0)
    strip_rows = len(on_strip)
    strip_wide = 1.6 if strip_rows > 12 else (1.0 if strip_rows > 3 else 0.7)
    width = max(6.5, 4.2 * len(maps) + 6 * strip_wide * bool(strips))
    fig = Figure(figsize=(width, 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, panels, width_ratios=[1] * len(maps) + ([1.4 * strip_wide] if strips else [])))
    for ax, name in zip(axes, maps):
        _error_map(fig, ax, located[located["input"] == name], name, shapes[name])
    if strips:
        _error_strip(axes[-1], on_strip)
    verdict = _verdict_text(rows)
    fig.suptitle(f"{experiment}: |analytic \u2212 numeric| per element ({verdict})")
    return [_save(fig, Canvas, _file(out_dir, experiment, "error"))]


def _verdict_text(rows) -> str:
    counts = rows["status"].value_counts()
    parts = [f"{counts.get('pass', 0)} passed"]
    parts += [f"{counts[s]} {word}" + ("s" if s == "kink" and counts[s] > 1 else "")
              for s, word in (("fail", "failed"), ("kink", "kink"), ("nan", "nan")) if counts.get(s, 0)]
    return ", ".join(parts)


def _ratio(rows) -> np.ndarray:
    """|analytic - numeric| / tolerance; infinite where the error is not finite or the status is nan."""
    error = rows["abs_error"].to_numpy(dtype=float)
    tol = rows["tolerance"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(tol > 0, error / tol, np.inf)
    return np.where(~np.isfinite(error) | (rows["status"] == "nan").to_numpy(), np.inf, ratio)


def _worst_per_element(rows):
    """Per element (flat index): its worst row's ratio, error and status (kink if any row is one)."""
    rows = rows.assign(ratio=_ratio(rows), kinked=(rows["status"] == "kink").to_numpy())
    by_index = rows.groupby("index", sort=False)
    worst = rows.loc[by_index["ratio"].idxmax()]
    kinked = by_index["kinked"].any().reindex(worst["index"]).to_numpy()
    status = worst["status"].to_numpy(dtype=object)
    status = np.where(kinked & (status == "pass"), "kink", status)
    return worst["index"].to_numpy(dtype=np.int64), worst["ratio"].to_numpy(), \
        worst["abs_error"].to_numpy(dtype=float), status


def _error_map(fig, ax, rows, name, shape) -> None:
    """One cell per element, coloured by log10(error / tolerance): green well inside, red outside.

    Cells whose error is infinite or NaN take the top colour and a marker.
    """
    from matplotlib.colors import TwoSlopeNorm

    index, worst_ratio, worst_error, worst_status = _worst_per_element(rows)
    ratio = np.full(shape, np.nan)
    error = np.full(shape, np.nan)
    status = np.full(shape, "", dtype=object)
    ij = np.unravel_index(index, shape)
    ratio[ij], error[ij], status[ij] = worst_ratio, worst_error, worst_status
    with np.errstate(divide="ignore"):
        shown = np.log10(ratio)
    finite = np.isfinite(shown)
    low = min(-1.0, np.min(shown[finite], initial=-1.0))
    high = max(1.0, np.max(shown[finite], initial=1.0))
    shown = np.clip(np.where(np.isneginf(shown), low, np.where(np.isposinf(shown), high, shown)), low, high)
    image = ax.imshow(shown, cmap="RdYlGn_r", norm=TwoSlopeNorm(vmin=low, vcenter=0.0, vmax=high))
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    bar.set_label("log10(|analytic \u2212 numeric| / tolerance)\n0 = the tolerance")
    bar.ax.axhline(0.0, color="black", lw=1.5)
    if ratio.size <= HEATMAP_LABELS_UP_TO:
        ax.set_xticks(range(shape[1]))
        ax.set_yticks(range(shape[0]))
    ax.set_xlabel(f"{name} column")
    ax.set_ylabel(f"{name} row")
    reduced = rows["point"].nunique() * rows["output"].nunique()
    ax.set_title(f"d / d{name}" + (f"\nworst of {reduced} (point, output) pairs" if reduced > 1 else ""),
                 fontsize="medium")
    if ratio.size <= HEATMAP_LABELS_UP_TO:
        for (i, j), value in np.ndenumerate(error):
            mark = {"fail": "\u2717 ", "nan": "nan ", "kink": "kink "}.get(status[i, j], "")
            text = "nan" if status[i, j] == "nan" and not np.isfinite(value) else (
                f"{mark}{value:.1e}" if value else f"{mark}0")
            ax.text(j, i, text, ha="center", va="center", fontsize="x-small",
                    color="white" if status[i, j] in ("fail", "nan") else "black")
        return
    undefined = np.argwhere(~np.isfinite(error) & (status != ""))
    if len(undefined):  # too many cells to label: mark the infinite and NaN ones
        ax.plot(undefined[:, 1], undefined[:, 0], "x", ms=4, color=STATUS_COLOURS["nan"],
                label="inf or nan")
        ax.legend(loc="upper right", fontsize="x-small")


def _error_strip(ax, rows) -> None:
    """Each element's error as a dot coloured by status, its tolerance as a bar above it (log scale)."""
    rows = rows.reset_index(drop=True)
    swept = [n for n in sweep_names(rows) if n not in SETTING_SWEEPS]
    floor = _floor(rows["abs_error"], rows["tolerance"])
    x = np.arange(len(rows))
    ax.set_yscale("log")
    crowded = len(rows) > STRIP_MARKERS_UP_TO  # beyond this, one pixel per point keeps drawing fast
    ax.plot(x, rows["tolerance"], "," if crowded else "_", ms=14, mew=2, color="black", label="tolerance")
    error = rows["abs_error"].to_numpy(dtype=float)
    for status, colour in STATUS_COLOURS.items():
        at = (rows["status"] == status).to_numpy() & (error > 0)
        if at.any():
            ax.plot(x[at], error[at], "." if crowded else "o", color=colour, label=status)
    exact = (error == 0) | ~np.isfinite(error)
    if exact.any():
        ax.plot(x[exact], np.full(exact.sum(), floor), "v", mfc="none", color="0.4",
                label="0 or non-finite (drawn at the bottom)")
    ax.set_ylabel("|analytic \u2212 numeric|")
    ax.set_xlabel(_strip_axis_label(rows, swept))
    if len(rows) <= STRIP_LABELS_UP_TO:
        labels = [_strip_label(row, swept, len(set(rows["input"]))) for _, row in rows.iterrows()]
        crowded = sum(map(len, labels)) > 60
        ax.set_xticks(x, labels, rotation=60 if crowded else 0, ha="right" if crowded else "center",
                      fontsize="small")
    ax.set_xlim(-0.7, len(rows) - 0.3)
    ax.legend(loc="best", fontsize="small")
    ax.grid(True, axis="y", which="major", color="0.9")


def _strip_axis_label(rows, swept) -> str:
    if len(rows) > STRIP_LABELS_UP_TO:
        return f"row of the report ({len(rows)} rows, in report order)"
    if swept and len(set(rows["element"])) == 1:
        return ", ".join(swept)
    return "element" + (f" at {', '.join(swept)}" if swept else "")


def _strip_label(row, swept, n_inputs) -> str:
    coords = ", ".join(f"{row[f'sweep_{n}']:g}" for n in swept)
    element = str(row["element"]) if (n_inputs > 1 or not coords) else ""
    output = f"\u2192out[{row['output']}]" if row["output"] else ""
    return " ".join(p for p in (element + output, coords) if p)


# --- error against step ---------------------------------------------------------


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
    floor = _floor(rows["abs_error"])
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
    return [_save(fig, Canvas, _file(out_dir, experiment, "step"))]


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
