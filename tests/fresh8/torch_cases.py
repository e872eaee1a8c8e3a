"""Red-team round 8 in torch: autograd.Functions with hand-written backward passes and
torch's own code, checked with default settings. Each case: the code, its inputs, what
gradrun must say (``pass`` or ``fail``), the dtypes, and adapter keywords (wrt, mode)."""

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mutations_torch import function


@dataclass(frozen=True)
class Case:
    name: str
    code: object
    inputs: dict
    expect: str  # pass | fail
    dtypes: tuple = ("float64", "float32")
    keywords: dict = field(default_factory=dict)


RNG = np.random.default_rng(88)


def one(name, forward, backward):
    """A one-input Function whose backward returns a single gradient."""
    return function(name, forward, lambda g, x: (backward(g, x),))


def _logsigmoid(g, x, far=False):
    s = torch.sigmoid(-x)
    return g * (torch.where(x < -30, torch.full_like(x, 0.5), s) if far else s)


IDX = torch.tensor([1, 3, 1, 1, 0])


def _lookup(g, W, assign=False):
    out = torch.zeros_like(W)
    if assign:  # repeated indices overwrite instead of adding up
        out[IDX] = 2 * g
    else:
        out.index_add_(0, IDX, 2 * g)
    return out


def _l2n(g, x, detached=False):
    n = x.norm()
    if detached:  # the norm treated as a constant
        return g / n
    y = x / n
    return (g - y * (g * y).sum()) / n


def _log_softmax(g, z):
    return g - torch.softmax(z, -1) * g.sum(-1, keepdim=True)


def _log_softmax_half(g, z):  # float16 inside the float32 backward ("mixed precision")
    p = torch.softmax(z.half(), -1).float() if g.dtype == torch.float32 else torch.softmax(z, -1)
    return g - p * g.sum(-1, keepdim=True)


def _tanh_dense(g, x, w, first_only=False):
    a = g * (1 - torch.tanh(x @ w) ** 2)
    return a @ w.T, (x[:1].T @ a[:1] if first_only else x.T @ a)


class BatchNormTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.bn(x)


def causal_attention(q, k, v):
    s = q @ k.transpose(-1, -2) / 2.0
    mask = torch.triu(torch.ones(s.shape[-2:], dtype=torch.bool), 1)
    return torch.softmax(s.masked_fill(mask, float("-inf")), -1) @ v


LOGITS = np.array([-40.0, -5, 0.0, 3, 35])
TABLE = RNG.normal(size=(4, 3))
VEC = RNG.normal(size=6)
Z = RNG.normal(size=(3, 6)) * 4
XW = {"x": RNG.normal(size=(4, 3)), "w": RNG.normal(size=(3, 3))}
QKV = {k: RNG.normal(size=(4, 4)) for k in "qkv"}

CASES = [
    Case("logsigmoid", one("LogSigmoid", lambda x: -F.softplus(-x), _logsigmoid), {"x": LOGITS}, "pass"),
    Case("logsigmoid@far-branch", one("LogSigmoid", lambda x: -F.softplus(-x), lambda g, x: _logsigmoid(g, x, True)),
         {"x": LOGITS}, "fail"),
    Case("lookup-repeats", one("Lookup", lambda W: W[IDX] * 2.0, _lookup), {"W": TABLE}, "pass"),
    Case("lookup-repeats@assign", one("Lookup", lambda W: W[IDX] * 2.0, lambda g, W: _lookup(g, W, True)),
         {"W": TABLE}, "fail"),
    Case("l2-normalize", one("L2", lambda x: x / x.norm(), _l2n), {"x": VEC}, "pass"),
    Case("l2-normalize@detached", one("L2", lambda x: x / x.norm(), lambda g, x: _l2n(g, x, True)), {"x": VEC}, "fail"),
    Case("log-softmax", one("LogSoftmax", lambda z: torch.log_softmax(z, -1), _log_softmax), {"z": Z}, "pass"),
    Case("log-softmax@half", one("LogSoftmax", lambda z: torch.log_softmax(z, -1), _log_softmax_half), {"z": Z},
         "fail", dtypes=("float32",)),
    Case("tanh-dense", function("Dense", lambda x, w: torch.tanh(x @ w), _tanh_dense), XW, "pass"),
    Case("tanh-dense@first-example", function("Dense", lambda x, w: torch.tanh(x @ w),
                                              lambda g, x, w: _tanh_dense(g, x, w, True)), XW, "fail"),
    Case("square-dense@transposed", function("Dense", lambda x, w: x @ w, lambda g, x, w: (g @ w, x.T @ g)), XW, "fail"),
    Case("batch-norm-spread-1e-4", BatchNormTiny, {"x": 1 + 1e-4 * RNG.normal(size=(5, 3))}, "pass",
         keywords={"wrt": ["x", "params"], "mode": "train"}),
    Case("causal-attention", causal_attention, QKV, "pass"),
    Case("layer-norm-at-1e6", lambda x: F.layer_norm(x, (5,)), {"x": 1e6 + 10 * RNG.normal(size=(2, 5))}, "pass"),
    Case("bce-logits-40", lambda z, t: F.binary_cross_entropy_with_logits(z, t, reduction="none"),
         {"z": np.array([-40.0, -5, 0, 5, 40]), "t": np.array([1.0, 0, 1, 0, 0])}, "pass", keywords={"wrt": ["z"]}),
]
