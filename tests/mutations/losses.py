"""Losses, scalar-valued: MSE, cross-entropy with fixed labels, BCE with logits, Huber."""

import numpy as np

from . import Case, away, normal, precision_ladder, sigmoid, softmax, uniform, zeros

LABELS = np.array([1, 0, 3, 2])  # fixed, for logits of shape (4, 5)


def f_mse(pred, target):
    return np.mean((pred - target) ** 2)


def vjp_mse(g, pred, target):
    d = g * 2 * (pred - target) / pred.size
    return d, -d


def onehot(labels, n, dtype):
    return np.eye(n, dtype=dtype)[labels]


def f_cross_entropy(logits):
    m = logits.max(axis=-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))
    return -np.mean(logp[np.arange(len(LABELS)), LABELS])


def vjp_cross_entropy(g, logits, *, labels=LABELS, batch_mean=True, sign=1):
    d = sign * (softmax(logits) - onehot(labels, logits.shape[-1], logits.dtype))
    return g * d / (len(labels) if batch_mean else 1)


def f_bce_logits(z, t):
    return np.mean(np.logaddexp(0.0, z) - t * z)


def vjp_bce_logits(g, z, t):
    return g * (sigmoid(z) - t) / z.size, -g * z / z.size


def f_huber(pred, target):
    r = pred - target
    return np.mean(np.where(np.abs(r) < 1, 0.5 * r**2, np.abs(r) - 0.5))


def vjp_huber(g, pred, target, *, linear=np.sign, quadratic=1):
    r = pred - target
    d = g * np.where(np.abs(r) < 1, quadratic * r, linear(r)) / r.size
    return d, -d


CASES = [
    Case("mse", f_mse, vjp_mse, {"pred": normal(3, 4), "target": normal(3, 4)}, [
        ("missing_factor_2", lambda g, p, t: tuple(c / 2 for c in vjp_mse(g, p, t))),
        ("sum_instead_of_mean", lambda g, p, t: tuple(c * p.size for c in vjp_mse(g, p, t))),
        ("target_sign", lambda g, p, t: (vjp_mse(g, p, t)[0], vjp_mse(g, p, t)[0])),
    ] + precision_ladder(vjp_mse, index=7)),
    Case("cross_entropy", f_cross_entropy, vjp_cross_entropy, {"logits": normal(4, 5, scale=2.0)}, [
        ("sign_flipped", lambda g, z: vjp_cross_entropy(g, z, sign=-1)),
        ("no_batch_mean", lambda g, z: vjp_cross_entropy(g, z, batch_mean=False)),
        ("labels_off_by_one", lambda g, z: vjp_cross_entropy(g, z, labels=(LABELS + 1) % 5)),
    ] + precision_ladder(vjp_cross_entropy, index=11)),
    Case("bce_logits", f_bce_logits, vjp_bce_logits, {"z": normal(3, 4, scale=2.0), "t": uniform(3, 4, low=0.0,
                                                                                                high=1.0)}, [
        ("sigmoid_of_minus_z", lambda g, z, t: (g * (sigmoid(-z) - t) / z.size, -g * z / z.size)),
        ("target_grad_sign", lambda g, z, t: (vjp_bce_logits(g, z, t)[0], g * z / z.size)),
    ]),
    Case("huber", f_huber, vjp_huber,
         {"pred": away(3, 4, low=-3.0, high=3.0, kinks=(-1.0, 0.0, 1.0)), "target": zeros(3, 4)}, [
        ("sign_wrong_below_minus_1", lambda g, p, t: vjp_huber(g, p, t, linear=np.ones_like)),
        ("quadratic_region_doubled", lambda g, p, t: vjp_huber(g, p, t, quadratic=2)),
    ]),
]
