"""Red-team round 9 in torch: autograd.Functions with hand-written backward passes, modules and
torch's own code, checked with default settings. Each case: the code, its inputs, what gradrun
must say (``pass`` or ``fail``), the dtypes, and adapter keywords (wrt, mode, init).

RMS norm with a gain (eps outside the sqrt), rotary embedding (the rotation not transposed),
a transposed convolution with groups and dilation (torch's own), a depthwise conv1d whose weight
gradient drops a tap, a tied embedding module (its gradient through the lookup alone), an LSTM
cell module, SELU, ELU and mish at 0 and 1e-9 (torch's own), a gate whose slope is wrong only
where it is driven below -5, focal and label-smoothed losses, a triplet margin loss, pairwise
distances with a pair 1e-9 apart, a loss averaged over 10^4 examples (divided by N - 1), a safe
norm whose backward adds the dtype's eps (a bug float32 alone shows), a weight norm whose
gradient to v is detached from the norm, and attention whose key bias has a gradient of 0 by
invariance.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fresh8.torch_cases import Case
from mutations_torch import function


RNG = np.random.default_rng(99)


# RMS norm with a gain, rows of 1e-3 (mean square 1e-6 = eps)
def _rms(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * w


def _rms_backward(g, x, w, outside=False, eps=1e-6):
    ms = (x * x).mean(-1, keepdim=True)
    r = ms.sqrt() + eps if outside else (ms + eps).sqrt()
    gy = g * w
    return gy / r - x * (gy * x).mean(-1, keepdim=True) / r ** 3, (g * x / r).sum(0)


def rms(outside=False):
    return function("RMSNorm", _rms, lambda g, x, w: _rms_backward(g, x, w, outside))


# rotary embedding over halves (the GPT-NeoX layout): [x1, x2] -> [x1 c - x2 s, x2 c + x1 s]
def _cs(T, d, dtype):
    inv = 10000.0 ** (-torch.arange(0, d // 2, dtype=dtype) * 2 / d)
    a = torch.arange(T, dtype=dtype)[:, None] * inv
    return torch.cos(a), torch.sin(a)


def _rope(x):
    c, s = _cs(*x.shape, x.dtype)
    x1, x2 = x.chunk(2, -1)
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)


def _rope_backward(g, x, transposed=True):
    c, s = _cs(*x.shape, x.dtype)
    s = s if transposed else -s
    g1, g2 = g.chunk(2, -1)
    return (torch.cat([g1 * c + g2 * s, g2 * c - g1 * s], -1),)


def rope(transposed=True):
    return function("Rope", _rope, lambda g, x: _rope_backward(g, x, transposed))


# depthwise conv1d, dilation 2, padding 1
def _dw(x, w):
    return F.conv1d(x, w, padding=1, dilation=2, groups=x.shape[1])


def _dw_backward(g, x, w, taps=None):
    gx = torch.nn.grad.conv1d_input(x.shape, w, g, padding=1, dilation=2, groups=x.shape[1])
    gw = torch.nn.grad.conv1d_weight(x, w.shape, g, padding=1, dilation=2, groups=x.shape[1])
    if taps is not None:
        gw = gw.clone()
        gw[..., taps:] = 0
    return gx, gw


def dw(taps=None):
    return function("DepthwiseConv", _dw, lambda g, x, w: _dw_backward(g, x, w, taps))


# a tied embedding: logits = tanh(E[idx]) @ E.T, as a module (its parameter E used twice)
class Tied(nn.Module):
    def __init__(self, vocab=5, dim=3, lookup_only=False):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.lookup_only = lookup_only

    def forward(self, idx):
        h = torch.tanh(self.emb(idx.long()))
        E = self.emb.weight.detach() if self.lookup_only else self.emb.weight
        return h @ E.T


class Cell(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = nn.LSTMCell(3, 2)

    def forward(self, x, h, c):
        h1, c1 = self.cell(x, (h, c))
        return torch.cat([h1, c1], -1)


# a GRU-style gate: out = r * h with r = sigmoid(a); the bug: the gate's slope read off
# as r*(1-r) only for a >= -5, and as r alone below ("the tail is e^a anyway")
def _gate_backward(g, a, h, tail=False):
    r = torch.sigmoid(a)
    slope = torch.where(a < -5, r, r * (1 - r)) if tail else r * (1 - r)
    return g * h * slope, g * r


def gate(tail=False):
    return function("Gate", lambda a, h: torch.sigmoid(a) * h, lambda g, a, h: _gate_backward(g, a, h, tail))


# binary focal loss on logits (torchvision's formula), gamma = 2
def focal(z, t):
    p = torch.sigmoid(z)
    ce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
    pt = p * t + (1 - p) * (1 - t)
    return ((1 - pt) ** 2 * ce).sum()


def _focal_backward(g, z, t, detached=False):
    p = torch.sigmoid(z)
    pt = p * t + (1 - p) * (1 - t)
    s = 2 * t - 1
    ce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
    dpt = s * p * (1 - p)
    mod = torch.zeros_like(z) if detached else -2 * (1 - pt) * ce * dpt
    return g * (mod + (1 - pt) ** 2 * (p - t)), None


def focal_fn(detached=False):
    return function("Focal", focal, lambda g, z, t: _focal_backward(g, z, t, detached))


# weight norm: w = g * v / |v|, out = x @ w
def _wn(x, g, v):
    return x @ (g * v / v.norm())


def _wn_backward(go, x, g, v, detached=False):
    n = v.norm()
    gw = x.T @ go
    u = v / n
    gg = (gw * u).sum().reshape(g.shape)
    gv = g / n * (gw - (0 if detached else u * (gw * u).sum()))
    return go @ (g * u).T, gg, gv


def wn(detached=False):
    return function("WeightNorm", _wn, lambda go, x, g, v: _wn_backward(go, x, g, v, detached))


# causal attention probabilities with biased query and key projections (nn.Linear): the key
# bias moves every score of a row alike, so its gradient is 0 by invariance, and torch's is
# round-off (1e-54 beside entries of 1e-37 in rows of probabilities near 1e-40)
class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        s = self.q(x) @ self.k(x).transpose(-1, -2) * 3.0
        mask = torch.triu(torch.ones(s.shape[-2:], dtype=torch.bool), 1)
        return torch.softmax(s.masked_fill(mask, float("-inf")), -1)


# a row norm that is safe at 0: sqrt(sum x^2 + 1e-12); the bug's backward divides by the
# norm plus the dtype's eps, which float64 hides (2e-16) and float32 does not (1e-7 beside 1e-4)
def _norm(x):
    return torch.sqrt((x * x).sum(-1) + 1e-12)


def _norm_backward(g, x, finfo=False):
    n = torch.sqrt((x * x).sum(-1, keepdim=True) + (0.0 if finfo else 1e-12))
    return (g[..., None] * x / (n + torch.finfo(x.dtype).eps if finfo else n),)


def norm(finfo=False):
    return function("SafeNorm", _norm, lambda g, x: _norm_backward(g, x, finfo))


XRMS = RNG.normal(size=(3, 6)) * 1e-3
RMS_AT = {"x": XRMS, "w": 1 + 0.1 * RNG.normal(size=6)}
ROPE_AT = {"x": RNG.normal(size=(4, 6))}
DW_AT = {"x": RNG.normal(size=(2, 3, 7)), "w": RNG.normal(size=(3, 1, 3))}
CONVT_AT = {"x": RNG.normal(size=(1, 4, 5)), "w": RNG.normal(size=(4, 3, 3))}
IDX = {"idx": np.array([[2, 0, 2], [4, 4, 1]])}
CELL_AT = {"x": RNG.normal(size=(2, 3)), "h": RNG.normal(size=(2, 2)), "c": RNG.normal(size=(2, 2))}
KINKS = np.array([-3.0, -1e-9, 0.0, 1e-9, 0.5, 25.0])
GATE_AT = {"a": np.array([-12.0, -6.0, -0.3, 0.0, 2.0]), "h": np.array([0.7, -1.5, 0.2, 1.0, -0.4])}
FOCAL_AT = {"z": np.array([-30.0, -4.0, -0.5, 0.0, 0.8, 3.0, 25.0]), "t": np.array([1.0, 0, 1, 0, 1, 1, 0])}
LS_AT = {"z": RNG.normal(size=(4, 5)) * 3, "y": np.array([1, 4, 4, 0])}
TRIPLET_AT = {k: RNG.normal(size=(4, 3)) for k in ("a", "p", "n")}
NEAR = RNG.normal(size=(3, 2))
CDIST_AT = {"x": NEAR, "y": np.array([NEAR[0] + [1e-9, -2e-9], [0.5, -0.5], NEAR[2] + [0.3, 0.1]])}
WN_AT = {"x": RNG.normal(size=(3, 4)), "g": np.array([1.3]), "v": RNG.normal(size=(4, 2))}
BATCH_AT = {"w": RNG.normal(size=3) * 0.5, "X": RNG.normal(size=(10 ** 4, 3))}

ATTN_AT = {"x": np.random.default_rng(7).normal(size=62)[42:].reshape(5, 4) * 4}  # scores of +-100

NORM_AT = {"x": RNG.normal(size=(3, 4)) * np.array([[1e-4], [1.0], [3e-5]])}

CASES = [
    Case("safe-norm-1e-4", norm(), NORM_AT, "pass"),
    Case("safe-norm-1e-4@finfo-eps", norm(True), NORM_AT, "fail", dtypes=("float32",)),
    Case("attention-key-bias", Attention, ATTN_AT, "pass", keywords={"wrt": ["x", "params"]}),
    Case("rms-norm-1e-3", rms(), RMS_AT, "pass"),
    Case("rms-norm-1e-3@eps-outside", rms(True), RMS_AT, "fail"),
    Case("rope-halves", rope(), ROPE_AT, "pass"),
    Case("rope-halves@not-transposed", rope(False), ROPE_AT, "fail"),
    Case("depthwise-dilated", dw(), DW_AT, "pass"),
    Case("depthwise-dilated@last-tap", dw(2), DW_AT, "fail"),
    Case("conv-transpose-grouped", lambda x, w: F.conv_transpose1d(x, w, stride=2, padding=1, dilation=2, groups=2),
         CONVT_AT, "pass"),
    Case("tied-embedding", Tied, IDX, "pass", keywords={"wrt": ["params"]}),
    Case("tied-embedding@lookup-only", Tied, IDX, "fail", keywords={"wrt": ["params"], "init": {"lookup_only": True}}),
    Case("lstm-cell", Cell, CELL_AT, "pass", keywords={"wrt": ["x", "h", "c", "params"]}),
    Case("selu-elu-mish-at-0", lambda x: torch.stack([F.selu(x), F.elu(x, 0.5), F.mish(x)]), {"x": KINKS}, "pass"),
    Case("gate", gate(), GATE_AT, "pass"),
    Case("gate@tail", gate(True), GATE_AT, "fail"),
    Case("focal", focal_fn(), FOCAL_AT, "pass", keywords={"wrt": ["z"]}),
    Case("focal@detached", focal_fn(True), FOCAL_AT, "fail", keywords={"wrt": ["z"]}),
    Case("label-smoothing", lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1), LS_AT, "pass",
         keywords={"wrt": ["z"]}),
    Case("triplet-margin", lambda a, p, n: F.triplet_margin_loss(a, p, n, margin=1.0), TRIPLET_AT, "pass"),
    Case("cdist-1e-9", lambda x, y: torch.cdist(x, y), CDIST_AT, "pass"),
    Case("weight-norm", wn(), WN_AT, "pass"),
    Case("weight-norm@detached", wn(True), WN_AT, "fail"),
    Case("batch-loss-1e4", lambda w, X: F.softplus(X @ w).mean(), BATCH_AT, "pass", keywords={"wrt": ["w"]}),
    Case("batch-loss-1e4@n-1", function("BatchLoss", lambda w, X: F.softplus(X @ w).mean(),
                                        lambda g, w, X: (g * X.T @ torch.sigmoid(X @ w) / (len(X) - 1), None)),
         BATCH_AT, "fail", keywords={"wrt": ["w"]}),
]
