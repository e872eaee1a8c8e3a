"""Red-team round 10 in torch: autograd.Functions with hand-written backward passes, modules and
torch's own code, checked with default settings. Each case: the code, its inputs, what gradrun
must say (``pass`` or ``fail``), the dtypes, and adapter keywords (wrt, mode, init).

torch's own grid_sample (bilinear, zero padding, samples half outside the image), CTC loss
over log-softmax outputs, and CTC loss checked in its log_probs (torch's backward is the gradient
through a log_softmax it assumes, pytorch/pytorch#52241: not the derivative of what it computes,
which gradrun must say), a two-layer GRU module, average pooling with ceil mode and padding not counted,
local response norm, GLU;  Functions for SwiGLU (silu's slope term dropped), a segment softmax
by index_add (one global sum), a linear scan with decays of 0.999 (a decay one step early),
sparsemax (its mean over K), a module whose hand-written Function shares a weight between
gate and transform (its gradient accumulated twice), and an instance norm whose std is
detached in the module's forward.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fresh8.torch_cases import Case
from mutations_torch import function

RNG = np.random.default_rng(1010)


def grid_sample(img, grid):
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def ctc(log_probs):  # (T, N, C) scores, already log-probabilities or not
    targets = torch.tensor([[1, 2, 2], [3, 1, 0]])
    return F.ctc_loss(log_probs, targets, torch.tensor([6, 5]), torch.tensor([3, 2]), reduction="sum")


def ctc_softmax(z):
    return ctc(torch.log_softmax(z, -1))


class GRU2(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(2, 3, num_layers=2, batch_first=True)

    def forward(self, x):
        return self.gru(x)[0]


def avg_pool(x):
    return F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)


def lrn(x):
    return F.local_response_norm(x, 3, alpha=1e-2, beta=0.75, k=1.0)


# SwiGLU as a Function: silu(x W1) * (x W2)
def _swiglu(x, W1, W2):
    return F.silu(x @ W1) * (x @ W2)


def _swiglu_backward(g, x, W1, W2, drop=False):
    a, b = x @ W1, x @ W2
    s = torch.sigmoid(a)
    slope = s if drop else s * (1 + a * (1 - s))
    ga, gb = g * b * slope, g * a * s
    return ga @ W1.T + gb @ W2.T, x.T @ ga, x.T @ gb


def swiglu(drop=False):
    return function("SwiGLU", _swiglu, lambda g, *a: _swiglu_backward(g, *a, drop))


# a softmax within each segment (GNN attention), segments by index_add
SEG = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])


def _seg_sums(v):
    return torch.zeros(4, dtype=v.dtype).index_add(0, SEG, v)[SEG]


def _seg_softmax(x):
    e = torch.exp(x - x.max())
    return e / _seg_sums(e)


def _seg_backward(g, x, global_sum=False):
    y = _seg_softmax(x)
    return (y * (g - ((g * y).sum() if global_sum else _seg_sums(g * y))),)


def seg_softmax(global_sum=False):
    return function("SegmentSoftmax", _seg_softmax, lambda g, x: _seg_backward(g, x, global_sum))


# a linear scan h_t = a_t h_{t-1} + b_t with a_t = sigmoid(u_t) near 0.999
def _scan(u, b):
    a, h, out = torch.sigmoid(u), torch.zeros((), dtype=b.dtype), []
    for t in range(len(b)):
        h = a[t] * h + b[t]
        out.append(h)
    return torch.stack(out)


def _scan_backward(g, u, b, early=False):
    a, h = torch.sigmoid(u), _scan(u, b)
    gh, carry = torch.zeros_like(b), torch.zeros((), dtype=b.dtype)
    for t in range(len(b) - 1, -1, -1):
        carry = g[t] + carry
        gh[t] = carry
        carry = carry * (a[t - 1] if early else a[t])
    hprev = torch.cat([torch.zeros(1, dtype=b.dtype), h[:-1]])
    return gh * hprev * a * (1 - a), gh


def scan(early=False):
    return function("Scan", _scan, lambda g, u, b: _scan_backward(g, u, b, early))


# sparsemax over rows
def _sparsemax(z):
    zs = torch.sort(z, -1, descending=True).values
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cs = zs.cumsum(-1)
    n = (1 + k * zs > cs).sum(-1, keepdim=True)
    tau = (cs.gather(-1, n - 1) - 1) / n
    return torch.clamp(z - tau, min=0)


def _sparsemax_backward(g, z, over_k=False):
    s = (_sparsemax(z) > 0).to(z.dtype)
    n = z.shape[-1] if over_k else s.sum(-1, keepdim=True)
    return (s * (g - (g * s).sum(-1, keepdim=True) / n),)


def sparsemax(over_k=False):
    return function("Sparsemax", _sparsemax, lambda g, z: _sparsemax_backward(g, z, over_k))


# a highway layer whose gate and transform share W, as a module around a hand-written Function
def _highway(x, W, bt):
    T, H = torch.sigmoid(x @ W + bt), torch.tanh(x @ W)
    return T * H + (1 - T) * x


def _highway_backward(g, x, W, bt, twice=False):
    T, H = torch.sigmoid(x @ W + bt), torch.tanh(x @ W)
    gt = g * (H - x) * T * (1 - T)
    gh = g * T * (1 - H * H)
    gW = x.T @ (gt + gh)
    if twice:
        gW = gW + x.T @ gh
    return g * (1 - T) + (gt + gh) @ W.T, gW, gt.sum(0)


class Highway(nn.Module):
    def __init__(self, twice=False):
        super().__init__()
        self.W = nn.Parameter(torch.randn(4, 4) * 0.6)
        self.bt = nn.Parameter(torch.randn(4))
        self.fn = function("Highway", _highway, lambda g, *a: _highway_backward(g, *a, twice))

    def forward(self, x):
        return self.fn.apply(x, self.W, self.bt)


# instance norm over the length axis; the bug: the std detached in the forward
class InstanceNorm(nn.Module):
    def __init__(self, detach_std=False):
        super().__init__()
        self.gain = nn.Parameter(1 + 0.1 * torch.randn(3, 1))
        self.detach_std = detach_std

    def forward(self, x):
        c = x - x.mean(-1, keepdim=True)
        s = torch.sqrt((c * c).mean(-1, keepdim=True) + 1e-5)
        return self.gain * c / (s.detach() if self.detach_std else s)


# samples inside, on the border's half-pixel and outside the 4 x 5 image (zero padding)
GRID_AT = {"img": RNG.normal(size=(1, 1, 3, 4)),
           "grid": np.array([[[[0.13, -0.41], [-0.93, 0.67]], [[1.08, 0.3], [-0.55, -1.1]]]])}
CTC_AT = {"log_probs": np.log(RNG.dirichlet(np.ones(5), size=(6, 2)))}
CTC_RAW = {"log_probs": RNG.normal(size=(6, 2, 5))}
CTC_Z = {"z": RNG.normal(size=(6, 2, 5)) * 2}
GRU_AT = {"x": RNG.normal(size=(1, 3, 2))}
POOL_AT = {"x": RNG.normal(size=(1, 2, 5, 6))}
LRN_AT = {"x": RNG.normal(size=(2, 5, 3)) * 3}
GLU_AT = {"x": RNG.normal(size=(3, 6))}
SWIGLU_AT = {"x": RNG.normal(size=(3, 4)), "W1": RNG.normal(size=(4, 5)), "W2": RNG.normal(size=(4, 5))}
SEG_AT = {"x": np.array([0.3, -1.2, 2.0, 0.7, 30.0, -10.0, 1.0, 0.0])}
SCAN_AT = {"u": 7 + 0.5 * RNG.normal(size=48), "b": RNG.normal(size=48)}
SPARSE_AT = {"z": np.array([[1.2, 0.9, -0.4, 0.3, 1.0], [0.1, 0.3, -0.2, 0.25, 0.05]])}
HIGHWAY_AT = {"x": RNG.normal(size=(3, 4))}
INORM_AT = {"x": RNG.normal(size=(2, 3, 5)) * 2 + 1}
PARAMS = {"wrt": ["x", "params"]}

CASES = [
    Case("grid-sample-zeros", grid_sample, GRID_AT, "pass", dtypes=("float32",)),
    # torch's CTC backward gives exp(log_probs) - posterior, the gradient through a log_softmax it
    # assumes (pytorch/pytorch#52241, #181534): right after a log_softmax, not the derivative of the
    # loss in log_probs themselves, even where they are log-probabilities (a move of one is not)
    Case("ctc-loss-log-softmax", ctc_softmax, CTC_Z, "pass"),
    Case("ctc-loss@torch-log-probs", ctc, CTC_AT, "fail"),
    Case("ctc-loss@torch-unnormalised", ctc, CTC_RAW, "fail", dtypes=("float32",)),
    Case("gru-2-layers", GRU2, GRU_AT, "pass", dtypes=("float32",), keywords=PARAMS),
    Case("avg-pool-ceil-no-pad-count", avg_pool, POOL_AT, "pass"),
    Case("local-response-norm", lrn, LRN_AT, "pass"),
    Case("glu", lambda x: F.glu(x, -1), GLU_AT, "pass"),
    Case("swiglu", swiglu(), SWIGLU_AT, "pass"),
    Case("swiglu@silu-term-dropped", swiglu(True), SWIGLU_AT, "fail"),
    Case("segment-softmax", seg_softmax(), SEG_AT, "pass"),
    Case("segment-softmax@global-sum", seg_softmax(True), SEG_AT, "fail"),
    Case("scan-0.999", scan(), SCAN_AT, "pass"),
    Case("scan-0.999@decay-early", scan(True), SCAN_AT, "fail"),
    Case("sparsemax", sparsemax(), SPARSE_AT, "pass"),
    Case("sparsemax@mean-over-K", sparsemax(True), SPARSE_AT, "fail"),
    Case("highway-shared-W", Highway, HIGHWAY_AT, "pass", keywords=PARAMS),
    Case("highway-shared-W@accumulated-twice", Highway, HIGHWAY_AT, "fail",
         keywords={**PARAMS, "init": {"twice": True}}),
    Case("instance-norm", InstanceNorm, INORM_AT, "pass", keywords=PARAMS),
    Case("instance-norm@std-detached", InstanceNorm, INORM_AT, "fail",
         keywords={**PARAMS, "init": {"detach_std": True}}),
]
