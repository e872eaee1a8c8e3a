"""A slow function for the kill test: it marks that the run has started, then sleeps on every call.

gradrun's loader calls a python function once, on the experiment's first
point, to learn its output shape; every later call is the run itself, so the
marker means the run is under way.
"""

import os
import time

calls = []


def f(x):
    calls.append(x)
    marker = os.environ.get("GRADRUN_TEST_STARTED")
    if marker and len(calls) > 1:
        open(marker, "a").close()
        time.sleep(0.2)
    return x * x


def f_vjp(g, x):
    return (2 * g * x,)
