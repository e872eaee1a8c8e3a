"""Activations as autograd.Functions with hand-written backward passes."""

import math

import torch

from . import Case, function, replace, uniform


def gelu(x):
    return x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def gelu_rule(g, x):
    pdf = torch.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    return (g * (0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * pdf),)


def one_entry(g, x, correct):
    bumped = correct.clone()
    bumped.view(-1)[1] = bumped.view(-1)[1] * (1 + 1e-3)
    return bumped


def tanh(x):
    return torch.tanh(x)


def tanh_rule(g, x):
    return (g * (1 - torch.tanh(x) ** 2),)


def raises(g, x):
    raise RuntimeError("backward not implemented for this case")


def sigmoid(x):
    return torch.sigmoid(x)


def sigmoid_rule(g, x):
    s = torch.sigmoid(x)
    return (g * s * (1 - s),)


def softplus(x):
    return torch.log1p(torch.exp(x))


def softplus_rule(g, x):
    return (g * torch.sigmoid(x),)


def logsumexp(x):
    return torch.logsumexp(x, dim=-1)


def logsumexp_rule(g, x):
    return (g[..., None] * torch.softmax(x, dim=-1),)


def fn(name, forward):
    return lambda rule: function(name, forward, rule)


CASES = [
    Case("gelu", fn("Gelu", gelu), gelu_rule, {"x": uniform(2, 3, low=-3, high=3)}, [
        ("missing-pdf-term", lambda g, x: (g * 0.5 * (1 + torch.erf(x / math.sqrt(2))),)),
        ("pdf-without-half", lambda g, x: (g * (0.5 * (1 + torch.erf(x / math.sqrt(2)))
                                                + x * torch.exp(-x * x) / math.sqrt(2 * math.pi)),)),
        ("one-entry-1e-3", replace(gelu_rule, 0, one_entry)),
    ]),
    Case("tanh", fn("Tanh", tanh), tanh_rule, {"x": uniform(5, low=-2, high=2)}, [
        ("one-minus-y", lambda g, x: (g * (1 - torch.tanh(x)),)),
        ("backward-raises", raises),
    ]),
    Case("sigmoid", fn("Sigmoid", sigmoid), sigmoid_rule, {"x": uniform(4, low=-3, high=3)}, [
        ("missing-one-minus", lambda g, x: (g * torch.sigmoid(x),)),
    ]),
    Case("softplus", fn("Softplus", softplus), softplus_rule, {"x": uniform(4, low=-3, high=3)}, [
        ("sigmoid-of-minus-x", lambda g, x: (g * torch.sigmoid(-x),)),
        ("detached-zero", lambda g, x: (torch.zeros_like(x),)),
    ]),
    Case("logsumexp", fn("LogSumExp", logsumexp), logsumexp_rule, {"x": uniform(3, 4, low=-2, high=2)}, [
        ("cotangent-not-broadcast", lambda g, x: (torch.softmax(x, dim=-1),)),
    ]),
]
