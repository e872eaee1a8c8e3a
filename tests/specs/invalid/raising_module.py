"""A user module whose import fails: the spec naming it must get an issue, not a traceback."""

raise RuntimeError("configuration missing")
