"""Layers: matmul and dense, softmax family, normalisations, attention, convolutions, an RNN cell."""

import math

import numpy as np

from . import Case, normal, precision_ladder, sigmoid, softmax, softmax_vjp, uniform

LN_EPS = 1e-5


# ------------------------------------------------------------------ matmul and dense


def f_matmul(X, W):
    return X @ W


def vjp_matmul(g, X, W):
    return g @ W.T, X.T @ g


def f_dense_tanh(X, W, b):
    return np.tanh(X @ W + b)


def vjp_dense_tanh(g, X, W, b):
    gz = g * (1 - np.tanh(X @ W + b) ** 2)
    return gz @ W.T, X.T @ gz, gz.sum(axis=0)


def dense_tanh_bug(g, X, W, b, *, act=None, dX=None, db=None):
    z = X @ W + b
    gz = g * (1 - np.tanh(z) ** 2) if act is None else act(g, z)
    return (gz @ W.T if dX is None else dX(gz, W)), X.T @ gz, (gz.sum(axis=0) if db is None else db(gz))


def f_sum_sigmoid_matmul(X, W):
    return np.sum(sigmoid(X @ W))


def vjp_sum_sigmoid_matmul(g, X, W):
    s = sigmoid(X @ W)
    gn = g * s * (1 - s)
    return gn @ W.T, X.T @ gn


def f_bilinear(x, A, y):
    return x @ A @ y


def vjp_bilinear(g, x, A, y):
    return g * (A @ y), g * np.outer(x, y), g * (A.T @ x)


def f_quadratic(x, A):
    return x @ A @ x


def vjp_quadratic(g, x, A):
    return g * ((A + A.T) @ x), g * np.outer(x, x)


def f_mlp2(x, W1, W2):
    return W2 @ np.tanh(W1 @ x)


def vjp_mlp2(g, x, W1, W2):
    h = np.tanh(W1 @ x)
    gz = (W2.T @ g) * (1 - h**2)
    return W1.T @ gz, np.outer(gz, x), np.outer(g, h)


# ------------------------------------------------------------------ softmax family


def f_softmax(x):
    return softmax(x)


def vjp_softmax(g, x):
    return softmax_vjp(g, softmax(x))


def f_log_softmax(x):
    return x - np.log(np.exp(x - x.max(axis=-1, keepdims=True)).sum(axis=-1, keepdims=True)) - x.max(
        axis=-1, keepdims=True)


def vjp_log_softmax(g, x):
    return g - softmax(x) * g.sum(axis=-1, keepdims=True)


def f_logsumexp(x):
    m = x.max(axis=-1)
    return m + np.log(np.exp(x - m[:, None]).sum(axis=-1))


def vjp_logsumexp(g, x):
    return g[:, None] * softmax(x)


# ------------------------------------------------------------------ normalisation


def normalized(x, axis):
    mu = x.mean(axis=axis, keepdims=True)
    sigma = np.sqrt(((x - mu) ** 2).mean(axis=axis, keepdims=True) + LN_EPS)
    return (x - mu) / sigma, sigma


def norm_vjp(gx, x, axis, *, ddof_bug=False, drop_mean=False, drop_proj=False, eps=LN_EPS):
    """The VJP of (x - mean) / sqrt(var + eps) along ``axis``; the keywords plant bugs."""
    n = x.shape[axis]
    mu = x.mean(axis=axis, keepdims=True)
    var = ((x - mu) ** 2).sum(axis=axis, keepdims=True) / (n - 1 if ddof_bug else n)
    sigma = np.sqrt(var + eps)
    xhat = (x - mu) / sigma
    mean_g = 0 if drop_mean else gx.mean(axis=axis, keepdims=True)
    proj = 0 if drop_proj else xhat * (gx * xhat).mean(axis=axis, keepdims=True)
    return (gx - mean_g - proj) / sigma


def f_layer_norm(x):
    return normalized(x, -1)[0]


def vjp_layer_norm(g, x):
    return norm_vjp(g, x, -1)


def f_layer_norm_affine(x, gamma, beta):
    return normalized(x, -1)[0] * gamma + beta


def vjp_layer_norm_affine(g, x, gamma, beta):
    xhat = normalized(x, -1)[0]
    return norm_vjp(g * gamma, x, -1), (g * xhat).sum(axis=0), g.sum(axis=0)


def f_batch_norm(x, gamma, beta):
    return normalized(x, 0)[0] * gamma + beta


def vjp_batch_norm(g, x, gamma, beta):
    xhat = normalized(x, 0)[0]
    return norm_vjp(g * gamma, x, 0), (g * xhat).sum(axis=0), g.sum(axis=0)


def f_l2_normalize(x):
    return x / np.sqrt(np.sum(x**2))


def vjp_l2_normalize(g, x):
    r = np.sqrt(np.sum(x**2))
    y = x / r
    return (g - y * np.dot(y, g)) / r


# ------------------------------------------------------------------ attention


def f_attention(Q, K, V):
    return softmax(Q @ K.T / math.sqrt(Q.shape[-1])) @ V


def vjp_attention(g, Q, K, V, *, scale_dK=True, transpose_dV=True, transpose_dK=True, softmax_back=None):
    c = 1 / math.sqrt(Q.shape[-1])
    P = softmax(Q @ K.T * c)
    dP = g @ V.T
    dS = softmax_vjp(dP, P) if softmax_back is None else softmax_back(dP, P)
    dK = (dS.T if transpose_dK else dS) @ Q
    return dS @ K * c, dK * (c if scale_dK else 1), (P.T if transpose_dV else P) @ g


# ------------------------------------------------------------------ convolutions (loops)


def f_conv1d(x, w):
    n_out = len(x) - len(w) + 1
    y = np.zeros(n_out, dtype=x.dtype)
    for i in range(n_out):
        for k in range(len(w)):
            y[i] += x[i + k] * w[k]
    return y


def vjp_conv1d(g, x, w, *, shift=0, short=0, flip=False):
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    kw = len(w)
    for i in range(len(g) - short):
        for k in range(kw):
            dx[i + k] += g[i] * w[kw - 1 - k if flip else k]
            dw[k] += g[i] * x[(i + k + shift) % len(x)]
    return dx, dw


def f_conv2d(x, k):
    ho, wo = x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1
    y = np.zeros((ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            y[i, j] = np.sum(x[i:i + k.shape[0], j:j + k.shape[1]] * k)
    return y


def vjp_conv2d(g, x, k, *, transposed_kernel=False, short=0):
    dx, dk = np.zeros_like(x), np.zeros_like(k)
    kk = k.T if transposed_kernel else k
    for i in range(g.shape[0]):
        for j in range(g.shape[1] - short):
            dx[i:i + k.shape[0], j:j + k.shape[1]] += g[i, j] * kk
            dk += g[i, j] * x[i:i + k.shape[0], j:j + k.shape[1]]
    return dx, dk


# ------------------------------------------------------------------ a tanh RNN cell


def f_rnn_cell(x, h, Wx, Wh, b):
    return np.tanh(x @ Wx + h @ Wh + b)


def vjp_rnn_cell(g, x, h, Wx, Wh, b, *, dh_weight=None, dWh=None, db_axis=0, act=True):
    y = np.tanh(x @ Wx + h @ Wh + b)
    gz = g * (1 - y**2) if act else g
    dWh_ = h.T @ gz if dWh is None else dWh(h, gz)
    return gz @ Wx.T, gz @ (Wh if dh_weight is None else dh_weight(Wx, Wh)).T, x.T @ gz, dWh_, gz.sum(axis=db_axis)


SQ = (4, 4)

CASES = [
    Case("matmul", f_matmul, vjp_matmul, {"X": normal(*SQ), "W": normal(*SQ)}, [
        ("missing_transpose_W", lambda g, X, W: (g @ W, X.T @ g)),
        ("missing_transpose_X", lambda g, X, W: (g @ W.T, X @ g)),
        ("dW_transposed", lambda g, X, W: (g @ W.T, g.T @ X)),
    ]),
    Case("dense_tanh", f_dense_tanh, vjp_dense_tanh, {"X": normal(*SQ), "W": normal(*SQ, scale=0.5),
                                                       "b": normal(4, scale=0.5)}, [
        ("input_for_output_in_activation",
         lambda g, X, W, b: dense_tanh_bug(g, X, W, b, act=lambda g, z: g * (1 - z**2))),
        ("bias_summed_over_wrong_axis",
         lambda g, X, W, b: dense_tanh_bug(g, X, W, b, db=lambda gz: gz.sum(axis=1))),
        ("bias_mean_instead_of_sum",
         lambda g, X, W, b: dense_tanh_bug(g, X, W, b, db=lambda gz: gz.mean(axis=0))),
        ("missing_transpose_W", lambda g, X, W, b: dense_tanh_bug(g, X, W, b, dX=lambda gz, W: gz @ W)),
    ] + precision_ladder(vjp_dense_tanh, arg=1, index=6)),
    Case("sum_sigmoid_matmul", f_sum_sigmoid_matmul, vjp_sum_sigmoid_matmul,
         {"X": normal(3, 4), "W": normal(4, 2)}, [
        ("dropped_factor_1_minus_s", lambda g, X, W: (g * sigmoid(X @ W) @ W.T, X.T @ (g * sigmoid(X @ W)))),
        ("derivative_of_output", lambda g, X, W: vjp_sum_sigmoid_matmul(g, X, W)[:1] + (
            X.T @ (g * sigmoid(sigmoid(X @ W)) * (1 - sigmoid(sigmoid(X @ W)))),)),
    ] + precision_ladder(vjp_sum_sigmoid_matmul, arg=0, index=6)),
    Case("bilinear", f_bilinear, vjp_bilinear, {"x": normal(4), "A": normal(*SQ), "y": normal(4)}, [
        ("extra_transpose_of_A", lambda g, x, A, y: (g * (A.T @ y), g * np.outer(x, y), g * (A.T @ x))),
        ("outer_product_swapped", lambda g, x, A, y: (g * (A @ y), g * np.outer(y, x), g * (A.T @ x))),
    ]),
    Case("quadratic_form", f_quadratic, vjp_quadratic, {"x": normal(4), "A": normal(*SQ)}, [
        ("assumes_symmetric_A", lambda g, x, A: (g * 2 * (A @ x), g * np.outer(x, x))),
        ("dropped_product_term", lambda g, x, A: (g * (A @ x), g * np.outer(x, x))),
    ]),
    Case("mlp2", f_mlp2, vjp_mlp2, {"x": normal(3), "W1": normal(4, 3), "W2": normal(2, 4)}, [
        ("dropped_activation_derivative", lambda g, x, W1, W2: (
            W1.T @ (W2.T @ g), np.outer(W2.T @ g, x), np.outer(g, np.tanh(W1 @ x)))),
        ("preactivation_for_hidden", lambda g, x, W1, W2: vjp_mlp2(g, x, W1, W2)[:2] + (np.outer(g, W1 @ x),)),
    ]),
    Case("softmax", f_softmax, vjp_softmax, {"x": normal(3, 4)}, [
        ("diagonal_only", lambda g, x: g * softmax(x) * (1 - softmax(x))),
        ("reduced_over_wrong_axis", lambda g, x: softmax_vjp(g, softmax(x), axis=0)),
        ("sign_of_correction", lambda g, x: softmax(x) * (g + (g * softmax(x)).sum(axis=-1, keepdims=True))),
    ] + precision_ladder(vjp_softmax, index=6)),
    Case("log_softmax", f_log_softmax, vjp_log_softmax, {"x": normal(3, 4)}, [
        ("cotangent_not_summed", lambda g, x: g - softmax(x) * g),
        ("softmax_over_wrong_axis", lambda g, x: g - softmax(x, axis=0) * g.sum(axis=-1, keepdims=True)),
    ]),
    Case("logsumexp", f_logsumexp, vjp_logsumexp, {"x": normal(3, 4)}, [
        ("unnormalised", lambda g, x: g[:, None] * np.exp(x - x.max(axis=-1, keepdims=True))),
        ("cotangent_summed_over_rows", lambda g, x: g.sum() * softmax(x)),
    ]),
    Case("layer_norm", f_layer_norm, vjp_layer_norm, {"x": normal(3, 5)}, [
        ("dropped_mean_term", lambda g, x: norm_vjp(g, x, -1, drop_mean=True)),
        ("dropped_projection_term", lambda g, x: norm_vjp(g, x, -1, drop_proj=True)),
        ("unbiased_variance", lambda g, x: norm_vjp(g, x, -1, ddof_bug=True)),
        ("eps_left_out", lambda g, x: norm_vjp(g, x, -1, eps=0.0)),
    ] + precision_ladder(vjp_layer_norm, index=7)),
    Case("layer_norm_affine", f_layer_norm_affine, vjp_layer_norm_affine,
         {"x": normal(*SQ), "gamma": uniform(4, low=0.5, high=1.5), "beta": normal(4)}, [
        ("gamma_summed_over_wrong_axis", lambda g, x, gamma, beta: (
            vjp_layer_norm_affine(g, x, gamma, beta)[0], (g * normalized(x, -1)[0]).sum(axis=1), g.sum(axis=0))),
        ("beta_mean_instead_of_sum", lambda g, x, gamma, beta: vjp_layer_norm_affine(g, x, gamma, beta)[:2] + (
            g.mean(axis=0),)),
        ("gamma_not_applied_to_dx", lambda g, x, gamma, beta: (
            norm_vjp(g, x, -1),) + vjp_layer_norm_affine(g, x, gamma, beta)[1:]),
    ]),
    Case("batch_norm", f_batch_norm, vjp_batch_norm,
         {"x": normal(*SQ, scale=2.0), "gamma": uniform(4, low=0.5, high=1.5), "beta": normal(4)}, [
        ("normalised_over_wrong_axis", lambda g, x, gamma, beta: (
            norm_vjp(g * gamma, x, -1),) + vjp_batch_norm(g, x, gamma, beta)[1:]),
        ("dropped_mean_term", lambda g, x, gamma, beta: (
            norm_vjp(g * gamma, x, 0, drop_mean=True),) + vjp_batch_norm(g, x, gamma, beta)[1:]),
        ("unbiased_variance", lambda g, x, gamma, beta: (
            norm_vjp(g * gamma, x, 0, ddof_bug=True),) + vjp_batch_norm(g, x, gamma, beta)[1:]),
    ]),
    Case("l2_normalize", f_l2_normalize, vjp_l2_normalize, {"x": normal(5)}, [
        ("dropped_projection", lambda g, x: g / np.sqrt(np.sum(x**2))),
        ("squared_norm_in_denominator", lambda g, x: vjp_l2_normalize(g, x) / np.sqrt(np.sum(x**2))),
    ]),
    Case("attention", f_attention, vjp_attention, {"Q": normal(*SQ), "K": normal(*SQ), "V": normal(*SQ)}, [
        ("dK_missing_scale", lambda g, Q, K, V: vjp_attention(g, Q, K, V, scale_dK=False)),
        ("dV_missing_transpose", lambda g, Q, K, V: vjp_attention(g, Q, K, V, transpose_dV=False)),
        ("dK_missing_transpose", lambda g, Q, K, V: vjp_attention(g, Q, K, V, transpose_dK=False)),
        ("softmax_backward_diagonal_only",
         lambda g, Q, K, V: vjp_attention(g, Q, K, V, softmax_back=lambda dP, P: dP * P * (1 - P))),
    ] + precision_ladder(vjp_attention, arg=1, index=9)),
    Case("conv1d", f_conv1d, vjp_conv1d, {"x": normal(8), "w": normal(3)}, [
        ("loop_bound_off_by_one", lambda g, x, w: vjp_conv1d(g, x, w, short=1)),
        ("index_off_by_one", lambda g, x, w: vjp_conv1d(g, x, w, shift=1)),
        ("kernel_flipped", lambda g, x, w: vjp_conv1d(g, x, w, flip=True)),
    ]),
    Case("conv2d", f_conv2d, vjp_conv2d, {"x": normal(5, 5), "k": normal(3, 3)}, [
        ("kernel_transposed", lambda g, x, k: vjp_conv2d(g, x, k, transposed_kernel=True)),
        ("loop_bound_off_by_one", lambda g, x, k: vjp_conv2d(g, x, k, short=1)),
    ] + precision_ladder(vjp_conv2d, arg=1, index=4)),
    Case("rnn_cell", f_rnn_cell, vjp_rnn_cell, {"x": normal(*SQ), "h": uniform(*SQ), "Wx": normal(*SQ, scale=0.5),
                                                 "Wh": normal(*SQ, scale=0.5), "b": normal(4, scale=0.5)}, [
        ("dh_through_Wx", lambda g, *a: vjp_rnn_cell(g, *a, dh_weight=lambda Wx, Wh: Wx)),
        ("dWh_missing_transpose", lambda g, *a: vjp_rnn_cell(g, *a, dWh=lambda h, gz: h @ gz)),
        ("bias_summed_over_wrong_axis", lambda g, *a: vjp_rnn_cell(g, *a, db_axis=1)),
        ("dropped_tanh_derivative", lambda g, *a: vjp_rnn_cell(g, *a, act=False)),
    ]),
]
