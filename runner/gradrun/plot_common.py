"""What every picture of a report shares: matplotlib, colours, file names, and what kind of
experiment a report's rows are.

matplotlib is optional (``pip install 'gradrun[plot]'``) and imported only
when a picture is drawn. Figures are drawn on matplotlib's Agg canvas
directly, never through pyplot, so plotting works without a display and never
changes the backend of a session that imported gradrun.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

INSTALL_HINT = "matplotlib is not installed: pip install 'gradrun[plot]'"

# Colours of a row's status, the same in every picture.
STATUS_COLOURS = {"pass": "tab:green", "fail": "tab:red", "kink": "tab:orange", "nan": "tab:purple"}
SETTING_SWEEPS = ("step", "method")  # sweep names that are settings, not inputs
DPI = 110


class PlotUnavailable(ImportError):
    """matplotlib is missing; the message says how to install it."""

    def __init__(self):
        super().__init__(INSTALL_HINT)


def require_matplotlib():
    """Import matplotlib's object-oriented pieces, or raise ``PlotUnavailable``."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise PlotUnavailable() from error
    return Figure, FigureCanvasAgg


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


# --- drawing ---------------------------------------------------------------------


MAX_NAME = 100  # characters of an experiment's name in a picture's file name (a spec allows no more)


# names Windows gives to devices, with any extension: an experiment "nul.x" drew into
# "nul.x-error.png", which Windows opens as the null device
DEVICES = frozenset(["con", "prn", "aux", "nul", *(f"{d}{k}" for d in ("com", "lpt") for k in range(10))])


def _safe_name(experiment) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(experiment)).strip("_")[:MAX_NAME] or "experiment"
    return f"_{name}" if name.split(".")[0].casefold() in DEVICES else name


def picture_names(experiments) -> dict:
    """experiment -> the name of its pictures: its name made safe for a file name, and made unique
    among ``experiments`` ignoring case, so that ``a+b`` and ``a_b``, or ``A`` and ``a`` on a file
    system that ignores case, do not draw into one file (the later one gets ``-2``, ``-3``, ...)."""
    names, taken = {}, set()
    for experiment in experiments:
        base = name = _safe_name(experiment)
        copy = 1
        while name.casefold() in taken:
            copy += 1
            name = f"{base}-{copy}"
        taken.add(name.casefold())
        names[experiment] = name
    return names


def picture_path(out_dir, rows, kind) -> Path:
    """``<out_dir>/<experiment>-<kind>.png`` of an experiment's ``rows``: the name ``picture_names``
    gave it (``rows.attrs["picture"]``), or its name made safe for a file name."""
    return Path(out_dir) / f"{_safe_name(rows.attrs.get('picture') or rows['experiment'].iloc[0])}-{kind}.png"


def save(fig, canvas_class, path) -> Path:
    """Draw ``fig`` on the Agg canvas into ``path`` (its folder made as needed), whole or not at all."""
    from .atomic import _atomic

    canvas_class(fig)
    with _atomic(path) as f:
        fig.savefig(f, dpi=DPI, format="png")
    return path


def log_floor(*arrays) -> float:
    """A value below every positive number given, where exact zeros are drawn on a log axis."""
    values = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays])
    positive = values[np.isfinite(values) & (values > 0)]
    return float(positive.min() / 10) if positive.size else 1e-17


def methods_used(rows) -> str:
    """The methods the rows were measured by, in order, for a legend."""
    return ", ".join(dict.fromkeys(rows["method"].astype(str)))
