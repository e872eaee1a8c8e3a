"""Special functions numpy lacks, on real and complex arrays: the error function.

``erf`` of a real array uses the C library's ``math.erf`` element by element
(correctly rounded to within an ulp or two). Of a complex array z = x + iy
it sums erf's Taylor series about the real part,

    erf(x + iy) = erf(x) + 2/sqrt(pi) * exp(-x**2) * sum_{n>=1} (-1)**(n-1) H_{n-1}(x) (iy)**n / n!

with H the physicists' Hermite polynomials, so the result is holomorphic:
complex-step differentiation (y ~ 1e-20) and complex perturbations of the
reverse pass both see erf's true derivatives. The series is summed until its
terms vanish, which for the small imaginary parts those methods use takes a
handful of terms.
"""

from __future__ import annotations

import math

import numpy as np

_ERF = np.frompyfunc(math.erf, 1, 1)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
MAX_TERMS = 200
MAX_IMAG = 1.0  # beyond this the series is slow to converge


def _real_erf(x):
    x = np.asarray(x)
    return np.asarray(_ERF(x), dtype=x.dtype if x.dtype.kind == "f" else np.float64)


def erf(z):
    """The error function, elementwise; holomorphic on complex input with |Im z| <= 1."""
    z = np.asarray(z)
    if not np.iscomplexobj(z):
        return _real_erf(z)
    x, y = np.real(z), np.imag(z)
    if np.any(np.abs(y) > MAX_IMAG):
        raise ValueError(f"erf of a complex argument needs |imaginary part| <= {MAX_IMAG}")
    total = _real_erf(x).astype(z.dtype)
    weight = TWO_OVER_SQRT_PI * np.exp(-x * x)
    h_prev, h = np.zeros_like(x), np.ones_like(x)  # H_{-1} (unused), H_0
    power = np.ones_like(z)  # (iy)**n / n!
    for n in range(1, MAX_TERMS):
        power = power * (1j * y) / n
        term = weight * (-1) ** (n - 1) * h * power
        total = total + term
        h_prev, h = h, 2 * x * h - 2 * (n - 1) * h_prev  # H_n from H_{n-1}, H_{n-2}
        if n > 2 and np.all(np.abs(term) <= 1e-17 * np.maximum(np.abs(total), 1e-300)):
            break
    return total


def normal_cdf(z):
    """Phi(z) = (1 + erf(z / sqrt 2)) / 2."""
    return 0.5 * (1 + erf(np.asarray(z) / math.sqrt(2.0)))


def normal_pdf(z):
    """phi(z) = exp(-z**2 / 2) / sqrt(2 pi)."""
    z = np.asarray(z)
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


__all__ = ["erf", "normal_cdf", "normal_pdf"]
