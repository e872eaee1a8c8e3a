"""Layers as autograd.Functions with hand-written backward passes, alone and inside modules."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import Case, function, normal, replace, uniform

EPS = 1e-5


# ------------------------------------------------------------------ linear


def linear(x, weight, bias):
    return x @ weight.T + bias


def linear_rule(g, x, weight, bias):
    return g @ weight, g.T @ x, g.sum(0)


def linear_module(rule):
    fn = function("LinearFn", linear, rule)

    class Linear(nn.Module):
        def __init__(self, n_in, n_out):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n_out, n_in) / math.sqrt(n_in))
            self.bias = nn.Parameter(0.1 * torch.randn(n_out))

        def forward(self, x):
            return torch.tanh(fn.apply(x, self.weight, self.bias))

    return Linear


# ------------------------------------------------------------------ conv1d


def conv1d(x, weight, bias):
    return F.conv1d(x, weight, bias, padding=1)


def conv1d_rule(g, x, weight, bias):
    return (F.conv_transpose1d(g, weight, padding=1),
            torch.nn.grad.conv1d_weight(x, weight.shape, g, padding=1), g.sum((0, 2)))


# ------------------------------------------------------------------ layer norm


def layer_norm(x, gamma, beta):
    mu = x.mean(-1, keepdim=True)
    sigma = torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + EPS)
    return (x - mu) / sigma * gamma + beta


def norm_rule(dim, eps=EPS, mean_term=True, variance_term=True):
    """The backward of normalising along ``dim`` then scaling by gamma and shifting by beta."""
    def rule(g, x, gamma, beta):
        mu = x.mean(dim, keepdim=True)
        sigma = torch.sqrt(((x - mu) ** 2).mean(dim, keepdim=True) + eps)
        xhat = (x - mu) / sigma
        gh = g * gamma
        gx = gh - (gh.mean(dim, keepdim=True) if mean_term else 0)
        gx = gx - (xhat * (gh * xhat).mean(dim, keepdim=True) if variance_term else 0)
        other = tuple(range(x.ndim - 1)) if dim == -1 else (dim,)
        return gx / sigma, (g * xhat).sum(other), g.sum(other)

    return rule


# ------------------------------------------------------------------ attention


def attention(q, k, v):
    p = torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), dim=-1)
    return p @ v


def attention_rule(g, q, k, v, scale_dq=True, softmax_correction=True, transpose_dv=True):
    d = math.sqrt(q.shape[-1])
    p = torch.softmax(q @ k.T / d, dim=-1)
    dp = g @ v.T
    ds = p * (dp - (dp * p).sum(-1, keepdim=True)) if softmax_correction else p * dp
    dv = p.T @ g if transpose_dv else p @ g
    return ds @ k / (d if scale_dq else 1.0), ds.T @ q / d, dv


# ------------------------------------------------------------------ dropout (a mask drawn in train mode)


P_DROP = 0.3


def dropout(x, keep):
    return x * keep / (1 - P_DROP)


def dropout_rule(g, x, keep):
    return g * keep / (1 - P_DROP), None


def dropout_module(rule):
    fn = function("DropoutFn", dropout, rule)
    lin = function("LinearFn", linear, linear_rule)

    class Dropout(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n, n) / math.sqrt(n))
            self.bias = nn.Parameter(torch.zeros(n))

        def forward(self, x):
            keep = (torch.rand_like(x) > P_DROP).to(x.dtype) if self.training else torch.ones_like(x)
            return lin.apply(fn.apply(x, keep), self.weight, self.bias)

    return Dropout


# ------------------------------------------------------------------ batch norm (batch statistics, running buffers)


def batch_norm(x, gamma, beta):
    mu = x.mean(0, keepdim=True)
    sigma = torch.sqrt(((x - mu) ** 2).mean(0, keepdim=True) + EPS)
    return (x - mu) / sigma * gamma + beta


def batch_norm_module(rule):
    fn = function("BatchNormFn", batch_norm, rule)

    class BatchNorm(nn.Module):
        def __init__(self, n, momentum=0.1):
            super().__init__()
            self.gamma = nn.Parameter(1 + 0.1 * torch.randn(n))
            self.beta = nn.Parameter(0.1 * torch.randn(n))
            self.register_buffer("running_mean", torch.zeros(n))
            self.register_buffer("running_var", torch.ones(n))
            self.momentum = momentum

        def forward(self, x):
            if self.training:  # state a call changes: gradrun puts it back
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * x.detach().mean(0))
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * x.detach().var(0))
                return fn.apply(x, self.gamma, self.beta)
            return (x - self.running_mean) / torch.sqrt(self.running_var + EPS) * self.gamma + self.beta

    return BatchNorm


def unbiased_rule(g, x, gamma, beta):
    n = x.shape[0]
    gx, gg, gb = norm_rule(0)(g, x, gamma, beta)
    return gx * math.sqrt((n - 1) / n), gg, gb


# ------------------------------------------------------------------ rms norm, batched matmul


def rms_norm(x, weight):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + EPS) * weight


def rms_rule(g, x, weight, second_term=True):
    rms = torch.sqrt((x * x).mean(-1, keepdim=True) + EPS)
    gx = g * weight / rms
    if second_term:
        gx = gx - x * (g * weight * x).sum(-1, keepdim=True) / (x.shape[-1] * rms ** 3)
    return gx, (g * x / rms).sum(tuple(range(x.ndim - 1)))


def bmm(a, b):
    return a @ b


def bmm_rule(g, a, b):
    return g @ b.transpose(1, 2), a.transpose(1, 2) @ g


def fn(name, forward):
    return lambda rule: function(name, forward, rule)


CASES = [
    Case("linear", fn("LinearFn", linear), linear_rule,
         {"x": normal(3, 4), "weight": normal(5, 4), "bias": normal(5)}, [
             ("bias-grad-first-row", replace(linear_rule, 2, lambda g, x, w, b, c: g[0])),
             ("weight-grad-first-sample", replace(linear_rule, 1, lambda g, x, w, b, c: g[:1].T @ x[:1])),
             ("bias-grad-wrong-shape", replace(linear_rule, 2, lambda g, x, w, b, c: g.sum())),
         ]),
    Case("linear-module", linear_module, linear_rule, {"x": normal(3, 4)}, [
        ("bias-grad-mean", replace(linear_rule, 2, lambda g, x, w, b, c: g.mean(0))),
        ("input-grad-1-percent-off", replace(linear_rule, 0, lambda g, x, w, b, c: c * 1.01)),
    ], wrt=("x", "params"), init={"n_in": 4, "n_out": 3}),
    Case("conv1d", fn("Conv1dFn", conv1d), conv1d_rule,
         {"x": normal(2, 3, 6), "weight": normal(4, 3, 3, scale=0.5), "bias": normal(4)}, [
             ("kernel-flipped", replace(conv1d_rule, 0, lambda g, x, w, b, c: F.conv_transpose1d(g, w.flip(-1), padding=1))),
             ("bias-grad-first-sample", replace(conv1d_rule, 2, lambda g, x, w, b, c: g[0].sum(-1))),
         ]),
    Case("layer-norm", fn("LayerNormFn", layer_norm), norm_rule(-1),
         {"x": normal(3, 5), "gamma": uniform(5, low=0.5, high=1.5), "beta": normal(5)}, [
             ("no-mean-term", norm_rule(-1, mean_term=False)),
             ("no-variance-term", norm_rule(-1, variance_term=False)),
             ("eps-dropped-in-backward", norm_rule(-1, eps=0.0)),
         ]),
    Case("attention", fn("AttentionFn", attention), attention_rule,
         {"q": normal(4, 3), "k": normal(4, 3), "v": normal(4, 2)}, [
             ("dq-unscaled", lambda *a: attention_rule(*a, scale_dq=False)),
             ("softmax-backward-no-correction", lambda *a: attention_rule(*a, softmax_correction=False)),
             ("dv-not-transposed", lambda *a: attention_rule(*a, transpose_dv=False)),
         ]),
    Case("dropout-train", dropout_module, dropout_rule, {"x": normal(3, 4)}, [
        ("no-rescale", lambda g, x, keep: (g * keep, None)),
        ("mask-ignored", lambda g, x, keep: (g / (1 - P_DROP), None)),
    ], wrt=("x",), init={"n": 4}, mode="train"),
    Case("batch-norm-train", batch_norm_module, norm_rule(0), {"x": normal(6, 3, scale=2.0)}, [
        ("no-mean-term", norm_rule(0, mean_term=False)),
        ("no-variance-term", norm_rule(0, variance_term=False)),
        ("unbiased-variance", unbiased_rule),
    ], wrt=("x", "params"), init={"n": 3}, mode="train"),
    Case("rms-norm", fn("RmsNormFn", rms_norm), rms_rule, {"x": normal(3, 4), "weight": normal(4)}, [
        ("no-second-term", lambda g, x, w: rms_rule(g, x, w, second_term=False)),
    ]),
    Case("bmm", fn("BmmFn", bmm), bmm_rule, {"a": normal(2, 3, 4), "b": normal(2, 4, 2)}, [
        ("batches-swapped", replace(bmm_rule, 1, lambda g, a, b, c: c.flip(0))),
    ]),
]
