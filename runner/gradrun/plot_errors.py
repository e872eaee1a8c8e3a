"""The error picture of an experiment: |analytic - numeric| per element, against its tolerance.

A matrix input is a heat map of its elements; everything else (scalars,
vectors, a screen's projections) is a strip of dots with the tolerance above each.
"""

from __future__ import annotations

import numpy as np

from .plot_common import (SETTING_SWEEPS, STATUS_COLOURS, element_shape, log_floor, picture_path,
                          require_matplotlib, save, sweep_names)

HEATMAP_LABELS_UP_TO = 64  # cells annotated with their error; a bigger map is colour only
STRIP_LABELS_UP_TO = 40  # x tick labels written out on a strip plot
STRIP_MARKERS_UP_TO = 5_000  # rows drawn with full-size markers on a strip; beyond, pixels


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
    return [save(fig, Canvas, picture_path(out_dir, rows, "error"))]


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
    floor = log_floor(rows["abs_error"], rows["tolerance"])
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
