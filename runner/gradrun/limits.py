"""Limits on what one spec file may ask for: each keeps a mistake from costing unbounded memory or time.

Loading checks them (``gradrun.spec``); each refusal says which limit and how to stay within it.
"""

MAX_FILE_BYTES = 10_000_000  # a spec file
MAX_BASELINE_BYTES = 1_000_000_000  # a baseline file (about 6 million elements)
MAX_EXPERIMENTS = 1_000  # per file
MAX_INPUT_ELEMENTS = 1_000_000  # elements of one input
MAX_INTERMEDIATE_ELEMENTS = 10_000_000  # elements of any value computed from the inputs
MAX_EVALUATION_ELEMENTS = 50_000_000  # elements of all the values one evaluation holds at once (400 MB in float64)
MAX_EVALUATION_WORK = 10_000_000_000  # multiply-adds of the matrix products of one evaluation
MAX_FILE_INPUT_ELEMENTS = 20_000_000  # elements of all the inputs of one file (160 MB in float64)
MAX_RUN_INPUT_ELEMENTS = 100_000_000  # of all the spec files of a serial run, held together (800 MB)
MAX_SWEEP_POINTS = 10_000  # points of one experiment (the product of the swept lengths)
MAX_REPORT_ROWS = 2_000_000  # rows one experiment may add to a report
MAX_FILE_REPORT_ROWS = 10_000_000  # rows of one file's report (a run holds them until the report is written)
MAX_DIMENSIONS = 32  # of one input: numpy's own limit in 1.x
MAX_FUNCTIONS = 1_000  # declared functions per file
MAX_INLINED = 10_000  # operations of one experiment once its declared functions are inlined
# The work of a check: Jacobian columns moved and rows pulled back, times the elements one
# evaluation holds (``gradrun.graphcheck.check_work``); 1e9 is about 15 s of full check here.
MAX_AUTO_FULL_WORK = 1_000_000_000  # check: auto (and a failed screen's fallback) checks every element up to this
MAX_CHECK_WORK = 20_000_000_000  # one experiment, all its points
MAX_FILE_CHECK_WORK = 100_000_000_000  # one file's experiments together
