"""Losses as autograd.Functions with hand-written backward passes."""

import torch
import torch.nn.functional as F

from . import Case, function, labels, normal, replace


def cross_entropy(logits, target):
    return F.cross_entropy(logits, target.long())


def cross_entropy_rule(g, logits, target):
    onehot = F.one_hot(target.long(), logits.shape[-1]).to(logits.dtype)
    return g * (torch.softmax(logits, -1) - onehot) / logits.shape[0], None


def mse(pred, target):
    return ((pred - target) ** 2).mean()


def mse_rule(g, pred, target):
    d = g * 2 * (pred - target) / pred.numel()
    return d, -d


def fn(name, forward):
    return lambda rule: function(name, forward, rule)


CASES = [
    Case("softmax-cross-entropy", fn("CrossEntropyFn", cross_entropy), cross_entropy_rule,
         {"logits": normal(4, 5), "target": labels(4, 5)}, [
             ("not-divided-by-batch", replace(cross_entropy_rule, 0, lambda g, z, t, c: c * z.shape[0])),
             ("onehot-added", replace(cross_entropy_rule, 0, lambda g, z, t, c: g * (
                 torch.softmax(z, -1) + F.one_hot(t.long(), z.shape[-1]).to(z.dtype)) / z.shape[0])),
         ], wrt=("logits",)),
    Case("mse", fn("MseFn", mse), mse_rule, {"pred": normal(6), "target": normal(6)}, [
        ("target-grad-sign", lambda g, p, t: (mse_rule(g, p, t)[0],) * 2),
        ("missing-two", lambda g, p, t: tuple(d / 2 for d in mse_rule(g, p, t))),
    ]),
]
