"""Checking settings at the boundary: one rule per setting, shared by specs, the CLI and ``gradrun.check``.

A setting reaches gradrun three ways (a spec's keys, a CLI option, a keyword
of ``gradrun.check``); each is held to the same rules here, so that NaN, an
infinity or a step of zero never gets inside, whichever door it came through.
"""

from __future__ import annotations

import math
import numbers

from .model import CHECKS, DTYPES, METHODS

SEED_MAX = 2**32 - 1
REDUCES = (None, "sum")
ORDERS = (1, 2)  # first or second derivatives


def is_number(value) -> bool:
    """A real number that is not a boolean."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def finite_problem(value, what: str, positive: bool = False) -> str | None:
    """Why ``value`` is not a finite (positive, or non-negative) number; None when it is."""
    if not is_number(value):
        return f"{what} must be a number, got {value!r}"[:200]
    try:
        x = float(value)
    except OverflowError:
        return f"{what} is too large for a float"
    if not math.isfinite(x):
        return f"{what} must be finite, got {x}"
    if positive and x <= 0:
        return f"{what} must be positive, got {x:g}"
    if x < 0:
        return f"{what} must be >= 0, got {x:g}"
    return None


def _choice(value, what, choices):
    if value not in choices:
        return f"{what} must be one of {', '.join(str(c) for c in choices)}, got {value!r}"[:200]
    return None


def _seed(value, what):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not 0 <= value <= SEED_MAX:
        return f"{what} must be an integer from 0 to {SEED_MAX}, got {value!r}"[:200]
    return None


# setting -> its rule: value, name -> a problem or None.
RULES = {
    "method": lambda v, w: _choice(v, w, METHODS),
    "step": lambda v, w: None if isinstance(v, str) and v == "auto" else finite_problem(v, w, positive=True),
    "rtol": lambda v, w: None if v is None else finite_problem(v, w),
    "atol": lambda v, w: None if v is None else finite_problem(v, w),
    "dtype": lambda v, w: _choice(v, w, DTYPES),
    "check": lambda v, w: _choice(v, w, CHECKS),
    "seed": _seed,
    "reduce": lambda v, w: _choice(v, w, REDUCES),
    "order": lambda v, w: _choice(v, w, ORDERS) if not isinstance(v, bool) else f"{w} must be 1 or 2, got {v!r}",
}


def setting_problems(settings: dict) -> list:
    """``[(key, message)]`` for every known setting whose value breaks its rule."""
    out = []
    for key, value in settings.items():
        rule = RULES.get(key)
        problem = rule(value, key) if rule else None
        if problem:
            out.append((key, problem))
    return out


def checked_settings(settings: dict) -> dict:
    """Settings given as keywords, checked: ``TypeError`` for an unknown name, ``ValueError`` for a bad value."""
    from .expr import did_you_mean

    for key in settings:
        if key not in RULES:
            hint = did_you_mean(key, list(RULES))
            raise TypeError(f"unknown setting '{key}'" + (f"; {hint}" if hint else f"; settings: {', '.join(RULES)}"))
    problems = setting_problems(settings)
    if problems:
        raise ValueError("; ".join(message for _, message in problems))
    out = dict(settings)
    for key in ("rtol", "atol"):
        if out.get(key) is not None:
            out[key] = float(out[key])
    if is_number(out.get("step")):
        out["step"] = float(out["step"])
    return out


__all__ = ["RULES", "SEED_MAX", "is_number", "finite_problem", "setting_problems", "checked_settings"]
