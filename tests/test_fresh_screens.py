"""The fresh corpora's float32 cases through a screen (``check: screen``), which large layers get by default.

A float32 screen holds the float32 code's projections to their own round-off:
float16 arithmetic inside a float32 backward fails it (it passed at 0.4 % off
while the tolerance counted every output's |f| for every element), and a
correct but ill-conditioned layer (inputs near 1e4 with a spread of 1, where
float32's own rounding moves the gradient by 1e-3) passes it
(``gradrun.sensitivity``). The corpus harnesses check these at their small
sizes in full; ``benchmarks/bench_fresh_corpus.py`` runs the large layers.
"""

import numpy as np
import pytest

import gradrun
from mutations import fresh
from rows import assert_verdict

torch = pytest.importorskip("torch", reason="the torch half needs PyTorch")

from gradrun.frameworks import torch as adapter  # noqa: E402
from mutations_torch import fresh as fresh_torch  # noqa: E402

ILL_CONDITIONED = ("fresh_layernorm_offset_1e4", "fresh-layer-norm-offset-autograd", "fresh-instance-norm-offset")


def float32_variants(cases):
    """The correct variant of the ill-conditioned cases, and every float32-only bug."""
    out = []
    for case in cases:
        for variant, code, should_pass in case.variants():
            bug = dict(case.bugs).get(variant)
            if (should_pass and case.name in ILL_CONDITIONED) or getattr(bug, "only_in", ()) == ("float32",):
                out.append(pytest.param(case, code, should_pass, id=f"{case.name}-{variant}"))
    return out


@pytest.mark.parametrize("case, vjp, should_pass", float32_variants(fresh.CASES))
def test_numpy_float32_screen(case, vjp, should_pass):
    result = gradrun.check(case.forward, case.point(), vjp=vjp, dtype="float32", check="screen", name=case.name)
    assert_verdict(result, should_pass, "VJP")


@pytest.mark.parametrize("case, code, should_pass", float32_variants(fresh_torch.CASES))
def test_torch_float32_screen(case, code, should_pass):
    torch.set_num_threads(1)
    result = adapter.check(code, case.point(), wrt=case.wrt, init=case.init, mode=case.mode, dtype="float32",
                           check="screen", name=case.name)
    assert_verdict(result, should_pass, "backward")


def test_torch_batch_norm_in_train_mode_passes_a_float32_screen():
    """Torch's own BatchNorm in train mode: the bias before it has a true gradient of 0 and a
    float32 one of round-off, which the float32 floor's |f| covers (docs/pass-rule.md, Screens)."""
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.bn, self.l2 = nn.Linear(32, 64), nn.BatchNorm1d(64), nn.Linear(64, 16)

        def forward(self, x):
            return self.l2(torch.relu(self.bn(self.l1(x))))

    torch.set_num_threads(1)
    x = np.random.default_rng(0).standard_normal((48, 32))
    result = adapter.check(Net, {"x": x}, wrt=("x", "params"), mode="train", dtype="float32", check="screen",
                           name="bn-train")
    assert_verdict(result, True, "backward")
