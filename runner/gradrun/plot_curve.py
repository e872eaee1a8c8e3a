"""The curve of a first-order experiment: f and f' over one swept scalar input."""

from __future__ import annotations

import numpy as np

from .plot_common import STATUS_COLOURS, methods_used, picture_path, require_matplotlib, save, swept_input


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
                    label=f"{wrt} numeric ({methods_used(group)})")
        _mark_curve_trouble(top, bottom, group, x_column)
    bottom.set_xlabel(name)
    bottom.set_ylabel("derivative")
    bottom.axhline(0, color="0.85", lw=0.8, zorder=0)
    bottom.legend(loc="best", fontsize="small")
    return [save(fig, Canvas, picture_path(out_dir, rows, "curve"))]


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
