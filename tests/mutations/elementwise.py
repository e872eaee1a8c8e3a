"""Elementwise functions and broadcasting binary ops, with their VJPs and mutants."""

import math

import numpy as np

from . import Case, away, normal, precision_ladder, sigmoid, uniform

SHAPE = (3, 4)
GELU_C = math.sqrt(2 / math.pi)


def f_sigmoid(x):
    return sigmoid(x)


def vjp_sigmoid(g, x):
    s = sigmoid(x)
    return g * s * (1 - s)


def f_tanh(x):
    return np.tanh(x)


def vjp_tanh(g, x):
    return g * (1 - np.tanh(x) ** 2)


def f_softplus(x):
    return np.logaddexp(0.0, x)


def vjp_softplus(g, x):
    return g * sigmoid(x)


def f_gelu(x):
    return 0.5 * x * (1 + np.tanh(GELU_C * (x + 0.044715 * x**3)))


def gelu_parts(x):
    t = np.tanh(GELU_C * (x + 0.044715 * x**3))
    return t, GELU_C * (1 + 3 * 0.044715 * x**2)


def vjp_gelu(g, x):
    t, du = gelu_parts(x)
    return g * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * du)


def f_swish(x):
    return x * sigmoid(x)


def vjp_swish(g, x):
    s = sigmoid(x)
    return g * (s + x * s * (1 - s))


def f_leaky_relu(x):
    return np.where(x > 0, x, 0.2 * x)


def vjp_leaky_relu(g, x):
    return np.where(x > 0, g, 0.2 * g)


def f_elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def vjp_elu(g, x):
    return np.where(x > 0, g, g * np.exp(np.minimum(x, 0)))


def f_xsinx(x):
    return x * np.sin(x)


def vjp_xsinx(g, x):
    return g * (np.sin(x) + x * np.cos(x))


def f_softsign(x):
    return x / (1 + np.abs(x))


def vjp_softsign(g, x):
    return g / (1 + np.abs(x)) ** 2


def f_sigmoid_square(x):
    return sigmoid(x**2)


def vjp_sigmoid_square(g, x):
    s = sigmoid(x**2)
    return g * s * (1 - s) * 2 * x


def f_mul_broadcast(x, y):
    return x * y


def vjp_mul_broadcast(g, x, y):
    return g * y, (g * x).sum(axis=0)


def f_bias_add(x, b):
    return x + b


def vjp_bias_add(g, x, b):
    return g, g.sum(axis=0)


def f_div(x, y):
    return x / y


def vjp_div(g, x, y):
    return g / y, -g * x / y**2


CASES = [
    Case("sigmoid", f_sigmoid, vjp_sigmoid, {"x": normal(*SHAPE, scale=2.0)}, [
        ("derivative_of_output", lambda g, x: vjp_sigmoid(g, sigmoid(x))),
        ("dropped_factor_1_minus_s", lambda g, x: g * sigmoid(x)),
    ] + precision_ladder(vjp_sigmoid)),
    Case("tanh", f_tanh, vjp_tanh, {"x": normal(*SHAPE)}, [
        ("input_for_output", lambda g, x: g * (1 - x**2)),
        ("sign_of_square", lambda g, x: g * (1 + np.tanh(x) ** 2)),
    ]),
    Case("softplus", f_softplus, vjp_softplus, {"x": normal(*SHAPE, scale=2.0)}, [
        ("output_for_input", lambda g, x: g * sigmoid(f_softplus(x))),
        ("sigmoid_of_minus_x", lambda g, x: g * sigmoid(-x)),
    ]),
    Case("gelu_tanh", f_gelu, vjp_gelu, {"x": normal(*SHAPE, scale=1.5)}, [
        ("dropped_product_term", lambda g, x: g * 0.5 * (1 + gelu_parts(x)[0])),
        ("inner_derivative_missing_3", lambda g, x: g * (
            0.5 * (1 + gelu_parts(x)[0])
            + 0.5 * x * (1 - gelu_parts(x)[0] ** 2) * GELU_C * (1 + 0.044715 * x**2))),
    ] + precision_ladder(vjp_gelu, index=5)),
    Case("swish", f_swish, vjp_swish, {"x": normal(*SHAPE, scale=2.0)}, [
        ("dropped_product_term", lambda g, x: g * sigmoid(x)),
        ("sign_of_product_term", lambda g, x: g * (sigmoid(x) - x * sigmoid(x) * (1 - sigmoid(x)))),
    ]),
    Case("leaky_relu", f_leaky_relu, vjp_leaky_relu, {"x": away(*SHAPE)}, [
        ("sign_wrong_below_zero", lambda g, x: np.where(x > 0, g, -0.2 * g)),
        ("relu_slope_below_zero", lambda g, x: np.where(x > 0, g, 0 * g)),
    ]),
    Case("elu", f_elu, vjp_elu, {"x": away(*SHAPE)}, [
        ("output_for_input_below_zero", lambda g, x: np.where(x > 0, g, g * np.exp(f_elu(x)))),
    ]),
    Case("x_sin_x", f_xsinx, vjp_xsinx, {"x": uniform(*SHAPE, low=-3.0, high=3.0)}, [
        ("dropped_product_term", lambda g, x: g * np.sin(x)),
        ("sign_of_cos", lambda g, x: g * (np.sin(x) - x * np.cos(x))),
    ]),
    Case("softsign", f_softsign, vjp_softsign, {"x": away(*SHAPE)}, [
        ("sign_wrong_below_zero", lambda g, x: g / (1 + x) ** 2),
    ]),
    Case("sigmoid_of_square", f_sigmoid_square, vjp_sigmoid_square, {"x": normal(*SHAPE)}, [
        ("dropped_inner_derivative", lambda g, x: vjp_sigmoid(g, x**2)),
        ("inner_derivative_x", lambda g, x: vjp_sigmoid(g, x**2) * x),
    ]),
    Case("mul_broadcast", f_mul_broadcast, vjp_mul_broadcast, {"x": normal(4, 4), "y": normal(4)}, [
        ("reduced_over_wrong_axis", lambda g, x, y: (g * y, (g * x).sum(axis=1))),
        ("mean_instead_of_sum", lambda g, x, y: (g * y, (g * x).mean(axis=0))),
        ("output_for_input", lambda g, x, y: (g * y, (g * x * y).sum(axis=0))),
    ]),
    Case("bias_add", f_bias_add, vjp_bias_add, {"x": normal(5, 5), "b": normal(5)}, [
        ("bias_summed_over_wrong_axis", lambda g, x, b: (g, g.sum(axis=1))),
        ("bias_mean_instead_of_sum", lambda g, x, b: (g, g.mean(axis=0))),
    ] + precision_ladder(vjp_bias_add, arg=1, index=2)),
    Case("div", f_div, vjp_div, {"x": normal(*SHAPE), "y": uniform(*SHAPE, low=0.5, high=2.0)}, [
        ("quotient_rule_sign", lambda g, x, y: (g / y, g * x / y**2)),
        ("dropped_numerator", lambda g, x, y: (g / y, -g / y**2)),
    ]),
]
