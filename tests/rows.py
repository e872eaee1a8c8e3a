"""Hand-made report rows for tests of the readers: the CSV's columns, in order, as a dict."""

from gradrun.columns import FILL, NAMES

DEFAULTS = dict(FILL) | {"index": 0, "output": 0, "dtype": "float64", "check": "full"}


def row(*values, coords=None, **fields) -> dict:
    """A report row: positional values in the CSV's column order, then keywords; the rest default."""
    out = DEFAULTS | dict(zip(NAMES, values)) | fields
    out["coords"] = dict(coords or {})
    return out


def describe(result, n: int = 3) -> str:
    """A failure message: the experiment's error, or its n worst rows with both numbers."""
    if result.error:
        return result.error
    parts = []
    for r in result.worst(n):
        where = f"{r.element},{r.element2}" if getattr(r, "element2", "") else r.element
        parts.append(f"{where} out[{r.output}] {r.check} {r.status}: numeric={r.numeric!r} "
                     f"analytic={r.analytic!r} tolerance={r.tolerance!r} method={r.method} {r.reason}".rstrip())
    return "; ".join(parts)


def assert_verdict(result, should_pass: bool, what: str) -> None:
    """A mutation suite's claim: the correct ``what`` passes, the buggy one does not."""
    if should_pass:
        assert result.passed, f"correct {what} failed: {describe(result)}"
    else:
        assert not result.passed, f"buggy {what} passed: {describe(result)}"


def assert_flagged(result, expect: str) -> None:
    """A red-team corpus's claim (tests/fresh8, tests/fresh9): no error, and correct code
    (``expect`` "pass") passes, buggy code has an entry whose status is fail."""
    assert result.error is None, result.error
    if expect == "pass":
        assert result.passed, f"correct code failed: {describe(result)}"
    else:
        assert "fail" in {r.status for r in result.records}, f"bug not flagged: {describe(result)}"
