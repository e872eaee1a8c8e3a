"""A layer whose hand-written backward pass is wrong on purpose: d(x*x)/dx is 2x, not 3x."""


def f(x):
    return x * x


def f_vjp(g, x):
    return (3 * g * x,)
