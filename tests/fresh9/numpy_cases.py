"""Red-team round 9: numpy layers with hand-written VJPs.

Each case is a forward, a VJP, a point and what gradrun must say with default
settings, per dtype: ``pass`` (correct code) or ``fail`` (a bug: some entry
fails). Run by ``tests/test_fresh9.py``.

Layers: RMS norm with a gain, rotary position embedding, a causal attention
whose backward rebuilds its mask, a transposed convolution with stride 2, a
dilated depthwise convolution, a tied embedding (lookup and output projection
share a table), an exclusive cumsum, logcumsumexp of logits near 1000, mish
and SELU at 0 and 1e-9, pairwise distances with a pair 1e-9 apart, a triplet
loss, a focal loss, label-smoothed cross-entropy, an expanded polynomial with
coefficients up to 4e12, exp from -700 to 700, max(x, y) at ties and 1e-9 apart,
and losses over batches of 10^4 (float32 sums of 10^4 terms). The bugs: eps outside the sqrt, the
rotation not transposed, a mask off by one, a stride offset, the last tap's
weight dropped, half of a tied parameter, an inclusive cumsum, one entry 1e-4
off, a dropped (1 + x) factor, a branch chosen with a tolerance, an eps in a
unit vector, the anchor's negative term dropped, a detached modulating factor,
smoothing over K instead of K - 1, derivative coefficients rounded to float32,
a clipped exponent, a tie tolerance, a mask multiplied into NaN where f is flat,
a mean over N - 1, a key bias's gradient without the softmax's correction, and a
one-pass variance (which float64 computes well enough: a bug in float32 alone).
"""

import numpy as np

from fresh8.numpy_cases import Case, _scaled_entry, _softmax

RNG = np.random.default_rng(9)


# RMS norm with a gain: y = x / sqrt(mean(x^2) + eps) * w
def rms_norm(x, w, eps=1e-6):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rms_norm_vjp(g, x, w, eps=1e-6, outside=False):
    ms = (x * x).mean(-1, keepdims=True)
    r = np.sqrt(ms) + eps if outside else np.sqrt(ms + eps)
    gw = (g * x / r).sum(0)
    gy = g * w
    gx = gy / r - x * (gy * x).mean(-1, keepdims=True) / r ** 3
    return gx, gw


# rotary position embedding over pairs (x[2i], x[2i+1]) of each row t
def _angles(T, d):
    inv = 10000.0 ** (-np.arange(0, d, 2) / d)
    a = np.arange(T)[:, None] * inv[None, :]
    return np.cos(a), np.sin(a)


def rope(x):
    c, s = _angles(*x.shape)
    e, o = x[:, 0::2], x[:, 1::2]
    out = np.empty_like(x)
    out[:, 0::2] = e * c - o * s
    out[:, 1::2] = e * s + o * c
    return out


def rope_vjp(g, x, transposed=True):
    c, s = _angles(*x.shape)
    s = s if transposed else -s  # the rotation applied again instead of its transpose
    ge, go = g[:, 0::2], g[:, 1::2]
    out = np.empty_like(g)
    out[:, 0::2] = ge * c + go * s
    out[:, 1::2] = -ge * s + go * c
    return out


# causal attention with -inf masks, the backward rebuilding the mask itself
def _causal_p(q, k, offset=0):
    s = q @ k.T / np.sqrt(q.shape[1])
    keep = np.tril(np.ones(s.shape, dtype=bool), offset)
    return _softmax(np.where(keep, s, -np.inf))


def causal_attn(q, k, v):
    return _causal_p(q, k) @ v


def causal_attn_vjp(g, q, k, v, offset=0):
    p = _causal_p(q, k, offset)  # offset -1: the diagonal masked too (off by one)
    gv = p.T @ g
    gp = g @ v.T
    ds = p * (gp - (gp * p).sum(-1, keepdims=True)) / np.sqrt(q.shape[1])
    return ds @ k, ds.T @ q, gv


# transposed convolution, stride 2: out[2i + j] += x[i] * w[j]
def conv_t(x, w, stride=2):
    out = np.zeros(stride * (len(x) - 1) + len(w))
    for i in range(len(x)):
        out[stride * i: stride * i + len(w)] += x[i] * w
    return out


def conv_t_vjp(g, x, w, stride=2, shift=0):
    gx = np.array([g[stride * i + shift: stride * i + shift + len(w)] @ w if stride * i + shift + len(w) <= len(g)
                   else g[stride * i: stride * i + len(w)] @ w for i in range(len(x))])
    gw = sum(x[i] * g[stride * i: stride * i + len(w)] for i in range(len(x)))
    return gx, gw


# dilated depthwise conv1d: channels (C, L), kernel (C, K), dilation 2, valid
def dw_conv(x, w, dil=2):
    C, L = x.shape
    K = w.shape[1]
    n = L - dil * (K - 1)
    return np.stack([sum(w[c, k] * x[c, k * dil: k * dil + n] for k in range(K)) for c in range(C)])


def dw_conv_vjp(g, x, w, dil=2, taps=None):
    C, L = x.shape
    K = w.shape[1]
    n = L - dil * (K - 1)
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    for c in range(C):
        for k in range(K):
            gx[c, k * dil: k * dil + n] += w[c, k] * g[c]
        for k in range(K if taps is None else taps):
            gw[c, k] = g[c] @ x[c, k * dil: k * dil + n]
    return gx, gw


# tied embedding: h = E[idx] * 2, logits = tanh(h) @ E.T
IDX = np.array([2, 0, 2, 3])


def tied(E):
    return np.tanh(E[IDX] * 2.0) @ E.T


def tied_vjp(g, E, output_half=True):
    h = np.tanh(E[IDX] * 2.0)
    gE = (g.T @ h) if output_half else np.zeros_like(E)
    gh = (g @ E) * (1 - h * h) * 2.0
    np.add.at(gE, IDX, gh)
    return gE


# exclusive cumsum: y[i] = sum_{j<i} x[j]
def excl_cumsum(x):
    return np.concatenate([np.zeros(1, x.dtype), np.cumsum(x)[:-1]])


def excl_cumsum_vjp(g, x, inclusive=False):
    rev = np.cumsum(g[::-1])[::-1]
    return rev if inclusive else np.concatenate([rev[1:], np.zeros(1, g.dtype)])


# logcumsumexp of logits near 1000
def lcse(x):
    m = np.maximum.accumulate(x)
    return np.log(np.cumsum(np.exp(x - m[-1]))) + m[-1]


def lcse_vjp(g, x):
    y = lcse(x)
    # dy_i/dx_j = exp(x_j - y_i) for j <= i
    w = np.exp(x[None, :] - y[:, None]) * np.tril(np.ones((len(x), len(x))))
    return g @ w


# mish: x * tanh(softplus(x)); its far-left branch e^x (1 + x)
def mish(x):
    return x * np.tanh(np.logaddexp(0, x))


def mish_vjp(g, x, drop=False):
    sp = np.logaddexp(0, x)
    t = np.tanh(sp)
    d = t + x * (1 - t * t) / (1 + np.exp(-x))
    far = np.exp(x) if drop else np.exp(x) * (1 + x)
    return g * np.where(x < -20, far, d)


# SELU: kink at 0 (slopes scale*alpha and scale)
A, S = 1.6732632423543772, 1.0507009873554805


def selu(x):
    return S * np.where(x > 0, x, A * np.expm1(np.minimum(x, 0)))


def selu_vjp(g, x, tol=0.0):
    return g * S * np.where(x > tol, 1.0, A * np.exp(np.minimum(x, 0)))


# pairwise distances, one pair 1e-9 apart
def pdist(x, y):
    d = x[:, None, :] - y[None, :, :]
    return np.sqrt((d * d).sum(-1))


def pdist_vjp(g, x, y, eps=0.0):
    d = x[:, None, :] - y[None, :, :]
    n = np.sqrt((d * d).sum(-1))
    u = d / np.where(n > 0, n + eps, 1.0)[..., None]
    gd = g[..., None] * u
    return gd.sum(1), -gd.sum(0)


# triplet loss: mean over triplets of max(|a - p| - |a - n| + margin, 0)
def triplet(a, p, n, margin=1.0):
    dp = np.sqrt(((a - p) ** 2).sum(-1))
    dn = np.sqrt(((a - n) ** 2).sum(-1))
    return np.maximum(dp - dn + margin, 0).mean()


def triplet_vjp(g, a, p, n, margin=1.0, anchor_negative=True):
    dp = np.sqrt(((a - p) ** 2).sum(-1, keepdims=True))
    dn = np.sqrt(((a - n) ** 2).sum(-1, keepdims=True))
    act = ((dp - dn + margin) > 0) * g / len(a)
    up, un = (a - p) / dp, (a - n) / dn
    ga = act * (up - un if anchor_negative else up)
    return ga, -act * up, act * un


# binary focal loss on logits, gamma = 2: -(1 - pt)^2 log pt
def focal(z, t):
    p = 1 / (1 + np.exp(-z))
    pt = np.where(t > 0, p, 1 - p)
    logpt = -np.logaddexp(0, np.where(t > 0, -z, z))
    return -((1 - pt) ** 2 * logpt).sum()


def focal_vjp(g, z, t, detached=False):
    s = np.where(t > 0, 1.0, -1.0)
    p = 1 / (1 + np.exp(-z))
    pt = np.where(t > 0, p, 1 - p)
    logpt = -np.logaddexp(0, -s * z)
    dpt = s * p * (1 - p)  # d pt / dz
    # d/dz [-(1-pt)^2 logpt] = 2 (1-pt) logpt dpt - (1-pt)^2 dpt / pt, with dpt/pt = s (1 - pt)
    mod = 0.0 if detached else 2 * (1 - pt) * logpt * dpt
    return g * (mod - (1 - pt) ** 2 * s * (1 - pt)), None


# label-smoothed cross-entropy, eps spread over the K - 1 other classes
def ls_ce(z, y, eps=0.1):
    K = z.shape[1]
    q = np.full(z.shape, eps / (K - 1))
    q[np.arange(len(y)), y] = 1 - eps
    m = z.max(1, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(1, keepdims=True))
    return -(q * logp).sum() / len(y)


def ls_ce_vjp(g, z, y, eps=0.1, over=None):
    K = z.shape[1]
    q = np.full(z.shape, eps / (K - 1 if over is None else over))
    q[np.arange(len(y)), y] = 1 - eps
    return g * (_softmax(z) * q.sum(1, keepdims=True) - q) / len(y), None


# (x-10)(x-20)...(x-80) expanded: coefficients up to 4e12, evaluated near its roots
POLY = np.poly(np.arange(10.0, 90.0, 10.0))  # highest power first


def poly(x):
    return np.polyval(POLY, x)


def poly_vjp(g, x, f32=False):
    d = np.polyder(POLY)
    return g * np.polyval(d.astype(np.float32).astype(np.float64) if f32 else d, x)


# exp over +-700: gradients from 1e-304 to 1e304
def exp_vjp(g, x, clip=False):
    return g * np.exp(np.clip(x, -600, 600) if clip else x)


# max(x, y) at ties (the gradient split in half) and 1e-9 apart
def pmax(x, y):
    return np.maximum(x, y)


def pmax_vjp(g, x, y, tol=0.0):
    gx = np.where(x > y + tol, 1.0, np.where(np.abs(x - y) <= tol, 0.5, 0.0))
    return g * gx, g * (1 - gx)


# a loss averaged over a batch of 10^4 (float32 sums of 10^4 terms), w alone differentiated
def batch_loss(w, X):
    return np.logaddexp(0, X @ w).mean()


def batch_loss_vjp(g, w, X, n=None):
    p = 1 / (1 + np.exp(-(X @ w)))
    return g * (X.T @ p) / (len(X) if n is None else n), None


def batch_var(w, X):
    z = X @ w
    return ((z - z.mean()) ** 2).mean()


def batch_var_vjp(g, w, X, one_pass=False):
    z = X @ w
    if one_pass:  # the centred z rebuilt from mean(z^2) - mean(z)^2: float32 cancels at z near 1e3
        m = z.mean()
        c = (z - m) * np.sqrt(((z * z).mean() - m * m) / ((z - m) ** 2).mean())
    else:
        c = z - z.mean()
    return g * 2 * (X.T @ c) / len(z), None


# sqrt of the positive part: flat (slope 0) below 0; the bug masks by multiplying, and the
# masked-out branch's 0.5 / sqrt(x) is NaN there, so 0 * NaN is NaN where f is flat
def sqrt_pos(x):
    return np.sqrt(np.maximum(x, 0))


def sqrt_pos_vjp(g, x, multiply=False):
    if multiply:
        with np.errstate(invalid="ignore", divide="ignore"):
            return g * (x > 0) * 0.5 / np.sqrt(x)
    return g * np.where(x > 0, 0.5 / np.sqrt(np.where(x > 0, x, 1.0)), 0.0)


# two square layers: tanh(tanh(x @ W1) @ W2); the bug: W2 not transposed on the way back
def mlp(x, W1, W2):
    return np.tanh(np.tanh(x @ W1) @ W2)


def mlp_vjp(g, x, W1, W2, transpose=True):
    h = np.tanh(x @ W1)
    y = np.tanh(h @ W2)
    a = g * (1 - y * y)
    gh = a @ (W2.T if transpose else W2)
    b = gh * (1 - h * h)
    return b @ W1.T, x.T @ b, h.T @ a


# causal attention scores with a key bias: softmax(q k^T) is unchanged by bk (every score of a
# row moves by q_i . bk), so its gradient is 0 by invariance; scores of +-400 make rows of 1e-200,
# whose noise (round-off of scores near 460) squared to 0 in ECnoise: a false failure
def attn_kb(x, Wq, Wk, bk):
    q, k = x @ Wq, x @ Wk + bk
    return _causal_p(q, k)


def attn_kb_vjp(g, x, Wq, Wk, bk, uncorrected=False):
    q, k = x @ Wq, x @ Wk + bk
    p = _causal_p(q, k)
    c = 1 / np.sqrt(q.shape[1])
    ds = p * (g - (g * p).sum(-1, keepdims=True)) * c
    gq, gk = ds @ k, ds.T @ q
    gbk = (p * g * c).T @ q if uncorrected else gk  # the softmax's correction term left out for the bias
    return gq @ Wq.T + gk @ Wk.T, x.T @ gq, x.T @ gk, gbk.sum(0)


ROWS = RNG.normal(size=(3, 6))
RMS_AT = {"x": ROWS, "w": 1 + 0.1 * RNG.normal(size=6)}
RMS_SMALL = {"x": ROWS * 1e-3, "w": 1 + 0.1 * RNG.normal(size=6)}
ROPE_AT = {"x": RNG.normal(size=(4, 6))}
QKV = {k: RNG.normal(size=(4, 3)) for k in "qkv"}
CONV_T_AT = {"x": RNG.normal(size=5), "w": RNG.normal(size=3)}
DW_AT = {"x": RNG.normal(size=(2, 9)), "w": RNG.normal(size=(2, 3))}
TIED_AT = {"E": RNG.normal(size=(4, 3))}
CUMSUM_AT = {"x": RNG.normal(size=6)}
LCSE_AT = {"x": 1000 + 3 * RNG.normal(size=6)}
MISH_AT = {"x": np.array([-40.0, -25.0, -3.0, 0.0, 1e-9, 2.0, 30.0])}
SELU_AT = {"x": np.array([-2.0, -1e-9, 0.0, 1e-9, 0.7])}
NEAR = RNG.normal(size=(3, 2))
PDIST_AT = {"x": NEAR, "y": np.array([NEAR[0] + [1e-9, -2e-9], [0.5, -0.5], NEAR[2] + [0.3, 0.1]])}
TRIPLET_AT = {k: RNG.normal(size=(5, 3)) for k in ("a", "p", "n")}
FOCAL_AT = {"z": np.array([-30.0, -4.0, -0.5, 0.0, 0.8, 3.0, 25.0]), "t": np.array([1, 0, 1, 0, 1, 1, 0])}
LS_AT = {"z": RNG.normal(size=(4, 5)) * 3, "y": np.array([1, 4, 4, 0])}
POLY_AT = {"x": np.array([10.2, 25.0, 49.99, 73.0, 80.01])}
EXP_AT = {"x": np.array([-700.0, -300.0, -1.0, 0.0, 5.0, 300.0, 700.0])}
MAX_AT = {"x": np.array([0.3, -1.2, 0.5 + 1e-9, 2.0, 0.8 + 3e-7]), "y": np.array([0.3, -1.2, 0.5, -2.0, 0.8])}
BATCH = {"w": RNG.normal(size=3) * 0.5, "X": RNG.normal(size=(10 ** 4, 3))}
BATCH_OFFSET = {"w": np.array([0.4, 0.3, 0.3]), "X": 1e3 + RNG.normal(size=(10 ** 4, 3))}
ONLY_W = {"wrt": ["w"]}
ATTN_KB = {"x": RNG.normal(size=(4, 3)) * 3, "Wq": RNG.normal(size=(3, 2)) * 2, "Wk": RNG.normal(size=(3, 2)) * 2,
           "bk": np.array([0.3, -0.2])}
SQRT_AT = {"x": np.array([-1.0, 0.25, 2.0])}
MLP_AT = {"x": RNG.normal(size=(2, 3)), "W1": RNG.normal(size=(3, 3)) * 0.7, "W2": RNG.normal(size=(3, 3)) * 0.7}

CASES = [
    Case("rms-norm", rms_norm, rms_norm_vjp, RMS_AT, "pass"),
    Case("rms-norm-1e-3", rms_norm, rms_norm_vjp, RMS_SMALL, "pass"),
    # at rows of 1e-3, mean(x^2) is 1e-6 = eps: sqrt(ms) + eps is 30 % off sqrt(ms + eps)
    Case("rms-norm-1e-3@eps-outside", rms_norm, lambda g, x, w: rms_norm_vjp(g, x, w, outside=True), RMS_SMALL, "fail"),
    Case("rope", rope, rope_vjp, ROPE_AT, "pass"),
    Case("rope@not-transposed", rope, lambda g, x: rope_vjp(g, x, transposed=False), ROPE_AT, "fail"),
    Case("causal-attn-v", causal_attn, causal_attn_vjp, QKV, "pass"),
    Case("causal-attn-v@mask-off-by-one", causal_attn, lambda g, *a: causal_attn_vjp(g, *a, offset=-1), QKV, "fail"),
    Case("conv-transpose-s2", conv_t, conv_t_vjp, CONV_T_AT, "pass"),
    Case("conv-transpose-s2@shift", conv_t, lambda g, x, w: conv_t_vjp(g, x, w, shift=1), CONV_T_AT, "fail"),
    Case("depthwise-dilated", dw_conv, dw_conv_vjp, DW_AT, "pass"),
    Case("depthwise-dilated@last-tap", dw_conv, lambda g, x, w: dw_conv_vjp(g, x, w, taps=2), DW_AT, "fail"),
    Case("tied-embedding", tied, tied_vjp, TIED_AT, "pass"),
    Case("tied-embedding@lookup-only", tied, lambda g, E: tied_vjp(g, E, output_half=False), TIED_AT, "fail"),
    Case("exclusive-cumsum", excl_cumsum, excl_cumsum_vjp, CUMSUM_AT, "pass"),
    Case("exclusive-cumsum@inclusive", excl_cumsum, lambda g, x: excl_cumsum_vjp(g, x, True), CUMSUM_AT, "fail"),
    Case("logcumsumexp-1000", lcse, lcse_vjp, LCSE_AT, "pass"),
    Case("logcumsumexp-1000@1e-4", lcse, lambda g, x: _scaled_entry(lcse_vjp(g, x), 3, 1e-4), LCSE_AT, "fail"),
    Case("mish", mish, mish_vjp, MISH_AT, "pass"),
    Case("mish@far-left-no-1-plus-x", mish, lambda g, x: mish_vjp(g, x, drop=True), MISH_AT, "fail"),
    Case("selu-at-0", selu, selu_vjp, SELU_AT, "pass"),
    Case("selu-at-0@tolerance", selu, lambda g, x: selu_vjp(g, x, tol=1e-8), SELU_AT, "fail"),
    Case("pdist-1e-9", pdist, pdist_vjp, PDIST_AT, "pass"),
    Case("pdist-1e-9@eps", pdist, lambda g, x, y: pdist_vjp(g, x, y, eps=1e-8), PDIST_AT, "fail"),
    Case("triplet", triplet, triplet_vjp, TRIPLET_AT, "pass"),
    Case("triplet@anchor-positive-only", triplet, lambda g, a, p, n: triplet_vjp(g, a, p, n, anchor_negative=False),
         TRIPLET_AT, "fail"),
    Case("focal", focal, focal_vjp, FOCAL_AT, "pass"),
    Case("focal@detached", focal, lambda g, z, t: focal_vjp(g, z, t, detached=True), FOCAL_AT, "fail"),
    Case("label-smoothing", ls_ce, ls_ce_vjp, LS_AT, "pass"),
    Case("label-smoothing@over-K", ls_ce, lambda g, z, y: ls_ce_vjp(g, z, y, over=5), LS_AT, "fail"),
    Case("poly-roots-10-80", poly, poly_vjp, POLY_AT, "pass"),
    Case("poly-roots-10-80@f32-coefficients", poly, lambda g, x: poly_vjp(g, x, f32=True), POLY_AT, "fail"),
    Case("exp-700", np.exp, exp_vjp, EXP_AT, "pass", dtypes=("float64",)),
    Case("exp-700@clipped", np.exp, lambda g, x: exp_vjp(g, x, clip=True), EXP_AT, "fail", dtypes=("float64",)),
    Case("max-ties", pmax, pmax_vjp, MAX_AT, "pass"),
    Case("max-ties@tolerance", pmax, lambda g, x, y: pmax_vjp(g, x, y, tol=1e-6), MAX_AT, "fail"),
    Case("batch-loss-1e4", batch_loss, batch_loss_vjp, BATCH, "pass", settings=ONLY_W),
    Case("batch-loss-1e4@n-1", batch_loss, lambda g, w, X: batch_loss_vjp(g, w, X, n=len(X) - 1), BATCH, "fail",
         settings=ONLY_W),
    Case("batch-var-1e4-at-1e3", batch_var, batch_var_vjp, BATCH_OFFSET, "pass", settings=ONLY_W),
    Case("batch-var-1e4-at-1e3@one-pass", batch_var, lambda g, w, X: batch_var_vjp(g, w, X, one_pass=True),
         BATCH_OFFSET, "pass", dtypes=("float64",), settings=ONLY_W),
    Case("batch-var-1e4-at-1e3@one-pass", batch_var, lambda g, w, X: batch_var_vjp(g, w, X, one_pass=True),
         BATCH_OFFSET, "fail", dtypes=("float32",), settings=ONLY_W),
    Case("attn-key-bias", attn_kb, attn_kb_vjp, ATTN_KB, "pass"),
    Case("attn-key-bias@uncorrected", attn_kb, lambda g, *a: attn_kb_vjp(g, *a, uncorrected=True), ATTN_KB, "fail"),
    Case("sqrt-positive-part", sqrt_pos, sqrt_pos_vjp, SQRT_AT, "pass"),
    Case("sqrt-positive-part@nan-mask", sqrt_pos, lambda g, x: sqrt_pos_vjp(g, x, True), SQRT_AT, "fail"),
    Case("mlp-square", mlp, mlp_vjp, MLP_AT, "pass"),
    Case("mlp-square@W2-not-transposed", mlp, lambda g, *a: mlp_vjp(g, *a, transpose=False), MLP_AT, "fail"),
]
