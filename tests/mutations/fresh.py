"""A fresh corpus, written from first principles apart from the others: strided and
dilated convolutions, pooling with ties, group and RMS norms, embeddings with
repeated indices, GRU and LSTM cells, softmax over a leading axis, cumprod
through a zero, kinks exactly at a boundary, sort, causal attention, broadcast
batched matmul, losses of 1e-12 and 1e8, inputs of 1e-6 beside 1e6.

Each bug is one a person writes: a transposed operand, a sum left out, a
window off by one, assignment where repeated indices must add, the output
used for the input, a variance with the wrong divisor, a mask forgotten in
the backward, one element wrong, float16 inside a float32 backward.
"""

import numpy as np

from . import Case, all_off, entry_off, normal, sigmoid, softmax, uniform


def fixed(value):
    return lambda rng: np.array(value, dtype=np.float64)


def half_if_single(a):
    """What a 'mixed precision' backward does: float32 work is done in float16."""
    return a.astype(np.float16).astype(a.dtype) if a.dtype == np.float32 else a


# ------------------------------------------------------------------ conv2d: stride 2, padding 1, dilation 2

STRIDE, PAD, DIL, KH = 2, 1, 2, 2


def conv_taps(H, dil=DIL):
    """Output length and, per kernel tap, the padded input positions it reads."""
    n = (H + 2 * PAD - dil * (KH - 1) - 1) // STRIDE + 1
    return n, [dil * k + STRIDE * np.arange(n) for k in range(KH)]


def f_conv2d(x, w):
    # x: (C, H, W), w: (O, C, KH, KH) -> (O, n, n)
    xp = np.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD)))
    n, taps = conv_taps(x.shape[1])
    out = 0
    for a in range(KH):
        for b in range(KH):
            patch = xp[:, taps[a]][:, :, taps[b]]  # (C, n, n)
            out = out + np.einsum("oc,cij->oij", w[:, :, a, b], patch)
    return out


def conv2d_vjp(g, x, w, dil_x=DIL, dil_w=DIL, flip=False):
    xp = np.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD)))
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    _, taps_x = conv_taps(x.shape[1], dil_x)
    _, taps_w = conv_taps(x.shape[1], dil_w)
    for a in range(KH):
        for b in range(KH):
            wk = w[:, :, KH - 1 - a, KH - 1 - b] if flip else w[:, :, a, b]
            contrib = np.einsum("oc,oij->cij", wk, g)
            for i, r in enumerate(taps_x[a]):
                gxp[:, r, taps_x[b]] += contrib[:, i]
            patch = xp[:, taps_w[a]][:, :, taps_w[b]]
            gw[:, :, a, b] = np.einsum("oij,cij->oc", g, patch)
    return gxp[:, PAD:-PAD, PAD:-PAD], gw


# ------------------------------------------------------------------ max-pool (width 2, stride 2) with ties


def f_maxpool(x):
    return x.reshape(-1, 2).max(axis=1)


def maxpool_vjp(g, x, ties="first"):
    win = x.reshape(-1, 2)
    gx = np.zeros_like(win)
    if ties == "all":
        gx = np.where(win == win.max(axis=1, keepdims=True), g[:, None], 0 * g[:, None])
    else:
        k = win.argmax(axis=1) if ties == "first" else 1 - win[:, ::-1].argmax(axis=1)
        gx[np.arange(len(g)), k] = g
    return gx.reshape(x.shape)


def maxpool_shifted(g, x):
    """Off by one: the window's argmax taken over x shifted by one element."""
    win = np.roll(x, 1).reshape(-1, 2)
    gx = np.zeros_like(win)
    gx[np.arange(len(g)), win.argmax(axis=1)] = g
    return gx.reshape(x.shape)


# ------------------------------------------------------------------ avg-pool 1d, width 3, stride 1, zero padding 1


def f_avgpool(x):
    xp = np.pad(x, 1)
    return (xp[:-2] + xp[1:-1] + xp[2:]) / 3


def avgpool_vjp(g, x, edge_count=False):
    gp = np.pad(g, 1)
    gx = gp[:-2] + gp[1:-1] + gp[2:]
    if edge_count:  # count_include_pad=False's divisor in a count_include_pad=True layer
        div = np.full(x.shape, 3.0)
        div[0] = div[-1] = 2.0
        return gx / div
    return gx / 3


# ------------------------------------------------------------------ group norm (C=4, 2 groups) with affine

GN_EPS = 1e-5


def f_groupnorm(x, gamma, beta):
    # x: (N, C, L)
    N, C, L = x.shape
    xg = x.reshape(N, 2, -1)
    mu = xg.mean(-1, keepdims=True)
    var = ((xg - mu) ** 2).mean(-1, keepdims=True)
    xh = ((xg - mu) / np.sqrt(var + GN_EPS)).reshape(N, C, L)
    return xh * gamma[:, None] + beta[:, None]


def groupnorm_vjp(g, x, gamma, beta, ddof=0, drop_mean=False):
    N, C, L = x.shape
    xg = x.reshape(N, 2, -1)
    n = xg.shape[-1]
    mu = xg.mean(-1, keepdims=True)
    var = ((xg - mu) ** 2).sum(-1, keepdims=True) / (n - ddof)
    rstd = 1 / np.sqrt(var + GN_EPS)
    xh = (xg - mu) * rstd
    gxh = (g * gamma[:, None]).reshape(N, 2, -1)
    mean_g = 0 if drop_mean else gxh.mean(-1, keepdims=True)
    gx = rstd * (gxh - mean_g - xh * (gxh * xh).mean(-1, keepdims=True))
    xh = xh.reshape(N, C, L)
    return gx.reshape(N, C, L), (g * xh).sum((0, 2)), g.sum((0, 2))


# ------------------------------------------------------------------ RMS norm

RMS_EPS = 1e-6


def f_rmsnorm(x, w):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + RMS_EPS) * w


def rmsnorm_vjp(g, x, w, use_output=False, per_n=True):
    r = 1 / np.sqrt((x * x).mean(-1, keepdims=True) + RMS_EPS)
    y = x * r
    gy = g * w
    src = y * w if use_output else y  # the output in place of the normalised input
    n = x.shape[-1] if per_n else 1
    gx = r * (gy - y * (gy * src).sum(-1, keepdims=True) / n)
    return gx, (g * y).reshape(-1, x.shape[-1]).sum(0)


# ------------------------------------------------------------------ embedding lookup with repeated indices

IDX = np.array([2, 0, 2, 3, 2, 0])


def f_embed(W):
    return np.tanh(W[IDX])


def embed_vjp(g, W, mode="add"):
    gz = g * (1 - np.tanh(W[IDX]) ** 2)
    gW = np.zeros_like(W)
    if mode == "add":
        np.add.at(gW, IDX, gz)
    elif mode == "assign":  # fancy assignment keeps only the last of repeated indices
        gW[IDX] = gz
    else:  # "first": only the first occurrence of each index
        _, first = np.unique(IDX, return_index=True)
        gW[IDX[first]] = gz[first]
    return gW


# ------------------------------------------------------------------ GRU cell


def gru_parts(x, h, Wx, Wh):
    H = h.shape[-1]
    ax = x @ Wx  # (B, 3H)
    ah = h @ Wh
    z = sigmoid(ax[:, :H] + ah[:, :H])
    r = sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
    n = np.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])
    return z, r, n, ah


def f_gru(x, h, Wx, Wh):
    z, r, n, _ = gru_parts(x, h, Wx, Wh)
    return (1 - z) * n + z * h


def gru_vjp(g, x, h, Wx, Wh, z_sign=1.0, r_uses_out=False):
    H = h.shape[-1]
    z, r, n, ah = gru_parts(x, h, Wx, Wh)
    gn = g * (1 - z)
    gz = z_sign * g * (h - n)
    gan = gn * (1 - n * n)
    rr = (1 - z) * n + z * h if r_uses_out else r
    gr = gan * ah[:, 2 * H:]
    gaz = gz * z * (1 - z)
    gar = gr * rr * (1 - rr)
    gax = np.concatenate([gaz, gar, gan], axis=1)
    gah = np.concatenate([gaz, gar, gan * r], axis=1)
    return gax @ Wx.T, g * z + gah @ Wh.T, x.T @ gax, h.T @ gah


# ------------------------------------------------------------------ LSTM cell: (h', c') stacked


def lstm_parts(x, h, c, W):
    H = h.shape[-1]
    a = np.concatenate([x, h], axis=1) @ W
    i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H])
    u = np.tanh(a[:, 3 * H:])
    c2 = f * c + i * u
    return i, f, o, u, c2


def f_lstm(x, h, c, W):
    i, f, o, u, c2 = lstm_parts(x, h, c, W)
    return np.stack([o * np.tanh(c2), c2])


def lstm_vjp(g, x, h, c, W, stale_c=False, forget_bias=False):
    H = h.shape[-1]
    i, f, o, u, c2 = lstm_parts(x, h, c, W)
    gh, gc2 = g[0], g[1]
    t = np.tanh(c2)
    gc2 = gc2 + gh * o * (1 - t * t)
    go = gh * t
    gf = gc2 * (c2 if stale_c else c)  # the new cell state where the old one belongs
    gi = gc2 * u
    gu = gc2 * i
    if forget_bias:  # the forget gate's derivative written as f(1 - f) + 1, as if a bias of 1 were differentiated
        da_f = gf * (f * (1 - f))
        da_f[:, -1] += gf[:, -1]
    else:
        da_f = gf * f * (1 - f)
    ga = np.concatenate([gi * i * (1 - i), da_f, go * o * (1 - o), gu * (1 - u * u)], axis=1)
    xh = np.concatenate([x, h], axis=1)
    gxh = ga @ W.T
    return gxh[:, :x.shape[1]], gxh[:, x.shape[1]:], gc2 * f, xh.T @ ga


# ------------------------------------------------------------------ softmax over the leading axis, log-softmax


def f_softmax0(x):
    return softmax(x, axis=0)


def softmax0_vjp(g, x, axis=0):
    s = softmax(x, axis=0)
    return s * (g - (g * s).sum(axis=axis, keepdims=True))


def f_logsoftmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def logsoftmax_vjp(g, x, reduce=np.sum):
    return g - softmax(x) * reduce(g, axis=-1, keepdims=True)


# ------------------------------------------------------------------ logsumexp of logits near 1000


def f_lse(x):
    m = x.max()
    return m + np.log(np.exp(x - m).sum())


def lse_vjp(g, x):
    return g * softmax(x)


# ------------------------------------------------------------------ cumsum, cumprod through an exact zero


def f_cumsum_sq(x):
    return np.cumsum(x) ** 2


def cumsum_vjp(g, x, exclusive=False):
    gs = 2 * np.cumsum(x) * g
    rev = np.cumsum(gs[::-1])[::-1]
    return np.concatenate([rev[1:], 0 * rev[:1]]) if exclusive else rev


def f_cumprod(x):
    return np.cumprod(x)


def cumprod_vjp(g, x, divide=False):
    n = x.size
    if divide:  # the textbook shortcut: d prod_k / d x_j = prod_k / x_j, wrong where x_j = 0
        safe = np.where(x == 0, 1.0, x)
        p = np.cumprod(x)
        return np.array([np.sum(g[j:] * p[j:] / safe[j]) for j in range(n)], dtype=x.dtype)
    gx = np.zeros_like(x)
    for j in range(n):
        others = np.where(np.arange(n) == j, 1.0, x).astype(x.dtype)
        gx[j] = np.sum(g[j:] * np.cumprod(others)[j:])
    return gx


# ------------------------------------------------------------------ masked fill, hardtanh at its kinks, abs at 0

MASK = np.array([True, False, True, True, False, True, False, True])


def f_masked(x):
    return np.where(MASK, np.sin(x) * x, 0.0 * x)


def masked_vjp(g, x, forget=False):
    d = g * (np.cos(x) * x + np.sin(x))
    return d if forget else np.where(MASK, d, 0.0 * d)


def f_hardtanh_sq(x):
    return np.clip(x, -1.0, 1.0) ** 2 + x


def hardtanh_vjp(g, x, outside=0.0):
    inside = (x >= -1) & (x <= 1)
    c = np.clip(x, -1.0, 1.0)
    return g * (np.where(inside, 2 * c, outside * np.sign(x)) + 1)


def f_abs_mix(x):
    return np.abs(x) * 3 + x ** 2


def abs_vjp(g, x, at_zero=0.0):
    s = np.where(x == 0, at_zero, np.sign(x))
    return g * (3 * s + 2 * x)


# ------------------------------------------------------------------ sort (top-3 of 6, gather backward)


def f_top3(x):
    return np.sort(x)[-3:] ** 2


def top3_vjp(g, x, descending=False):
    order = np.argsort(x)
    pick = order[:3][::-1] if descending else order[-3:]
    gx = np.zeros_like(x)
    gx[pick] = 2 * x[pick] * g
    return gx


# ------------------------------------------------------------------ L2-normalize, cosine similarity


def f_l2n(x):
    return x / np.sqrt((x * x).sum())


def l2n_vjp(g, x, project=True):
    n = np.sqrt((x * x).sum())
    y = x / n
    return (g - y * (g * y).sum()) / n if project else g / n


def f_cos(a, b):
    return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def cos_vjp(g, a, b, square_b=False):
    na = np.sqrt((a * a).sum(-1, keepdims=True))
    nb = np.sqrt((b * b).sum(-1, keepdims=True))
    c = ((a * b).sum(-1) / (na * nb)[:, 0])[:, None]
    gg = g[:, None]
    ga = gg * (b / (na * nb) - c * a / na ** 2)
    gb = gg * (a / (na * nb) - c * b / (nb ** 3 if square_b else nb ** 2))
    return ga, gb


# ------------------------------------------------------------------ causal self-attention


def attn_parts(q, k, v):
    T, d = q.shape
    s = q @ k.T / np.sqrt(d)
    s = np.where(np.tril(np.ones((T, T), dtype=bool)), s, -np.inf)
    return softmax(s), s


def f_attn(q, k, v):
    return attn_parts(q, k, v)[0] @ v


def attn_vjp(g, q, k, v, unmasked=False, transposed=False):
    T, d = q.shape
    p, _ = attn_parts(q, k, v)
    if unmasked:  # the backward recomputes the probabilities without the causal mask
        p = softmax(q @ k.T / np.sqrt(d))
    gp = g @ v.T
    gs = p * (gp - (gp * p).sum(-1, keepdims=True)) / np.sqrt(d)
    return gs @ k, (gs @ q if transposed else gs.T @ q), p.T @ g


# ------------------------------------------------------------------ Huber at its kink

DELTA = 0.5


def f_huber(r):
    a = np.abs(r)
    return np.where(a <= DELTA, 0.5 * r * r, DELTA * (a - 0.5 * DELTA))


def huber_vjp(g, r, far_sign=1.0):
    return g * np.where(np.abs(r) <= DELTA, r, np.where(r > 0, DELTA, far_sign * -DELTA))


# ------------------------------------------------------------------ KL divergence against a target with near-zero entries

P_TARGET = np.array([0.5, 0.3, 1e-12, 0.2 - 1e-12, 1e-15])


def f_kl(logits):
    lq = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
    p = P_TARGET.astype(logits.dtype)
    return np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - lq), 0.0))


def kl_vjp(g, logits):
    p = P_TARGET.astype(logits.dtype)
    return g * (softmax(logits) * p.sum() - p)


# KL(p || q) against an input q with entries of 1e-16 and 1e-30 beside ones of 0.3: the
# auto step follows the 0.3, and the re-measurement must shrink to the tiny entries' own scale

P_KL = np.array([0.3, 0.25, 0.2, 0.15, 0.1])


def f_kl_q(q):
    return np.sum(P_KL * np.log(P_KL / q))


def kl_q_vjp(g, q):
    return -g * P_KL / q


# ------------------------------------------------------------------ broadcast batched matmul, einsum


def f_bmm(A, B):
    # A: (2, 1, 3, 2), B: (3, 2, 2) -> (2, 3, 3, 2)
    return np.tanh(A @ B)


def bmm_vjp(g, A, B, keep_b_axis=False, first_batch_only=False):
    gz = g * (1 - np.tanh(A @ B) ** 2)
    gA = (gz @ np.swapaxes(B, -1, -2)).sum(axis=1, keepdims=True)
    gB_full = np.swapaxes(A, -1, -2) @ gz  # (2, 3, 2, 2)
    gB = gB_full[0] if first_batch_only else gB_full.sum(axis=0)
    if keep_b_axis:  # A's broadcast axis summed, but its size-1 axis restored as a mean
        gA = (gz @ np.swapaxes(B, -1, -2)).mean(axis=1, keepdims=True)
    return gA, gB


def f_einsum(a, b, c):
    return np.einsum("ij,jk,ki->i", a, b, c)


def einsum_vjp(g, a, b, c, transpose_c=False):
    ga = np.einsum("i,jk,ki->ij", g, b, c)
    gb = np.einsum("i,ij,ki->jk", g, a, c)
    gc = np.einsum("i,ij,jk->ki", g, a, b)
    return ga, gb, (gc.T.reshape(gc.shape) if transpose_c else gc)


# ------------------------------------------------------------------ extremes of scale


COEF = np.array([1e-8, 3e-4, 1.0, 2e3, 5e7])


def f_poly(x):
    return sum(c * x ** k for k, c in enumerate(COEF))


def poly_vjp(g, x, drop_top=False):
    top = len(COEF) - 1 if drop_top else len(COEF)
    d = sum(k * c * x ** (k - 1) for k, c in enumerate(COEF[:top]) if k)
    return g * d


def f_tiny_loss(x, y):
    return 1e-12 * np.sum((x - y) ** 2 * np.cos(x))


def tiny_loss_vjp(g, x, y):
    d = x - y
    return (g * 1e-12 * (2 * d * np.cos(x) - d * d * np.sin(x)), g * 1e-12 * (-2 * d * np.cos(x)))


def f_huge_loss(x):
    return 1e8 * np.sum(np.exp(x) - x)


def huge_loss_vjp(g, x):
    return g * 1e8 * (np.exp(x) - 1)


MIXED = [1e-6, 3.0, 1e6, -2e-6, 0.5, -4e5]


def f_mixed(x):
    return np.log1p(x * x) + np.sin(x) * 1e-3


def mixed_vjp(g, x):
    return g * (2 * x / (1 + x * x) + np.cos(x) * 1e-3)


# ------------------------------------------------------------------ float32 with cancellation that is correct


def f_one_minus_cos(x):
    return (1 - np.cos(x)) / (x * x)


def one_minus_cos_vjp(g, x):
    # d/dx [(1 - cos x) / x²] = sin x / x² - 2 (1 - cos x) / x³, written as the naive code does
    return g * (np.sin(x) / (x * x) - 2 * (1 - np.cos(x)) / (x * x * x))


def f_var(x):
    return (x * x).mean() - x.mean() ** 2


def var_vjp(g, x, n_minus_1=False):
    n = x.size - 1 if n_minus_1 else x.size
    return g * 2 * (x - x.mean()) / n


def f_layernorm(x):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + GN_EPS)


def layernorm_vjp(g, x, ddof=0):
    mu = x.mean(-1, keepdims=True)
    n = x.shape[-1]
    r = 1 / np.sqrt(((x - mu) ** 2).sum(-1, keepdims=True) / (n - ddof) + GN_EPS)
    xh = (x - mu) * r
    return r * (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True))


def mixed_precision(vjp):
    """A bug in float32 only: the backward runs in float16 there."""
    def bad(g, *xs):
        out = vjp(half_if_single(g), *[half_if_single(x) for x in xs])
        out = out if isinstance(out, tuple) else (out,)
        return tuple(half_if_single(o) for o in out)

    bad.only_in = ("float32",)  # in float64 it is the correct backward
    return bad


TIES_MISS = ("every tied maximum given the whole gradient: each entry alone lies between its one-sided slopes (0 and 1), so the per-element kink rule passes it; only the joint direction (1, 1), slope 1 against 2, shows it, and a joint rule would fail correct separable kinks (hardtanh at both bounds)")


def ties(rng):
    """Pairs that tie exactly (ReLU'd activations are full of them), and pairs that do not."""
    return np.array([0.0, 0.0, 1.5, 1.5, -0.5, 2.0, 0.75, -1.0])


CASES = [
    Case("fresh_conv2d_s2p1d2", f_conv2d, conv2d_vjp,
         {"x": normal(1, 5, 5), "w": normal(2, 1, KH, KH)},
         bugs=[("dilation_1_in_dx", lambda g, x, w: conv2d_vjp(g, x, w, dil_x=1)),
               ("dilation_1_in_dw", lambda g, x, w: conv2d_vjp(g, x, w, dil_w=1)),
               ("flipped_kernel", lambda g, x, w: conv2d_vjp(g, x, w, flip=True))]),
    Case("fresh_maxpool_ties", f_maxpool, maxpool_vjp, {"x": ties},
         bugs=[("window_off_by_one", maxpool_shifted), ("ties_both_get_all", lambda g, x: maxpool_vjp(g, x, "all"))],
         known_misses={"ties_both_get_all": TIES_MISS}),
    Case("fresh_maxpool_ties_last", f_maxpool, lambda g, x: maxpool_vjp(g, x, "last"), {"x": ties}),
    Case("fresh_avgpool_pad", f_avgpool, avgpool_vjp, {"x": normal(7)},
         bugs=[("edge_divisor", lambda g, x: avgpool_vjp(g, x, edge_count=True))]),
    Case("fresh_groupnorm", f_groupnorm, groupnorm_vjp,
         {"x": normal(2, 4, 3), "gamma": normal(4), "beta": normal(4)},
         bugs=[("unbiased_variance", lambda g, x, ga, b: groupnorm_vjp(g, x, ga, b, ddof=1)),
               ("mean_term_dropped", lambda g, x, ga, b: groupnorm_vjp(g, x, ga, b, drop_mean=True)),
               ("float16_in_float32", mixed_precision(groupnorm_vjp))]),
    Case("fresh_rmsnorm", f_rmsnorm, rmsnorm_vjp, {"x": normal(3, 5), "w": normal(5)},
         bugs=[("output_for_input", lambda g, x, w: rmsnorm_vjp(g, x, w, use_output=True)),
               ("no_1_over_n", lambda g, x, w: rmsnorm_vjp(g, x, w, per_n=False)),
               ("entry_0_off_1e-5", entry_off(rmsnorm_vjp, 1e-5, 0, 0))]),
    Case("fresh_embedding_repeats", f_embed, embed_vjp, {"W": normal(5, 3)},
         bugs=[("assign_keeps_last", lambda g, W: embed_vjp(g, W, "assign")),
               ("first_occurrence_only", lambda g, W: embed_vjp(g, W, "first"))]),
    Case("fresh_gru_cell", f_gru, gru_vjp,
         {"x": normal(2, 3), "h": normal(2, 2), "Wx": normal(3, 6, scale=0.7), "Wh": normal(2, 6, scale=0.7)},
         bugs=[("z_sign", lambda g, *a: gru_vjp(g, *a, z_sign=-1.0)),
               ("reset_gate_from_output", lambda g, *a: gru_vjp(g, *a, r_uses_out=True))]),
    Case("fresh_lstm_cell", f_lstm, lstm_vjp,
         {"x": normal(2, 2), "h": normal(2, 2), "c": normal(2, 2), "W": normal(4, 8, scale=0.7)},
         bugs=[("forget_gate_uses_new_cell", lambda g, *a: lstm_vjp(g, *a, stale_c=True)),
               ("last_unit_forget_bias", lambda g, *a: lstm_vjp(g, *a, forget_bias=True))]),
    Case("fresh_softmax_axis0", f_softmax0, softmax0_vjp, {"x": normal(3, 4)},
         bugs=[("reduced_over_last_axis", lambda g, x: softmax0_vjp(g, x, axis=-1))]),
    Case("fresh_logsoftmax", f_logsoftmax, logsoftmax_vjp, {"x": normal(2, 5, scale=3)},
         bugs=[("mean_for_sum", lambda g, x: logsoftmax_vjp(g, x, np.mean)),
               ("all_off_1e-7", all_off(logsoftmax_vjp, 1e-7))]),
    Case("fresh_logsumexp_1000", f_lse, lse_vjp, {"x": lambda rng: 1000 + rng.standard_normal(6)},
         bugs=[("entry_3_off_1e-5", entry_off(lse_vjp, 1e-5, 0, 3))]),
    Case("fresh_cumsum_sq", f_cumsum_sq, cumsum_vjp, {"x": normal(6)},
         bugs=[("exclusive_scan", lambda g, x: cumsum_vjp(g, x, exclusive=True))]),
    Case("fresh_cumprod_zero", f_cumprod, cumprod_vjp, {"x": fixed([1.5, -0.8, 0.0, 1.2, 0.9])},
         bugs=[("divide_by_x", lambda g, x: cumprod_vjp(g, x, divide=True))]),
    Case("fresh_masked_fill", f_masked, masked_vjp, {"x": normal(8)},
         bugs=[("mask_only_in_forward", lambda g, x: masked_vjp(g, x, forget=True))]),
    Case("fresh_hardtanh_boundary", f_hardtanh_sq, hardtanh_vjp,
         {"x": fixed([-1.0, 1.0, -1.7, 2.3, 0.4, -0.3])},
         bugs=[("outside_branch_sign", lambda g, x: hardtanh_vjp(g, x, outside=-0.5))]),
    Case("fresh_abs_at_zero", f_abs_mix, abs_vjp, {"x": fixed([0.0, -1.25, 0.7, 0.0, 2.0])},
         bugs=[("factor_1e-3", all_off(abs_vjp, 1e-3))]),
    Case("fresh_top3", f_top3, top3_vjp, {"x": normal(6)},
         bugs=[("descending_indices", lambda g, x: top3_vjp(g, x, descending=True))]),
    Case("fresh_l2_normalize", f_l2n, l2n_vjp, {"x": normal(5)},
         bugs=[("no_projection", lambda g, x: l2n_vjp(g, x, project=False))]),
    Case("fresh_cosine", f_cos, cos_vjp, {"a": normal(2, 4), "b": normal(2, 4, scale=3.0)},
         bugs=[("b_norm_cubed", lambda g, a, b: cos_vjp(g, a, b, square_b=True))]),
    Case("fresh_causal_attention", f_attn, attn_vjp, {"q": normal(3, 2), "k": normal(3, 2), "v": normal(3, 2)},
         bugs=[("mask_only_in_forward", lambda g, q, k, v: attn_vjp(g, q, k, v, unmasked=True)),
               ("dk_transposed", lambda g, q, k, v: attn_vjp(g, q, k, v, transposed=True))]),
    Case("fresh_huber_at_delta", f_huber, huber_vjp,
         {"r": fixed([0.5, -0.5, 0.2, -1.3, 0.9, -0.1])},
         bugs=[("far_negative_sign", lambda g, r: huber_vjp(g, r, far_sign=-1.0))]),
    Case("fresh_kl_tiny_target", f_kl, kl_vjp, {"logits": normal(5)},
         bugs=[("all_off_1e-5", all_off(kl_vjp, 1e-5))]),
    Case("fresh_kl_tiny_q", f_kl_q, kl_q_vjp, {"q": fixed([0.5, 1e-16, 0.3, 1e-30, 0.2])},
         bugs=[("entry_3_off_1e-6", entry_off(kl_q_vjp, 1e-6, 0, 3)),
               ("entry_3_off_1e-3", entry_off(kl_q_vjp, 1e-3, 0, 3))]),
    Case("fresh_bmm_broadcast", f_bmm, bmm_vjp, {"A": normal(2, 1, 3, 2), "B": normal(3, 2, 2)},
         bugs=[("first_batch_only", lambda g, A, B: bmm_vjp(g, A, B, first_batch_only=True)),
               ("mean_over_broadcast", lambda g, A, B: bmm_vjp(g, A, B, keep_b_axis=True))]),
    Case("fresh_einsum_trace", f_einsum, einsum_vjp, {"a": normal(3, 2), "b": normal(2, 4), "c": normal(4, 3)},
         bugs=[("c_transposed", lambda g, a, b, c: einsum_vjp(g, a, b, c, transpose_c=True))]),
    Case("fresh_poly_range", f_poly, poly_vjp, {"x": uniform(5, low=-2.0, high=2.0)},
         bugs=[("top_term_dropped", lambda g, x: poly_vjp(g, x, drop_top=True)),
               ("all_off_1e-7", all_off(poly_vjp, 1e-7))]),
    Case("fresh_loss_1e-12", f_tiny_loss, tiny_loss_vjp, {"x": normal(4), "y": normal(4)},
         bugs=[("all_off_1e-5", all_off(tiny_loss_vjp, 1e-5))]),
    Case("fresh_loss_1e8", f_huge_loss, huge_loss_vjp, {"x": normal(4)},
         bugs=[("entry_0_off_1e-6", entry_off(huge_loss_vjp, 1e-6, 0, 0))]),
    Case("fresh_mixed_scales", f_mixed, mixed_vjp, {"x": fixed(MIXED)},
         bugs=[("tiny_entry_off_1e-4", entry_off(mixed_vjp, 1e-4, 0, 0)),
               ("float16_in_float32", mixed_precision(mixed_vjp))]),
    Case("fresh_one_minus_cos", f_one_minus_cos, one_minus_cos_vjp, {"x": uniform(4, low=0.05, high=0.2)},
         bugs=[("all_off_1e-3", all_off(one_minus_cos_vjp, 1e-3))]),
    # float32 holds inputs near 1e4 to 1e-3, a thousandth of their spread: the gradient of correct
    # float32 code is that much off, which the float32 tolerance must allow (gradrun.sensitivity)
    Case("fresh_layernorm_offset_1e4", f_layernorm, layernorm_vjp, {"x": lambda rng: 1e4 + rng.standard_normal((2, 6))},
         bugs=[("unbiased_variance", lambda g, x: layernorm_vjp(g, x, ddof=1)),
               ("float16_in_float32", mixed_precision(layernorm_vjp))]),
    Case("fresh_variance_cancels", f_var, var_vjp, {"x": lambda rng: 100 + rng.standard_normal(5)},
         bugs=[("n_minus_1", lambda g, x: var_vjp(g, x, n_minus_1=True))]),
]
