"""Limits on what one spec file may ask for: each keeps a mistake from costing unbounded memory or time.

Loading checks them (``gradrun.spec``); each refusal says which limit and how to stay within it.
"""

MAX_FILE_BYTES = 10_000_000  # a spec file
MAX_EXPERIMENTS = 1_000  # per file
MAX_INPUT_ELEMENTS = 1_000_000  # elements of one input
MAX_INTERMEDIATE_ELEMENTS = 10_000_000  # elements of any value computed from the inputs
MAX_SWEEP_POINTS = 10_000  # points of one experiment (the product of the swept lengths)
MAX_REPORT_ROWS = 2_000_000  # rows one experiment may add to a report
MAX_DIMENSIONS = 32  # of one input: numpy's own limit in 1.x
MAX_FUNCTIONS = 1_000  # declared functions per file
MAX_INLINED = 10_000  # operations of one experiment once its declared functions are inlined
