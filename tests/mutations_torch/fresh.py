"""A fresh torch corpus, written from first principles apart from the others.

Strided, padded and dilated conv2d; max-pool with ties; group, instance and RMS
norms inside modules; an embedding with repeated indices; an LSTM cell;
softmax over a leading axis; logsumexp of logits near 1000; cumprod through
a zero; masked fill; hardtanh at its bounds; top-k; cosine similarity; causal
attention; smooth-L1 at its kink; KL divergence against near-zero targets;
broadcast batched matmul; einsum; a saved tensor changed in place after it
was saved; float16 inside a float32 backward.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from mutations.fresh import TIES_MISS

from . import Case, function, normal, replace, uniform


def fixed(values):
    return lambda rng: torch.tensor(values, dtype=torch.float64).numpy()


def fn(name, forward):
    return lambda rule: function(name, forward, rule)


def off(k, rel, index=None):
    """A mutant maker: gradient k off by ``rel`` relative (one flat entry, or all of it)."""
    def new(grad, *xs_and_correct):
        c = xs_and_correct[-1].clone()
        if index is None:
            return c * (1 + rel)
        c.view(-1)[index] *= 1 + rel
        return c

    return lambda rule: replace(rule, k, new)


def half_in_single(rule):
    """A bug in float32 only: the backward runs in float16 there ('mixed precision')."""
    def mutant(grad, *xs):
        if grad.dtype != torch.float32:
            return rule(grad, *xs)
        out = rule(grad.half(), *[x.half() if x.is_floating_point() else x for x in xs])
        return tuple(None if o is None else o.float() for o in out)

    mutant.only_in = ("float32",)
    return mutant


# ------------------------------------------------------------------ conv2d, stride 2, padding 1, dilation 2

CONV = dict(stride=2, padding=1, dilation=2)


def conv2d(x, weight, bias):
    return F.conv2d(x, weight, bias, **CONV)


def conv2d_rule(g, x, weight, bias):
    gx = torch.nn.grad.conv2d_input(x.shape, weight, g, **CONV)
    return gx, torch.nn.grad.conv2d_weight(x, weight.shape, g, **CONV), g.sum((0, 2, 3))


# ------------------------------------------------------------------ max-pool 1d with ties (width 2, stride 2)


def maxpool(x):
    return F.max_pool1d(x, 2)


def maxpool_rule(g, x, ties="first"):
    win = x.reshape(*x.shape[:-1], -1, 2)
    if ties == "all":
        hit = (win == win.amax(-1, keepdim=True)).to(g.dtype)
        return (hit * g.unsqueeze(-1)).reshape(x.shape),
    idx = win.argmax(-1, keepdim=True)  # torch's argmax: the first of tied maxima
    out = torch.zeros_like(win).scatter(-1, idx, g.unsqueeze(-1))
    return out.reshape(x.shape),


# ------------------------------------------------------------------ group norm module (affine), instance norm

GN_EPS = 1e-5


def group_norm(x, weight, bias):
    N, C, L = x.shape
    xg = x.reshape(N, 2, -1)
    mu = xg.mean(-1, keepdim=True)
    var = xg.var(-1, unbiased=False, keepdim=True)
    return ((xg - mu) / torch.sqrt(var + GN_EPS)).reshape(N, C, L) * weight[:, None] + bias[:, None]


def group_norm_rule(g, x, weight, bias, unbiased=False, mean_term=True):
    N, C, L = x.shape
    xg = x.reshape(N, 2, -1)
    mu = xg.mean(-1, keepdim=True)
    rstd = 1 / torch.sqrt(xg.var(-1, unbiased=unbiased, keepdim=True) + GN_EPS)
    xh = (xg - mu) * rstd
    gh = (g * weight[:, None]).reshape(N, 2, -1)
    gx = gh - (gh.mean(-1, keepdim=True) if mean_term else 0) - xh * (gh * xh).mean(-1, keepdim=True)
    return (gx * rstd).reshape(N, C, L), (g * xh.reshape(N, C, L)).sum((0, 2)), g.sum((0, 2))


def group_norm_module(rule):
    fn_ = function("GroupNormFn", group_norm, rule)

    class GroupNorm(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.weight = nn.Parameter(1 + 0.2 * torch.randn(channels))
            self.bias = nn.Parameter(0.2 * torch.randn(channels))

        def forward(self, x):
            return torch.tanh(fn_.apply(x, self.weight, self.bias))

    return GroupNorm


def instance_norm(x):
    mu = x.mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + GN_EPS)


def instance_norm_rule(g, x, use_output=False):
    mu = x.mean(-1, keepdim=True)
    rstd = 1 / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + GN_EPS)
    xh = (x - mu) * rstd
    src = instance_norm(x) * 1.0 if not use_output else x  # the raw input where the normalised one belongs
    return rstd * (g - g.mean(-1, keepdim=True) - xh * (g * src).mean(-1, keepdim=True)),


# ------------------------------------------------------------------ RMS norm module

RMS_EPS = 1e-6


def rms_norm(x, weight):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + RMS_EPS) * weight


def rms_norm_rule(g, x, weight, per_n=True):
    r = torch.rsqrt((x * x).mean(-1, keepdim=True) + RMS_EPS)
    y = x * r
    gy = g * weight
    n = x.shape[-1] if per_n else 1
    return r * (gy - y * (gy * y).sum(-1, keepdim=True) / n), (g * y).reshape(-1, x.shape[-1]).sum(0)


def rms_module(rule):
    fn_ = function("RMSNormFn", rms_norm, rule)

    class RMSNorm(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(1 + 0.3 * torch.randn(d))

        def forward(self, x):
            return fn_.apply(x, self.weight)

    return RMSNorm


# ------------------------------------------------------------------ embedding with repeated indices

IDX = [1, 3, 1, 1, 0, 3]


def embedding(weight):
    return torch.sin(weight[torch.tensor(IDX)])


def embedding_rule(g, weight, accumulate=True):
    idx = torch.tensor(IDX)
    gz = g * torch.cos(weight[idx])
    return torch.zeros_like(weight).index_put((idx,), gz, accumulate=accumulate),


# ------------------------------------------------------------------ LSTM cell as a module on torch's own autograd


class LSTMCell(nn.Module):
    """Written out by hand; torch differentiates it (no rule, no mutants)."""

    def __init__(self, n_in, n_hidden):
        super().__init__()
        self.w = nn.Parameter(torch.randn(n_in + n_hidden, 4 * n_hidden) * 0.5)
        self.b = nn.Parameter(torch.zeros(4 * n_hidden))

    def forward(self, x, h, c):
        i, f, o, u = (torch.cat([x, h], -1) @ self.w + self.b).chunk(4, -1)
        c2 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(u)
        return torch.sigmoid(o) * torch.tanh(c2) + c2


# ------------------------------------------------------------------ GRU cell as an autograd.Function


def gru_cell(x, h, wx, wh):
    H = h.shape[-1]
    ax, ah = x @ wx, h @ wh
    z = torch.sigmoid(ax[:, :H] + ah[:, :H])
    r = torch.sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
    n = torch.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])
    return (1 - z) * n + z * h


def gru_rule(g, x, h, wx, wh, hidden_path=True, z_from_n=False):
    H = h.shape[-1]
    ax, ah = x @ wx, h @ wh
    z = torch.sigmoid(ax[:, :H] + ah[:, :H])
    r = torch.sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
    n = torch.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])
    gz = g * ((n - h) if z_from_n else (h - n))  # the sign of the update gate's derivative
    gan = g * (1 - z) * (1 - n * n)
    gaz, gar = gz * z * (1 - z), gan * ah[:, 2 * H:] * r * (1 - r)
    gax = torch.cat([gaz, gar, gan], -1)
    gah = torch.cat([gaz, gar, gan * r], -1)
    gh = gah @ wh.T + (g * z if hidden_path else 0)  # the direct path h -> z * h
    return gax @ wx.T, gh, x.T @ gax, h.T @ gah


# ------------------------------------------------------------------ softmax over dim 0, logsumexp near 1000


def softmax0(x):
    return torch.softmax(x, 0)


def softmax0_rule(g, x, dim=0):
    s = torch.softmax(x, 0)
    return s * (g - (g * s).sum(dim, keepdim=True)),


def lse(x):
    return torch.logsumexp(x, -1)


def lse_rule(g, x, use_exp=False):
    if use_exp:  # softmax as exp(x - lse) rounded through float32's lse: fine; this one drops the shift
        return g.unsqueeze(-1) * torch.exp(x - x.max(-1, keepdim=True).values) / torch.exp(
            x - x.max(-1, keepdim=True).values).sum(-1, keepdim=True) * (1 + 1e-4),
    return g.unsqueeze(-1) * torch.softmax(x, -1),


# ------------------------------------------------------------------ cumprod through a zero, masked fill


def cumprod(x):
    return torch.cumprod(x, 0)


def cumprod_rule(g, x, divide=False):
    n = x.shape[0]
    if divide:
        p = torch.cumprod(x, 0)
        safe = torch.where(x == 0, torch.ones_like(x), x)
        return torch.flip(torch.cumsum(torch.flip(g * p, [0]), 0), [0]) / safe,
    rows = []
    for j in range(n):
        others = torch.where(torch.arange(n) == j, torch.ones_like(x), x)
        rows.append((g[j:] * torch.cumprod(others, 0)[j:]).sum())
    return torch.stack(rows),


MASK = [True, True, False, True, False, False, True]


def masked_exp(x):
    return torch.exp(x).masked_fill(~torch.tensor(MASK), 0.0)


def masked_exp_rule(g, x, forget=False):
    d = g * torch.exp(x)
    return (d if forget else d.masked_fill(~torch.tensor(MASK), 0.0)),


# ------------------------------------------------------------------ hardtanh at both bounds, top-k


def hardtanh_cube(x):
    return F.hardtanh(x) ** 3 + 0.5 * x


def hardtanh_cube_rule(g, x, outside=0.0):
    h = F.hardtanh(x)
    inside = (x.abs() <= 1).to(x.dtype)
    return g * (3 * h * h * inside + outside * (1 - inside) * torch.sign(x) + 0.5),


def topk_sq(x):
    return torch.topk(x, 3, -1).values ** 2


def topk_rule(g, x, sorted_positions=False):
    vals, idx = torch.topk(x, 3, -1)
    if sorted_positions:  # scatters to the rank, not the position the value came from
        idx = torch.arange(3).expand_as(idx)
    return torch.zeros_like(x).scatter(-1, idx, 2 * vals * g),


# ------------------------------------------------------------------ cosine similarity, causal attention


def cosine(a, b):
    return F.cosine_similarity(a, b, dim=-1)


def cosine_rule(g, a, b, drop_b_projection=False):
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    c = ((a * b).sum(-1, keepdim=True) / (na * nb))
    gg = g.unsqueeze(-1)
    ga = gg * (b / (na * nb) - c * a / na ** 2)
    gb = gg * (a / (na * nb) - (0 if drop_b_projection else c * b / nb ** 2))
    return ga, gb


def causal(q, k, v):
    T = q.shape[-2]
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    return torch.softmax(s, -1) @ v


def causal_rule(g, q, k, v, masked=True, scale_dk=True):
    T, d = q.shape[-2], math.sqrt(q.shape[-1])
    s = q @ k.transpose(-1, -2) / d
    if masked:
        s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    p = torch.softmax(s, -1)
    gp = g @ v.transpose(-1, -2)
    gs = p * (gp - (gp * p).sum(-1, keepdim=True)) / d
    return gs @ k, gs.transpose(-1, -2) @ q * (1 if scale_dk else d), p.transpose(-1, -2) @ g


# ------------------------------------------------------------------ smooth L1 at its kink, KL with near-zero targets

BETA = 1.0


def smooth_l1(pred, target):
    return F.smooth_l1_loss(pred, target, beta=BETA, reduction="sum")


def smooth_l1_rule(g, pred, target, far_sign=1.0):
    r = pred - target
    d = torch.where(r.abs() < BETA, r / BETA, torch.where(r > 0, torch.ones_like(r), -far_sign * torch.ones_like(r)))
    return g * d, -g * d


P_KL = [0.6, 0.25, 1e-14, 0.15 - 2e-14, 1e-14]


def kl(logits):
    p = torch.tensor(P_KL, dtype=logits.dtype)
    return F.kl_div(torch.log_softmax(logits, -1), p, reduction="sum")


def kl_rule(g, logits):
    p = torch.tensor(P_KL, dtype=logits.dtype)
    return g * (torch.softmax(logits, -1) * p.sum() - p),


P_Q = [0.35, 0.3, 0.2, 0.15]


def kl_q(q):
    p = torch.tensor(P_Q, dtype=q.dtype)
    return (p * torch.log(p / q)).sum()


def kl_q_rule(g, q):
    return -g * torch.tensor(P_Q, dtype=q.dtype) / q,


# ------------------------------------------------------------------ broadcast batched matmul, einsum


def bcast_mm(a, b):
    return a @ b  # a: (2, 3, 2), b: (2, 4) broadcast over a's batch


def bcast_mm_rule(g, a, b, reduce_b=True):
    gb = a.transpose(-1, -2) @ g
    return g @ b.T, gb.sum(0) if reduce_b else gb[-1]


def bilinear_einsum(x, W, y):
    return torch.einsum("bi,oij,bj->bo", x, W, y)


def bilinear_rule(g, x, W, y, swap=False):
    gx = torch.einsum("bo,oij,bj->bi", g, W, y)
    gW = torch.einsum("bo,bi,bj->oij", g, x, y)
    gy = torch.einsum("bo,oij,bi->bj", g, W.transpose(1, 2) if swap else W, x)
    return gx, gW, gy


# ------------------------------------------------------------------ a saved tensor changed in place after it was saved


def stale_saved(corrupt):
    """exp(x) * w; the backward reads the saved exp(x), which the forward then
    (in the buggy variant) turns in place into the output it returns."""

    class ExpScale(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            e = torch.exp(x)
            ctx.e, ctx.w = e, w  # saved as attributes: torch's version counter does not watch them
            if corrupt:
                out = e.mul_(w)  # in place: ctx.e is now exp(x) * w
            else:
                out = e * w
            return out

        @staticmethod
        def backward(ctx, g):
            return g * ctx.e * ctx.w, g * ctx.e

    return ExpScale


def layer_norm_autograd(x):
    return F.layer_norm(x, x.shape[-1:])


CASES = [
    Case("fresh-conv2d", fn("Conv2dFn", conv2d), conv2d_rule,
         {"x": normal(1, 2, 5, 5), "weight": normal(2, 2, 2, 2, scale=0.5), "bias": normal(2)}, [
             ("weight-grad-flipped", replace(conv2d_rule, 1, lambda g, x, w, b, c: c.flip((-2, -1)))),
             ("bias-grad-last-row-dropped", replace(conv2d_rule, 2, lambda g, x, w, b, c: g[..., :-1, :].sum((0, 2, 3)))),
             ("float16-in-float32", half_in_single(conv2d_rule)),
         ]),
    Case("fresh-maxpool-ties", fn("MaxPoolFn", maxpool), maxpool_rule, {"x": fixed([[[0.0, 0.0, 2.0, 2.0, -1.0, 3.0]]])},
         [("ties-all-get-grad", lambda g, x: maxpool_rule(g, x, "all"))],
         known_misses={"ties-all-get-grad": TIES_MISS}),
    Case("fresh-group-norm", group_norm_module, group_norm_rule, {"x": normal(2, 4, 3)}, [
        ("unbiased-variance", lambda *a: group_norm_rule(*a, unbiased=True)),
        ("mean-term-dropped", lambda *a: group_norm_rule(*a, mean_term=False)),
    ], wrt=("x", "params"), init={"channels": 4}),
    Case("fresh-instance-norm", fn("InstanceNormFn", instance_norm), instance_norm_rule, {"x": normal(2, 3, 4)}, [
        ("input-for-normalised", lambda g, x: instance_norm_rule(g, x, use_output=True)),
    ]),
    Case("fresh-rms-norm", rms_module, rms_norm_rule, {"x": normal(2, 5)}, [
        ("no-1-over-n", lambda *a: rms_norm_rule(*a, per_n=False)),
        ("weight-grad-last-off-1e-3", off(1, 1e-3, index=4)(rms_norm_rule)),
        ("float16-in-float32", half_in_single(rms_norm_rule)),
    ], wrt=("x", "params"), init={"d": 5}),
    Case("fresh-embedding-repeats", fn("EmbeddingFn", embedding), embedding_rule, {"weight": normal(4, 3)}, [
        ("index-put-without-accumulate", lambda g, w: embedding_rule(g, w, accumulate=False)),
    ]),
    Case("fresh-lstm-autograd", lambda rule: LSTMCell, None,
         {"x": normal(2, 3), "h": normal(2, 2), "c": normal(2, 2)},
         wrt=("x", "h", "c", "params"), init={"n_in": 3, "n_hidden": 2}),
    Case("fresh-gru-cell", fn("GRUCellFn", gru_cell), gru_rule,
         {"x": normal(2, 3), "h": normal(2, 2), "wx": normal(3, 6, scale=0.7), "wh": normal(2, 6, scale=0.7)}, [
             ("direct-hidden-path-dropped", lambda *a: gru_rule(*a, hidden_path=False)),
             ("update-gate-sign", lambda *a: gru_rule(*a, z_from_n=True)),
             ("wh-grad-off-1e-7", off(3, -1e-7)(gru_rule)),
         ]),
    Case("fresh-softmax-dim0", fn("Softmax0Fn", softmax0), softmax0_rule, {"x": normal(3, 4)}, [
        ("reduced-over-dim-1", lambda g, x: softmax0_rule(g, x, dim=1)),
    ]),
    Case("fresh-logsumexp-1000", fn("LSEFn", lse), lse_rule, {"x": lambda rng: 1000 + 2 * rng.standard_normal((2, 5))}, [
        ("off-1e-4", lambda g, x: lse_rule(g, x, use_exp=True)),
        ("last-entry-off-1e-5", off(0, 1e-5, index=9)(lse_rule)),
    ]),
    Case("fresh-cumprod-zero", fn("CumprodFn", cumprod), cumprod_rule, {"x": fixed([0.9, -1.3, 0.0, 1.1, 0.7])}, [
        ("divide-by-x", lambda g, x: cumprod_rule(g, x, divide=True)),
    ]),
    Case("fresh-masked-fill", fn("MaskedExpFn", masked_exp), masked_exp_rule, {"x": normal(7)}, [
        ("mask-forgotten-in-backward", lambda g, x: masked_exp_rule(g, x, forget=True)),
    ]),
    Case("fresh-hardtanh-bounds", fn("HardtanhCubeFn", hardtanh_cube), hardtanh_cube_rule,
         {"x": fixed([1.0, -1.0, 0.3, -2.5, 1.8, -0.6])}, [
             ("outside-branch-nonzero", lambda g, x: hardtanh_cube_rule(g, x, outside=-0.25)),
         ]),
    Case("fresh-topk", fn("TopkFn", topk_sq), topk_rule, {"x": normal(2, 5)}, [
        ("scatter-to-rank", lambda g, x: topk_rule(g, x, sorted_positions=True)),
    ]),
    Case("fresh-cosine", fn("CosineFn", cosine), cosine_rule, {"a": normal(3, 4), "b": normal(3, 4)}, [
        ("b-projection-dropped", lambda g, a, b: cosine_rule(g, a, b, drop_b_projection=True)),
    ]),
    Case("fresh-causal-attention", fn("CausalFn", causal), causal_rule,
         {"q": normal(3, 2), "k": normal(3, 2), "v": normal(3, 2)}, [
             ("mask-forgotten-in-backward", lambda *a: causal_rule(*a, masked=False)),
             ("dk-unscaled", lambda *a: causal_rule(*a, scale_dk=False)),
         ]),
    Case("fresh-causal-autograd", lambda rule: causal, None,
         {"q": normal(4, 3), "k": normal(4, 3), "v": normal(4, 3)}),
    Case("fresh-smooth-l1-kink", fn("SmoothL1Fn", smooth_l1), smooth_l1_rule,
         {"pred": fixed([1.0, -1.0, 0.4, -2.2, 3.0]), "target": fixed([0.0, 0.0, 0.0, 0.0, 0.5])}, [
             ("far-negative-sign", lambda *a: smooth_l1_rule(*a, far_sign=-1.0)),
         ]),
    Case("fresh-kl-near-zero", fn("KLFn", kl), kl_rule, {"logits": normal(5)}, [
        ("off-1e-6", off(0, 1e-6)(kl_rule)),
    ]),
    Case("fresh-kl-tiny-q", fn("KLqFn", kl_q), kl_q_rule, {"q": fixed([0.6, 1e-18, 0.4, 1e-25])}, [
        ("tiny-entry-off-1e-5", off(0, 1e-5, index=3)(kl_q_rule)),
    ]),
    Case("fresh-bcast-matmul", fn("BcastMMFn", bcast_mm), bcast_mm_rule, {"a": normal(2, 3, 2), "b": normal(2, 4)}, [
        ("broadcast-axis-not-summed", lambda g, a, b: bcast_mm_rule(g, a, b, reduce_b=False)),
    ]),
    Case("fresh-bilinear-einsum", fn("BilinearFn", bilinear_einsum), bilinear_rule,
         {"x": normal(2, 3), "W": normal(2, 3, 3), "y": normal(2, 3)}, [
             ("W-transposed-for-y", lambda *a: bilinear_rule(*a, swap=True)),
         ]),
    # torch's own layer norm of inputs near 1e4 with a spread of 1: correct, and float32 is 1e-3 off
    Case("fresh-layer-norm-offset-autograd", lambda rule: layer_norm_autograd, None,
         {"x": lambda rng: 1e4 + rng.standard_normal((2, 6))}),
    Case("fresh-instance-norm-offset", fn("InstanceNormFn", instance_norm), instance_norm_rule,
         {"x": lambda rng: 3e3 + rng.standard_normal((2, 5))}, [
             ("float16-in-float32", half_in_single(instance_norm_rule)),
         ]),
    Case("fresh-saved-mutated", lambda rule: stale_saved(rule), False, {"x": normal(5), "w": uniform(5, low=0.5, high=2.0)},
         [("mutated-in-place", True)]),
]
