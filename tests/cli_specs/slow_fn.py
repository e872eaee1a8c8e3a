"""A slow function for the kill test: it marks that it started, then sleeps on every call."""

import os
import time


def f(x):
    marker = os.environ.get("GRADRUN_TEST_STARTED")
    if marker:
        open(marker, "a").close()
    time.sleep(0.2)
    return x * x


def f_vjp(g, x):
    return (2 * g * x,)
