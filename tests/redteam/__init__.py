"""An independent red-team corpus for gradrun's verdicts (issue 13, second pass).

Written without reading ``tests/mutations``: correct-but-nasty layers
(``layers.py``: numpy forward, hand-written VJP, some with a JVP) and subtly
buggy backward passes (``bugs.py``), each a ``Case``. ``all_cases()`` lists
them; ``tests/test_redteam.py`` and ``benchmarks/bench_redteam.py`` run them
in float64 and float32.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    cls: str  # the class of case, for tabulating
    forward: Callable
    vjp: Callable
    point: Callable  # () -> dict of float64 inputs, the same every call
    correct: bool
    jvp: Optional[Callable] = None
    settings: dict = field(default_factory=dict)
    # where the case means what it says: a float32 cast of float32 inputs loses only float32's own noise
    dtypes: tuple = ("float64", "float32")


def rng(seed):
    return np.random.default_rng(seed)


def all_cases():
    from . import bugs, layers
    return layers.CASES + bugs.CASES
