"""Red-team round 10: numpy layers with hand-written VJPs.

Each case is a forward, a VJP, a point and what gradrun must say with default
settings, per dtype: ``pass`` (correct code) or ``fail`` (a bug: some entry
fails). Run by ``tests/test_fresh10.py``.

Layers: SwiGLU, sparsemax and entmax-1.5 (sort-based thresholds), bilinear
sampling of an image at points that share corners, an HMM's forward algorithm
(a logsumexp recursion) with its forward-backward gradient, a linear scan whose
decays are 0.999 over 64 steps, average pooling that does not count padding,
a segment softmax with a segment of one, ALiBi attention, spectral
normalisation with a fixed power-iteration vector, the pinball loss at its
switch point, log-determinants through Cholesky, softplus with beta = 100,
erf-GELU, cosine similarity of vectors of 1e-3, a Gumbel-softmax at
temperature 0.1 with fixed noise, a Dice loss, a highway layer whose gate and
transform share a weight, instance norm, an RBF kernel of points near 1e4
whose distances are 1, a logsumexp over 500 logits, a float32 layer under a
float64 loss that weights its outputs, a float32 layer checked in float64, and
an output of 1e3 + 1e-3 tanh(x).

The bugs: a dropped term of silu's slope, the sparsemax mean over K, entmax
weighted by p for sqrt(p), scattering by assignment, a transposed transition
in the backward recursion and the first transition left out, a decay taken one
step early, a window's divisor counting the padding, a global sum where a
segment's belongs, the bias slope's sign, sigma detached, tau and 1 - tau
swapped, M^-1 B for B M^-1, a symmetric gradient of a function that reads one
triangle, a linearised softplus above beta x = 8, tanh-GELU's slope for
erf-GELU's, the norms held constant and computed in float16, the temperature
dropped, one sign in the quotient rule, a shared weight's gradient counted
twice, a reduction over channels for the spatial axis, a length scale's square
dropped, one logit's gradient 1e-3 off, float16 slopes, a softmax's backward
reading the cache of the last forward call, and the slope of a nearly constant
output 10 % off.
"""

import math

import numpy as np

from fresh8.numpy_cases import Case, _scaled_entry, _softmax

RNG = np.random.default_rng(10)


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def _lse(x, axis):
    m = x.max(axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis, keepdims=True))).squeeze(axis)


# SwiGLU: silu(x W1) * (x W2)
def swiglu(x, W1, W2):
    a = x @ W1
    return a * _sigmoid(a) * (x @ W2)


def swiglu_vjp(g, x, W1, W2, drop=False):
    a, b = x @ W1, x @ W2
    s = _sigmoid(a)
    slope = s if drop else s * (1 + a * (1 - s))  # drop: silu's a s (1 - s) term left out
    ga, gb = g * b * slope, g * a * s
    return ga @ W1.T + gb @ W2.T, x.T @ ga, x.T @ gb


# sparsemax: the Euclidean projection of each row onto the simplex
def _sparsemax_tau(z):
    zs = -np.sort(-z, -1)
    k = np.arange(1, z.shape[-1] + 1)
    cs = zs.cumsum(-1)
    support = 1 + k * zs > cs
    n = support.sum(-1, keepdims=True)
    return (np.take_along_axis(cs, n - 1, -1) - 1) / n


def sparsemax(z):
    return np.maximum(z - _sparsemax_tau(z), 0)


def sparsemax_vjp(g, z, over_k=False):
    s = (sparsemax(z) > 0).astype(z.dtype)
    n = z.shape[-1] if over_k else s.sum(-1, keepdims=True)
    return s * (g - (g * s).sum(-1, keepdims=True) / n)


# entmax-1.5 (Peters et al. 2019): p = [z / 2 - tau]_+^2, tau from the sorted rows
def entmax15(z):
    x = (z - z.max(-1, keepdims=True)) / 2
    xs = -np.sort(-x, -1)
    k = np.arange(1, x.shape[-1] + 1)
    mean = xs.cumsum(-1) / k
    mean_sq = (xs * xs).cumsum(-1) / k
    delta = (1 - k * (mean_sq - mean * mean)) / k
    tau = mean - np.sqrt(np.maximum(delta, 0))
    n = (tau <= xs).sum(-1, keepdims=True)
    return np.maximum(x - np.take_along_axis(tau, n - 1, -1), 0) ** 2


def entmax15_vjp(g, z, weight_p=False):
    p = entmax15(z)
    w = p if weight_p else np.sqrt(p)  # weight_p: the softmax habit, p where sqrt(p) belongs
    gw = g * w
    return gw - w * gw.sum(-1, keepdims=True) / w.sum(-1, keepdims=True)


# bilinear sampling of an image at points (row, col) in pixel units, grid_sample's gather
def _corners(P):
    r0, c0 = np.floor(P[:, 0]).astype(int), np.floor(P[:, 1]).astype(int)
    return r0, c0, P[:, 0] - r0, P[:, 1] - c0


def bilinear(img, P):
    r0, c0, wr, wc = _corners(P)
    return ((1 - wr) * (1 - wc) * img[r0, c0] + (1 - wr) * wc * img[r0, c0 + 1]
            + wr * (1 - wc) * img[r0 + 1, c0] + wr * wc * img[r0 + 1, c0 + 1])


def bilinear_vjp(g, img, P, assign=False, swap=False):
    r0, c0, wr, wc = _corners(P)
    gi = np.zeros_like(img)
    for dr, dc, w in ((0, 0, (1 - wr) * (1 - wc)), (0, 1, (1 - wr) * wc), (1, 0, wr * (1 - wc)), (1, 1, wr * wc)):
        if assign:  # fancy-index assignment: of two samples sharing a corner, one is lost
            gi[r0 + dr, c0 + dc] += g * w
        else:
            np.add.at(gi, (r0 + dr, c0 + dc), g * w)
    a, b, c, d = img[r0, c0], img[r0, c0 + 1], img[r0 + 1, c0], img[r0 + 1, c0 + 1]
    d_row = (1 - wc) * (c - a) + wc * (d - b)
    d_col = (1 - wr) * (b - a) + wr * (d - c)
    if swap:  # the weights of the two directions mixed up
        d_row, d_col = (1 - wr) * (c - a) + wr * (d - b), (1 - wc) * (b - a) + wc * (d - c)
    return gi, g[:, None] * np.stack([d_row, d_col], 1)


# an HMM's log-likelihood by the forward algorithm: emissions E (T, S), transition logits A (S, S)
def _alphas(E, A):
    alpha = [E[0] - math.log(E.shape[1])]
    for t in range(1, len(E)):
        alpha.append(_lse(alpha[-1][:, None] + A, 0) + E[t])
    return np.array(alpha)


def hmm(E, A):
    return _lse(_alphas(E, A)[-1], 0)


def hmm_vjp(g, E, A, transposed=False, first=1):
    alpha = _alphas(E, A)
    z = _lse(alpha[-1], 0)
    At = A.T if transposed else A  # transposed: the backward recursion runs the chain the wrong way
    beta = [np.zeros(E.shape[1])]
    for t in range(len(E) - 1, 0, -1):
        beta.insert(0, _lse(At + (E[t] + beta[0])[None, :], 1))
    beta = np.array(beta)
    gE = np.exp(alpha + beta - z)
    gA = sum(np.exp(alpha[t - 1][:, None] + A + (E[t] + beta[t])[None, :] - z) for t in range(first, len(E)))
    return g * gE, g * gA


# a linear scan (an SSM's recurrence): h_t = a_t h_{t-1} + b_t, a_t = sigmoid(u_t) near 0.999
def _scan(u, b):
    a, h, out = _sigmoid(u), 0.0, []
    for t in range(len(b)):
        h = a[t] * h + b[t]
        out.append(h)
    return np.array(out)


def scan(u, b):
    return _scan(u, b)


def scan_vjp(g, u, b, early=False):
    a, h = _sigmoid(u), _scan(u, b)
    gh, carry = np.zeros_like(b), 0.0
    for t in range(len(b) - 1, -1, -1):
        carry = g[t] + carry
        gh[t] = carry
        carry = carry * (a[t - 1] if early else a[t])  # gh_{t-1} = g_{t-1} + a_t gh_t; early: a_{t-1}
    hprev = np.concatenate([[0.0], h[:-1]])
    return gh * hprev * a * (1 - a), gh


# average pooling, kernel 3, stride 2, padding 1, padding not counted (count_include_pad=False)
def _windows(n):
    return [(max(s, 0), min(s + 3, n)) for s in range(-1, n - 1, 2)]


def avg_pool(x):
    return np.stack([x[:, lo:hi].mean(1) for lo, hi in _windows(x.shape[1])], 1)


def avg_pool_vjp(g, x, count_pad=False):
    out = np.zeros_like(x)
    for j, (lo, hi) in enumerate(_windows(x.shape[1])):
        out[:, lo:hi] += g[:, j:j + 1] / (3 if count_pad else hi - lo)
    return out


# a softmax within each segment (GNN attention over a node's edges)
SEG = np.array([0, 0, 0, 1, 2, 2, 2, 2, 3, 3])


def seg_softmax(x):
    m = np.full(4, -np.inf)
    np.maximum.at(m, SEG, x)
    e = np.exp(x - m[SEG])
    s = np.zeros(4)
    np.add.at(s, SEG, e)
    return e / s[SEG]


def seg_softmax_vjp(g, x, global_sum=False):
    y = seg_softmax(x)
    if global_sum:  # the softmax's correction summed over every segment
        return y * (g - (g * y).sum())
    s = np.zeros(4)
    np.add.at(s, SEG, g * y)
    return y * (g - s[SEG])


# ALiBi: causal attention with a linear distance bias of slope m
def _alibi_p(q, k, m):
    T = len(q)
    dist = np.arange(T)[:, None] - np.arange(T)[None, :]
    s = q @ k.T / np.sqrt(q.shape[1]) - m[0] * dist
    s = np.where(dist < 0, -np.inf, s)
    return _softmax(s), dist


def alibi(q, k, v, m):
    return _alibi_p(q, k, m)[0] @ v


def alibi_vjp(g, q, k, v, m, sign=-1.0):
    p, dist = _alibi_p(q, k, m)
    dp = g @ v.T
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    c = 1 / np.sqrt(q.shape[1])
    return ds @ k * c, ds.T @ q * c, p.T @ g, np.array([sign * (ds * dist).sum()])


# spectral normalisation with a fixed power-iteration vector u0: sigma = |W^T u0|
U0 = np.array([0.6, -0.48, 0.64])


def spectral(x, W):
    return x @ W.T / np.linalg.norm(W.T @ U0)


def spectral_vjp(g, x, W, detached=False):
    wu = W.T @ U0
    sigma = np.linalg.norm(wu)
    gwn = g.T @ x
    gW = gwn / sigma
    if not detached:  # detached: sigma treated as a constant
        gW = gW - (gwn * W).sum() / sigma ** 2 * np.outer(U0, wu / sigma)
    return g @ W / sigma, gW


# the pinball (quantile) loss at tau = 0.9, one prediction exactly at its target
TAU = 0.9


def pinball(q, y):
    r = y - q
    return np.mean(np.maximum(TAU * r, (TAU - 1) * r))


def pinball_vjp(g, q, y, swapped=False):
    tau = 1 - TAU if swapped else TAU
    return -g * np.where(y - q > 0, tau, tau - 1) / q.size, -g * np.where(y - q > 0, -tau, 1 - tau) / q.size


# log-determinants through a Cholesky factor
def logdet_gram(B):
    M = B @ B.T + 0.1 * np.eye(len(B))
    return 2 * np.log(np.diag(np.linalg.cholesky(M))).sum()


def logdet_gram_vjp(g, B, wrong_side=False):
    Mi = np.linalg.inv(B @ B.T + 0.1 * np.eye(len(B)))
    return 2 * g * (B @ Mi if wrong_side else Mi @ B)


def logdet_chol(S):  # numpy's cholesky reads the lower triangle only
    return 2 * np.log(np.diag(np.linalg.cholesky(S))).sum()


def logdet_chol_vjp(g, S, symmetric=False):
    Si = np.linalg.inv(S)
    return g * (Si if symmetric else 2 * np.tril(Si) - np.diag(np.diag(Si)))


# softplus with beta = 100: a bend 0.01 wide
BETA = 100.0


def softplus_b(x):
    return np.logaddexp(0, BETA * x) / BETA


def softplus_b_vjp(g, x, threshold=None):
    s = _sigmoid(BETA * x)
    return g * (s if threshold is None else np.where(BETA * x > threshold, 1.0, s))


# erf-GELU, and tanh-GELU's slope written into its backward
_ERF = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1 + _ERF(x / math.sqrt(2)).astype(x.dtype))


def gelu_vjp(g, x, tanh_slope=False):
    if tanh_slope:
        c = math.sqrt(2 / math.pi)
        t = np.tanh(c * (x + 0.044715 * x ** 3))
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x))
    cdf = 0.5 * (1 + _ERF(x / math.sqrt(2)).astype(x.dtype))
    return g * (cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))


# cosine similarity of rows of size 1e-3
def cosine(a, b):
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def cosine_vjp(g, a, b, constant_norms=False, half=False):
    if half:  # norms in float16: squares of 1e-3 are float16 subnormals
        na = np.sqrt((a.astype(np.float16) ** 2).sum(1)).astype(a.dtype)[:, None]
        nb = np.sqrt((b.astype(np.float16) ** 2).sum(1)).astype(a.dtype)[:, None]
    else:
        na, nb = np.sqrt((a * a).sum(1))[:, None], np.sqrt((b * b).sum(1))[:, None]
    c = (a * b).sum(1)[:, None] / (na * nb)
    g = g[:, None]
    if constant_norms:
        return g * b / (na * nb), g * a / (na * nb)
    return g * (b / (na * nb) - c * a / na ** 2), g * (a / (na * nb) - c * b / nb ** 2)


# Gumbel-softmax at temperature 0.1 with fixed noise
NOISE = -np.log(-np.log(RNG.uniform(size=(3, 5))))


def gumbel(z):
    return _softmax((z + NOISE) / 0.1)


def gumbel_vjp(g, z, no_tau=False):
    y = gumbel(z)
    return y * (g - (g * y).sum(-1, keepdims=True)) / (1.0 if no_tau else 0.1)


# Dice loss of sigmoid probabilities against a binary mask
MASK = (RNG.uniform(size=12) < 0.4).astype(float)


def dice(z):
    p = _sigmoid(z)
    return 1 - (2 * (p * MASK).sum() + 1) / (p.sum() + MASK.sum() + 1)


def dice_vjp(g, z, sign=1.0):
    p = _sigmoid(z)
    num, den = 2 * (p * MASK).sum() + 1, p.sum() + MASK.sum() + 1
    return -g * (2 * MASK * den - sign * num) / den ** 2 * p * (1 - p)


# a highway layer whose gate and transform share W: T H + (1 - T) x
def highway(x, W, bt):
    T, H = _sigmoid(x @ W + bt), np.tanh(x @ W)
    return T * H + (1 - T) * x


def highway_vjp(g, x, W, bt, twice=False):
    T, H = _sigmoid(x @ W + bt), np.tanh(x @ W)
    gt = g * (H - x) * T * (1 - T)
    gh = g * T * (1 - H * H)
    gW = x.T @ (gt + gh) + (x.T @ gh if twice else 0)  # twice: the transform's share accumulated again
    return g * (1 - T) + (gt + gh) @ W.T, gW, gt.sum(0)


# instance norm over the spatial axis of (batch, channels, length)
def inorm(x):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)


def inorm_vjp(g, x, axis=-1):
    y = inorm(x)
    s = np.sqrt(x.var(-1, keepdims=True) + 1e-5)  # axis=1: the means over channels, a wrong axis
    return (g - g.mean(axis, keepdims=True) - y * (g * y).mean(axis, keepdims=True)) / s


# an RBF kernel between points near 1e4 whose distances are about 1 (length scale 0.7)
ELL = 0.7


def rbf(X, Y):
    d = X[:, None, :] - Y[None, :, :]
    return np.exp(-(d * d).sum(-1) / (2 * ELL ** 2))


def rbf_vjp(g, X, Y, square=True):
    d = X[:, None, :] - Y[None, :, :]
    w = (g * rbf(X, Y))[..., None] * d / (ELL ** 2 if square else ELL)
    return -w.sum(1), w.sum(0)


# a float32 layer (a library that computes in float32) under a float64 loss weighting its outputs:
# no output is a float32 number, yet the code reads its inputs as float32 numbers
CW = RNG.uniform(0.1, 1.0, size=(3, 5))


def f32_layer(x, W):
    h = np.tanh(x.astype(np.float32) @ W.astype(np.float32))
    return (h.astype(np.float64) * CW).sum()


def f32_layer_vjp(g, x, W, half=False):
    x32, W32 = x.astype(np.float32), W.astype(np.float32)
    h = np.tanh(x32 @ W32)
    if half:  # the slope in float16
        h = h.astype(np.float16)
    gh = (g * CW).astype(np.float32) * (1 - h * h).astype(np.float32)
    return (gh @ W32.T).astype(np.float64), (x32.T @ gh).astype(np.float64)


# a float32 layer that returns float32 whatever it is given, checked in float64 too
def f32_out(x, W):
    return np.tanh(x.astype(np.float32) @ W.astype(np.float32))


def f32_out_vjp(g, x, W, half=False):
    x32, W32, g32 = x.astype(np.float32), W.astype(np.float32), g.astype(np.float32)
    h = np.tanh(x32 @ W32)
    a = g32 * (1 - (h.astype(np.float16) if half else h) ** 2).astype(np.float32)
    return a @ W32.T, x32.T @ a


# an output that is nearly constant: 1e3 + 1e-3 tanh(x), whose slope is 1e-6 of its value
def near_constant(x):
    return 1e3 + 1e-3 * np.tanh(x)


def near_constant_vjp(g, x, factor=1.0):
    return g * 1e-3 * factor * (1 - np.tanh(x) ** 2)


# a softmax whose backward reads what the last forward call cached (the last call was gradrun's,
# at a moved point: the gradient is that point's, 1e-8 off in float64)
_CACHE = {}


def cached_softmax(x):
    _CACHE["p"] = _softmax(x)
    return _CACHE["p"]


def cached_softmax_vjp(g, x, stale=True):
    p = _CACHE["p"] if stale else _softmax(x)
    return p * (g - (g * p).sum())


# a logsumexp over 500 logits (a vocabulary)
def wide_lse(z):
    return _lse(z, 0)


def wide_lse_vjp(g, z):
    return g * _softmax(z, 0)


SWIGLU_AT = {"x": RNG.normal(size=(3, 4)), "W1": RNG.normal(size=(4, 5)), "W2": RNG.normal(size=(4, 5))}
# rows whose every entry sits at least 0.05 from the threshold (no element on the support's edge)
SPARSE_AT = {"z": np.array([[1.2, 0.9, -0.4, 0.3, 1.0], [0.1, 0.3, -0.2, 0.25, 0.05], [3.0, -1.0, 0.2, 0.1, 2.5]])}
ENTMAX_AT = {"z": np.array([[1.2, 0.9, -0.4, 0.3, 1.0], [0.1, 0.3, -0.2, 0.25, 0.05], [3.0, -1.0, 0.2, 0.1, 2.6]])}
IMG = RNG.normal(size=(5, 6))
# samples 0 and 1 share the cell (1, 2); none lies on a pixel line
BILINEAR_AT = {"img": IMG, "P": np.array([[1.3, 2.6], [1.7, 2.2], [3.45, 0.15], [0.5, 4.8]])}
HMM_AT = {"E": RNG.normal(size=(5, 3)) * 2 - 20, "A": RNG.normal(size=(3, 3))}
SCAN_AT = {"u": 7 + 0.5 * RNG.normal(size=64), "b": RNG.normal(size=64)}
POOL_AT = {"x": RNG.normal(size=(2, 9))}
SEG_AT = {"x": np.array([0.3, -1.2, 2.0, 0.7, 40.0, -10.0, 39.5, 1.0, 0.0, 0.1])}
ALIBI_AT = {"q": RNG.normal(size=(5, 4)), "k": RNG.normal(size=(5, 4)), "v": RNG.normal(size=(5, 3)),
            "m": np.array([0.25])}
SPECTRAL_AT = {"x": RNG.normal(size=(2, 4)), "W": RNG.normal(size=(3, 4))}
PINBALL_AT = {"q": np.array([0.3, -1.0, 2.0, 0.5, 1.5]), "y": np.array([0.8, -1.5, 2.0, 0.2, 1.6])}
B_AT = {"B": RNG.normal(size=(4, 4))}
_R = RNG.normal(size=(4, 4))
S_AT = {"S": _R @ _R.T + 0.5 * np.eye(4)}
SOFTPLUS_AT = {"x": np.array([-0.1, -0.03, -0.005, 0.0, 0.004, 0.02, 0.081, 0.09, 0.3])}
GELU_AT = {"x": np.array([-6.0, -3.0, -1.2, -0.3, 0.0, 0.4, 1.5, 2.5, 5.0])}
COS_AT = {"a": RNG.normal(size=(3, 4)) * 1e-3, "b": RNG.normal(size=(3, 4)) * 1e-3}
GUMBEL_AT = {"z": RNG.normal(size=(3, 5))}
DICE_AT = {"z": RNG.normal(size=12) * 2}
HIGHWAY_AT = {"x": RNG.normal(size=(3, 4)), "W": RNG.normal(size=(4, 4)) * 0.6, "bt": RNG.normal(size=4)}
INORM_AT = {"x": RNG.normal(size=(2, 3, 5)) * 2 + 1}
RBF_AT = {"X": 1e4 + RNG.normal(size=(3, 2)) * 0.7, "Y": 1e4 + RNG.normal(size=(4, 2)) * 0.7}
WIDE_AT = {"z": RNG.normal(size=500) * 3}
F32_AT = {"x": RNG.normal(size=(3, 4)), "W": RNG.normal(size=(4, 5)) * 0.5}

SOFTMAX_AT = {"x": RNG.normal(size=6)}
NEAR_CONSTANT_AT = {"x": RNG.normal(size=6)}
_R1 = np.random.default_rng(1)
F32_OUT_AT = {"x": _R1.normal(size=(10, 4)) * 3, "W": _R1.normal(size=(4, 4)) * 0.5}

CASES = [
    Case("swiglu", swiglu, swiglu_vjp, SWIGLU_AT, "pass"),
    Case("swiglu@silu-term-dropped", swiglu, lambda g, *a: swiglu_vjp(g, *a, drop=True), SWIGLU_AT, "fail"),
    Case("sparsemax", sparsemax, sparsemax_vjp, SPARSE_AT, "pass"),
    Case("sparsemax@mean-over-K", sparsemax, lambda g, z: sparsemax_vjp(g, z, over_k=True), SPARSE_AT, "fail"),
    Case("entmax15", entmax15, entmax15_vjp, ENTMAX_AT, "pass"),
    Case("entmax15@weight-p", entmax15, lambda g, z: entmax15_vjp(g, z, weight_p=True), ENTMAX_AT, "fail"),
    Case("bilinear-shared-corners", bilinear, bilinear_vjp, BILINEAR_AT, "pass"),
    Case("bilinear-shared-corners@assign", bilinear, lambda g, i, p: bilinear_vjp(g, i, p, assign=True), BILINEAR_AT,
         "fail"),
    Case("bilinear-shared-corners@swapped-weights", bilinear, lambda g, i, p: bilinear_vjp(g, i, p, swap=True),
         BILINEAR_AT, "fail"),
    Case("hmm-forward", hmm, hmm_vjp, HMM_AT, "pass"),
    Case("hmm-forward@transposed", hmm, lambda g, E, A: hmm_vjp(g, E, A, transposed=True), HMM_AT, "fail"),
    Case("hmm-forward@first-transition", hmm, lambda g, E, A: hmm_vjp(g, E, A, first=2), HMM_AT, "fail"),
    Case("scan-0.999", scan, scan_vjp, SCAN_AT, "pass"),
    Case("scan-0.999@decay-early", scan, lambda g, u, b: scan_vjp(g, u, b, early=True), SCAN_AT, "fail"),
    Case("avg-pool-no-pad-count", avg_pool, avg_pool_vjp, POOL_AT, "pass"),
    Case("avg-pool-no-pad-count@pad-counted", avg_pool, lambda g, x: avg_pool_vjp(g, x, True), POOL_AT, "fail"),
    Case("segment-softmax", seg_softmax, seg_softmax_vjp, SEG_AT, "pass"),
    Case("segment-softmax@global-sum", seg_softmax, lambda g, x: seg_softmax_vjp(g, x, True), SEG_AT, "fail"),
    Case("alibi", alibi, alibi_vjp, ALIBI_AT, "pass"),
    Case("alibi@slope-sign", alibi, lambda g, *a: alibi_vjp(g, *a, sign=1.0), ALIBI_AT, "fail"),
    Case("spectral-norm", spectral, spectral_vjp, SPECTRAL_AT, "pass"),
    Case("spectral-norm@sigma-detached", spectral, lambda g, x, W: spectral_vjp(g, x, W, True), SPECTRAL_AT, "fail"),
    Case("pinball-at-switch", pinball, pinball_vjp, PINBALL_AT, "pass"),
    Case("pinball-at-switch@swapped", pinball, lambda g, q, y: pinball_vjp(g, q, y, True), PINBALL_AT, "fail"),
    Case("logdet-gram", logdet_gram, logdet_gram_vjp, B_AT, "pass"),
    Case("logdet-gram@wrong-side", logdet_gram, lambda g, B: logdet_gram_vjp(g, B, True), B_AT, "fail"),
    Case("logdet-cholesky-lower", logdet_chol, logdet_chol_vjp, S_AT, "pass"),
    Case("logdet-cholesky-lower@symmetric", logdet_chol, lambda g, S: logdet_chol_vjp(g, S, True), S_AT, "fail"),
    Case("softplus-beta-100", softplus_b, softplus_b_vjp, SOFTPLUS_AT, "pass"),
    Case("softplus-beta-100@linear-above-8", softplus_b, lambda g, x: softplus_b_vjp(g, x, 8.0), SOFTPLUS_AT, "fail"),
    Case("gelu-erf", gelu, gelu_vjp, GELU_AT, "pass"),
    Case("gelu-erf@tanh-slope", gelu, lambda g, x: gelu_vjp(g, x, True), GELU_AT, "fail"),
    Case("cosine-1e-3", cosine, cosine_vjp, COS_AT, "pass"),
    Case("cosine-1e-3@constant-norms", cosine, lambda g, a, b: cosine_vjp(g, a, b, constant_norms=True), COS_AT,
         "fail"),
    Case("cosine-1e-3@float16-norms", cosine, lambda g, a, b: cosine_vjp(g, a, b, half=True), COS_AT, "fail"),
    Case("gumbel-softmax-0.1", gumbel, gumbel_vjp, GUMBEL_AT, "pass"),
    Case("gumbel-softmax-0.1@no-temperature", gumbel, lambda g, z: gumbel_vjp(g, z, True), GUMBEL_AT, "fail"),
    Case("dice", dice, dice_vjp, DICE_AT, "pass"),
    Case("dice@quotient-sign", dice, lambda g, z: dice_vjp(g, z, -1.0), DICE_AT, "fail"),
    Case("highway-shared-W", highway, highway_vjp, HIGHWAY_AT, "pass"),
    Case("highway-shared-W@accumulated-twice", highway, lambda g, *a: highway_vjp(g, *a, twice=True), HIGHWAY_AT,
         "fail"),
    Case("instance-norm", inorm, inorm_vjp, INORM_AT, "pass"),
    Case("instance-norm@channel-axis", inorm, lambda g, x: inorm_vjp(g, x, axis=1), INORM_AT, "fail"),
    Case("rbf-at-1e4", rbf, rbf_vjp, RBF_AT, "pass"),
    Case("rbf-at-1e4@length-not-squared", rbf, lambda g, X, Y: rbf_vjp(g, X, Y, False), RBF_AT, "fail"),
    Case("float32-layer", f32_out, f32_out_vjp, F32_OUT_AT, "pass"),
    Case("float32-layer@float16-slope", f32_out, lambda g, x, W: f32_out_vjp(g, x, W, True), F32_OUT_AT, "fail"),
    Case("near-constant-1e3", near_constant, near_constant_vjp, NEAR_CONSTANT_AT, "pass"),
    Case("near-constant-1e3@10pct", near_constant, lambda g, x: near_constant_vjp(g, x, 1.1), NEAR_CONSTANT_AT, "fail"),
    Case("softmax", cached_softmax, lambda g, x: cached_softmax_vjp(g, x, False), SOFTMAX_AT, "pass"),
    Case("softmax@stale-cache", cached_softmax, cached_softmax_vjp, SOFTMAX_AT, "fail"),
    Case("float32-layer-float64-loss", f32_layer, f32_layer_vjp, F32_AT, "pass"),
    Case("float32-layer-float64-loss@float16-slope", f32_layer, lambda g, x, W: f32_layer_vjp(g, x, W, True), F32_AT,
         "fail"),
    Case("logsumexp-500", wide_lse, wide_lse_vjp, WIDE_AT, "pass"),
    Case("logsumexp-500@1e-3", wide_lse, lambda g, z: _scaled_entry(wide_lse_vjp(g, z), int(np.argmax(WIDE_AT["z"])),
                                                                     1e-3), WIDE_AT, "fail", dtypes=("float32",)),
]
