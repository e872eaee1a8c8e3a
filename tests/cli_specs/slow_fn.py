"""A slow function for the kill test: it marks that the run has started, then sleeps on every call.

gradrun's loader calls a python function once on zeros to learn its output
shape; the sweep never visits 0, so the marker means the run itself is under way.
"""

import os
import time

import numpy as np


def f(x):
    marker = os.environ.get("GRADRUN_TEST_STARTED")
    if marker and np.any(x != 0):
        open(marker, "a").close()
        time.sleep(0.2)
    return x * x


def f_vjp(g, x):
    return (2 * g * x,)
