"""Pictures of a report: derivative curves, error maps and error against step.

Plots are one more reader of the result columns, and they read them from the
report file only (``read_report``: CSV or Parquet), so any report can be drawn
after the fact. Every picture is drawn from whole columns at once, so drawing
is linear in the report's size; elements whose error is infinite or NaN are
drawn as the worst and marked, never dropped. Each
``plot_*`` function takes the DataFrame of one experiment and a folder, writes
PNGs and returns their paths; ``plot_report`` draws every experiment of a
report. Nothing here prints or exits.

This module reads the table and says which pictures an experiment gets; the
pictures themselves are drawn by ``plot_curve``, ``plot_errors``,
``plot_steps`` and ``plot_second_order``, from what ``plot_common`` shares.
"""

from __future__ import annotations

from pathlib import Path

from .model import one_line
from .plot_common import (INSTALL_HINT, STATUS_COLOURS, PlotUnavailable, element_shape, picture_names,  # noqa: F401
                          require_matplotlib, sweep_names, swept_input)
from .plot_curve import plot_curve
from .plot_errors import plot_errors
from .plot_second_order import plot_second_order_curve
from .plot_steps import plot_step_study


class NotAReport(ValueError):
    """A CSV that lacks the columns of a gradrun report."""


REQUIRED_COLUMNS = ("experiment", "point", "input", "element", "output", "value", "numeric",
                    "analytic", "abs_error", "status", "tolerance", "method", "step", "output_value",
                    "dtype")


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
    # A report may come from anywhere: its names reach titles, file names and warnings on stderr.
    df["experiment"] = df["experiment"].astype(str).map(one_line)
    return df


def plot_report(df, out_dir) -> list:
    """Every picture of a report: each experiment's error map, plus its curve or step study when it has one."""
    require_matplotlib()
    written = []
    names = picture_names(df["experiment"].unique())
    for name, rows in df.groupby("experiment", sort=False):
        rows = rows.reset_index(drop=True)
        rows.attrs["picture"] = names[name]
        if swept_input(rows):
            second = "order" in rows and (rows["order"] == 2).all()
            written += (plot_second_order_curve if second else plot_curve)(rows, out_dir)
        if "sweep_step" in rows and rows["sweep_step"].notna().any():
            written += plot_step_study(rows, out_dir)
        written += plot_errors(rows, out_dir)
    return written

