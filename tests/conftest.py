"""Hypothesis runs the same examples on every run unless asked to explore.

CI must not pass or fail by chance: the default profile is derandomized.
`HYPOTHESIS_PROFILE=explore .venv/bin/python -m pytest tests/test_properties.py`
draws fresh examples each run (how the fixed @examples in that file were found).
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
