"""Hand-made report rows for tests of the readers: the CSV's columns, in order, as a dict."""

from gradrun.columns import FILL, NAMES

DEFAULTS = dict(FILL) | {"index": 0, "output": 0, "dtype": "float64", "check": "full"}


def row(*values, coords=None, **fields) -> dict:
    """A report row: positional values in the CSV's column order, then keywords; the rest default."""
    out = DEFAULTS | dict(zip(NAMES, values)) | fields
    out["coords"] = dict(coords or {})
    return out
