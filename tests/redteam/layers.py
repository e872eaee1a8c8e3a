"""Correct-but-nasty layers: numpy forward, hand-written VJP (some with a JVP).

Each forward is written the way a careful practitioner writes it (stable
formulas), at points chosen to be hard for a finite-difference check:
saturation, large logits, tiny variances, domain edges, ill-conditioning,
extreme output scales, mixed input scales.
"""

import numpy as np
from scipy.special import erf

from . import Case, rng

CLS = "correct"


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _dsigmoid(x):
    e = np.exp(-np.abs(x))
    return e / (1 + e) ** 2


def sigmoid(x):
    return _sigmoid(x)


def sigmoid_vjp(g, x):
    return g * _dsigmoid(x)


def tanh(x):
    return np.tanh(x)


def tanh_vjp(g, x):
    # 1 - tanh^2 rounds to 0 for |x| > 19; 4 e^{-2|x|} / (1 + e^{-2|x|})^2 does not
    e = np.exp(-2 * np.abs(x))
    return g * 4 * e / (1 + e) ** 2


def logsumexp(z):
    m = z.max()
    return m + np.log(np.sum(np.exp(z - m)))


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def logsumexp_vjp(g, z):
    return g * _softmax(z)


def softmax(z):
    return _softmax(z)


def softmax_vjp(g, z):
    s = _softmax(z)
    return s * (g - np.sum(g * s, axis=-1, keepdims=True))


def softmax_jvp(t, z):
    s = _softmax(z)
    return s * (t[0] - np.sum(t[0] * s, axis=-1, keepdims=True))


LABEL = 2


def cross_entropy(z):
    return logsumexp(z) - z[LABEL]


def cross_entropy_vjp(g, z):
    y = np.zeros_like(z)
    y[LABEL] = 1
    return g * (_softmax(z) - y)


EPS_NORM = 1e-5


def layer_norm(x):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS_NORM)


def layer_norm_vjp(g, x):
    n = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    r = 1 / np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + EPS_NORM)
    xh = (x - mu) * r
    return r * (g - g.mean(axis=-1, keepdims=True) - xh * (g * xh).sum(axis=-1, keepdims=True) / n)


def batch_norm(x):  # over the batch axis 0: a constant column has variance 0
    return layer_norm(x.T).T


def batch_norm_vjp(g, x):
    return layer_norm_vjp(g.T, x.T).T


def rms_norm(x, w):
    r = 1 / np.sqrt((x * x).mean() + EPS_NORM)
    return w * x * r


def rms_norm_vjp(g, x, w):
    r = 1 / np.sqrt((x * x).mean() + EPS_NORM)
    gx = g * w
    return r * gx - x * r**3 * (gx * x).sum() / x.size, g * x * r


def attention(q, k, v):
    s = _softmax(q @ k.T / np.sqrt(q.shape[1]))
    return s @ v


def attention_vjp(g, q, k, v):
    c = 1 / np.sqrt(q.shape[1])
    s = _softmax(q @ k.T * c)
    gs = g @ v.T
    ga = s * (gs - np.sum(gs * s, axis=1, keepdims=True))
    return ga @ k * c, ga.T @ q * c, s.T @ g


def gelu(x):
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def gelu_vjp(g, x):
    return g * (0.5 * (1 + erf(x / np.sqrt(2))) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi))


def gelu_jvp(t, x):
    return gelu_vjp(t[0], x)


def huber(x):
    a = np.abs(x)
    return np.where(a <= 1, 0.5 * x * x, a - 0.5)


def huber_vjp(g, x):
    return g * np.clip(x, -1, 1)


def maxpool(x):  # pairs of neighbours
    return x.reshape(-1, 2).max(axis=1)


def maxpool_vjp(g, x):
    pairs = x.reshape(-1, 2)
    out = np.zeros_like(pairs)
    out[np.arange(len(pairs)), pairs.argmax(axis=1)] = g
    return out.reshape(x.shape)


def sqrt(x):
    return np.sqrt(x)


def sqrt_vjp(g, x):
    return g * 0.5 / np.sqrt(x)


def log(x):
    return np.log(x)


def log_vjp(g, x):
    return g / x


def poly(x):
    return np.stack([x, x**2, x**3]).ravel()


def poly_vjp(g, x):
    g = g.reshape(3, -1)
    return g[0] + 2 * x * g[1] + 3 * x * x * g[2]


def product(x):
    return np.prod(x)


def product_vjp(g, x):
    return g * np.array([np.prod(np.delete(x, i)) for i in range(x.size)])


def solve(a, b):
    return np.linalg.solve(a, b)


def solve_vjp(g, a, b):
    lam = np.linalg.solve(a.T, g)
    return -np.outer(lam, np.linalg.solve(a, b)), lam


def inverse(a):
    return np.linalg.inv(a)


def inverse_vjp(g, a):
    ai = np.linalg.inv(a)
    return -ai.T @ g @ ai.T


def det(a):
    return np.linalg.det(a)


def det_vjp(g, a):
    return g * np.linalg.det(a) * np.linalg.inv(a).T


def cholesky(m):  # of the SPD matrix m m^T + I, so every perturbation of m stays SPD
    return np.linalg.cholesky(m @ m.T + np.eye(len(m)))


def _phi(x):
    return np.tril(x) - 0.5 * np.diag(np.diag(x))


def cholesky_vjp(g, m):
    l = np.linalg.cholesky(m @ m.T + np.eye(len(m)))
    li = np.linalg.inv(l)
    s = li.T @ _phi(l.T @ np.tril(g)) @ li
    return (s + s.T) @ m


def cumsum(x):
    return np.cumsum(x)


def cumsum_vjp(g, x):
    return np.cumsum(g[::-1])[::-1]


def cumprod(x):
    return np.cumprod(x)


def cumprod_vjp(g, x):
    c = np.cumprod(x)
    return np.cumsum((g * c)[::-1])[::-1] / x


def sort(x):
    return np.sort(x)


def sort_vjp(g, x):
    out = np.zeros_like(g)
    out[np.argsort(x)] = g
    return out


def piecewise(x, w):  # leaky relu of a linear map, away from 0: exactly linear there
    z = w @ x
    return np.where(z > 0, z, 0.1 * z)


def piecewise_vjp(g, x, w):
    gz = g * np.where(w @ x > 0, 1.0, 0.1)
    return w.T @ gz, np.outer(gz, x)


def tiny(x):
    return 1e-12 * np.sin(x) * x


def tiny_vjp(g, x):
    return g * 1e-12 * (np.cos(x) * x + np.sin(x))


def huge(x):
    return 1e12 * np.exp(x)


def huge_vjp(g, x):
    return g * 1e12 * np.exp(x)


def cubic(x):
    return x**3 - 2 * x**2 + x


def cubic_vjp(g, x):
    return g * (3 * x * x - 4 * x + 1)


def mixed(a, b):
    return np.sin(a * b) + a * b**2


def mixed_vjp(g, a, b):
    c = np.cos(a * b)
    return g * (c * b + b**2), g * (c * a + 2 * a * b)


def entropy(p):
    return -np.sum(p * np.log(p))


def entropy_vjp(g, p):
    return -g * (np.log(p) + 1)


def bce(p, y):
    return -np.sum(y * np.log(p) + (1 - y) * np.log1p(-p))


def bce_vjp(g, p, y):
    return g * ((1 - y) / (1 - p) - y / p), g * (np.log1p(-p) - np.log(p))


def softplus(x):
    return np.logaddexp(0, x)


def softplus_vjp(g, x):
    return g * _sigmoid(x)


def normalize(x):
    return x / np.linalg.norm(x)


def normalize_vjp(g, x):
    n = np.linalg.norm(x)
    u = x / n
    return (g - u * np.dot(g, u)) / n


def logdet(a):
    return np.linalg.slogdet(a)[1]


def logdet_vjp(g, a):
    return g * np.linalg.inv(a).T


def dense(x, w, b):
    return np.tanh(x @ w + b)


def dense_vjp(g, x, w, b):
    gz = g * (1 - np.tanh(x @ w + b) ** 2)
    return gz @ w.T, x.T @ gz, gz.sum(axis=0)


def conv(x, k):
    return np.convolve(x, k, mode="valid")


def conv_vjp(g, x, k):
    return np.correlate(g, k, mode="full"), np.convolve(x[::-1], g, mode="valid")


def sin_large(x):
    return np.sin(x)


def sin_large_vjp(g, x):
    return g * np.cos(x)


def _ill(n, cond, seed):
    r = rng(seed)
    u, _ = np.linalg.qr(r.standard_normal((n, n)))
    v, _ = np.linalg.qr(r.standard_normal((n, n)))
    return u @ np.diag(np.geomspace(1, 1 / cond, n)) @ v.T


def _spd(n, seed):
    m = rng(seed).standard_normal((n, n))
    return m @ m.T + n * np.eye(n)


def _pt(**kw):
    return lambda: {k: np.array(v, dtype=np.float64) for k, v in kw.items()}


def _case(name, fwd, vjp, point, jvp=None, **settings):
    return Case(name, name.split("@")[0], fwd, vjp, point, True, jvp, settings)


r = rng(13)
CASES = [
    _case("sigmoid@moderate", sigmoid, sigmoid_vjp, _pt(x=[-9.0, 6.5, 11.0, 14.0])),
    _case("sigmoid@saturated", sigmoid, sigmoid_vjp, _pt(x=[-38.0, -25.5, -20.0, 20.0, 31.0, 40.0, 0.3])),
    _case("tanh@saturated", tanh, tanh_vjp, _pt(x=[-35.0, -21.0, 19.5, 27.0, 0.7, -1.3])),
    _case("logsumexp@large", logsumexp, logsumexp_vjp, _pt(z=1000 + 30 * r.standard_normal(6))),
    _case("softmax@large", softmax, softmax_vjp, _pt(z=[[40.0, 1.0, -3.0], [500.0, 499.0, 480.0]]), softmax_jvp),
    _case("cross_entropy@one_hot", cross_entropy, cross_entropy_vjp, _pt(z=[0.5, -1.0, 35.0, 2.0])),
    _case("cross_entropy@wrong_hot", cross_entropy, cross_entropy_vjp, _pt(z=[30.0, -1.0, 0.0, 2.0])),
    _case("layer_norm@tiny_var", layer_norm, layer_norm_vjp, _pt(x=1 + 1e-4 * r.standard_normal((2, 5)))),
    _case("layer_norm@unit", layer_norm, layer_norm_vjp, _pt(x=r.standard_normal((2, 4)))),
    _case("batch_norm@const_col", batch_norm, batch_norm_vjp,
          _pt(x=np.column_stack([r.standard_normal(4), np.full(4, 3.0), r.standard_normal(4)]))),
    _case("rms_norm", rms_norm, rms_norm_vjp, _pt(x=r.standard_normal(5), w=r.standard_normal(5))),
    _case("attention@large_scores", attention, attention_vjp,
          _pt(q=6 * r.standard_normal((3, 4)), k=6 * r.standard_normal((3, 4)), v=r.standard_normal((3, 2)))),
    _case("gelu", gelu, gelu_vjp, _pt(x=[-6.0, -2.5, -0.3, 0.0, 0.4, 3.0, 9.0]), gelu_jvp),
    _case("huber@knot", huber, huber_vjp, _pt(x=[0.999, 1.001, -0.9995, -1.002, 0.2, 3.0])),
    _case("maxpool@near_ties", maxpool, maxpool_vjp, _pt(x=[1.0, 1.0 + 1e-4, -2.0, -2.0 - 3e-5, 0.5, 0.49])),
    _case("sqrt@near_zero", sqrt, sqrt_vjp, _pt(x=[1e-8, 3e-7, 1e-5, 2e-4, 1e-3])),
    _case("log@near_zero", log, log_vjp, _pt(x=[1e-8, 5e-7, 1e-5, 2e-4, 1e-3])),
    _case("poly@1e3", poly, poly_vjp, _pt(x=[1000.0, -1500.0, 800.0])),
    _case("product@many", product, product_vjp, _pt(x=1 + 0.5 * r.random(20))),
    _case("solve@cond1e6", solve, solve_vjp, _pt(a=_ill(4, 1e6, 1), b=r.standard_normal(4))),
    _case("solve@cond1e8", solve, solve_vjp, _pt(a=_ill(3, 1e8, 2), b=r.standard_normal(3))),
    _case("inverse", inverse, inverse_vjp, _pt(a=_ill(3, 1e3, 3))),
    _case("det", det, det_vjp, _pt(a=r.standard_normal((4, 4)))),
    _case("logdet@spd", logdet, logdet_vjp, _pt(a=_spd(4, 4))),
    _case("cholesky", cholesky, cholesky_vjp, _pt(m=r.standard_normal((3, 3)))),
    _case("cumsum", cumsum, cumsum_vjp, _pt(x=r.standard_normal(6))),
    _case("cumprod", cumprod, cumprod_vjp, _pt(x=[1.5, -0.7, 2.0, 0.9, -1.1])),
    _case("sort", sort, sort_vjp, _pt(x=[0.3, -1.2, 2.5, 0.31, -0.4])),
    _case("piecewise@linear", piecewise, piecewise_vjp, _pt(x=[1.0, -2.0, 0.5], w=[[1.0, 0.5, 2.0], [-1.0, 1.0, 0.0]])),
    _case("tiny@1e-12", tiny, tiny_vjp, _pt(x=[0.3, 1.7, -2.2])),
    _case("huge@1e12", huge, huge_vjp, _pt(x=[0.1, 2.0, -1.0])),
    _case("cubic@integers", cubic, cubic_vjp, _pt(x=[1.0, 2.0, 3.0, -4.0, 0.0, 7.0])),
    _case("mixed@scales", mixed, mixed_vjp, _pt(a=[1e6, 3e6], b=[1e-6, -2e-6])),
    _case("entropy@near_zero", entropy, entropy_vjp, _pt(p=[1e-7, 1e-4, 0.3, 0.6999])),
    _case("bce@edges", bce, bce_vjp, _pt(p=[1e-6, 1 - 1e-6, 0.5, 2e-5], y=[0.0, 1.0, 1.0, 0.3])),
    _case("softplus@large", softplus, softplus_vjp, _pt(x=[-40.0, -15.0, 0.1, 25.0, 45.0])),
    _case("normalize", normalize, normalize_vjp, _pt(x=r.standard_normal(4))),
    _case("dense", dense, dense_vjp, _pt(x=r.standard_normal((3, 3)), w=r.standard_normal((3, 3)), b=r.standard_normal(3))),
    _case("conv", conv, conv_vjp, _pt(x=r.standard_normal(7), k=r.standard_normal(3))),
    _case("sin@1e3", sin_large, sin_large_vjp, _pt(x=[1000.0, 2500.5, -3000.2])),
    _case("sin@1e6", sin_large, sin_large_vjp, _pt(x=[1e6, 0.7, -3e5])),
    _case("sqrt@mixed_scales", sqrt, sqrt_vjp, _pt(x=[1e-8, 1e6, 3.0])),
    _case("log@large", log, log_vjp, _pt(x=[1e8, 3e5, 1e-3])),
    _case("solve@rhs_scales", solve, solve_vjp, _pt(a=_spd(3, 5), b=[1e6, 1e-6, 1.0])),
]
