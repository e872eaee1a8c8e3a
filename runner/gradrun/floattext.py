"""Floats as ``repr`` writes them, a whole numpy array at once.

``repr(float)`` writes the shortest decimal that reads back to the same double
(ties: the one nearest the double, then the even one). This module finds the
same digits for every element of a float64 array with uint64 arithmetic, by
Schubfach (R. Giulietti, "The Schubfach way to render doubles", 2020; the
layout of R. Bolz's C++ port: a 128-bit power of ten ``g`` and a 64x128-bit
multiply rounded to odd), then writes them in ``repr``'s notation:

==================  ======================
decimal point       notation
==================  ======================
-4 < decpt <= 16    fixed: 0.00015, 1.5, 100.0, 1000000000000000.0
otherwise           1.5e-05, 1e+16, 5e-324 (two exponent digits at least)
==================  ======================

where ``decpt`` is the position of the decimal point after the first digit
(``x = 0.d1d2... * 10**decpt``); ``nan``, ``inf``, ``-inf``, ``0.0`` and
``-0.0`` as ``repr``. A text is at most 24 bytes, built in three little-endian
uint64 words per element (digits from a table of 4-digit groups, then shifts
and masks for the sign, the leading zeros, the point and the exponent) and
compacted into an Arrow string array.

About 200 ns a float here (``benchmarks/bench_floattext.py``): twice the time of
Arrow's own cast to text (which finds the same digits but writes some bands in
other notations), a fifth of the time of a Python ``repr`` call a float.
``csvformat`` uses it for many floats in those bands.

``tests/test_floattext.py`` compares every byte with ``repr`` (powers, their
neighbours, subnormals, band edges, random bit patterns);
``benchmarks/bench_floattext.py --million N`` compares N million random bit patterns.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import arrowcompute as compute

U64 = np.uint64
KMIN, KMAX = -292, 326  # powers of ten in the table (of 10**-k for every double's k)
HIDDEN, FRACTION = U64(1 << 52), U64((1 << 52) - 1)
LOW32, S32 = U64(0xFFFFFFFF), U64(32)
ZEROS = U64(int.from_bytes(b"0" * 8, "little"))  # eight '0' bytes
WIDTH = 24  # bytes of the longest text: -2.2250738585072014e-308


def _floor_log2_pow10(k):
    """floor(log2(10**k)) for |k| <= 1700 (exact: Giulietti's constant)."""
    return (k * 1741647) >> 19


def _powers_of_ten() -> np.ndarray:
    """g for 10**k, k in [KMIN, KMAX]: floor(10**k * 2**-r) + 1 in [2**127, 2**128),
    as four 32-bit limbs, most significant first (shape (4, KMAX - KMIN + 1))."""
    gs = []
    for k in range(KMIN, KMAX + 1):
        r = _floor_log2_pow10(k) - 127
        g = (10 ** k >> r if r >= 0 else 10 ** k << -r) if k >= 0 else (1 << -r) // 10 ** -k
        gs.append(g + 1)
    assert all(1 << 127 <= g < 1 << 128 for g in gs)
    # rows contiguous: one take each
    return np.array([[(g >> shift) & 0xFFFFFFFF for g in gs] for shift in (96, 64, 32, 0)], dtype=U64)


def _four_digits() -> np.ndarray:
    """The four ASCII digits of 0..9999 as one little-endian word (first digit in the low byte)."""
    i = np.arange(10_000, dtype=U64)
    return sum((i // U64(10 ** (3 - j)) % U64(10) + U64(48)) << U64(8 * j) for j in range(4))


G = _powers_of_ten()
POW10 = np.array([10 ** i for i in range(18)], dtype=U64)
FOUR_DIGITS = _four_digits()
# the low j bytes of a word, j = 0..8
KEEP = np.array([(1 << (8 * j)) - 1 for j in range(9)], dtype=U64)
SPECIAL = {"nan": b"nan", "inf": b"inf", "-inf": b"-inf", "0.0": b"0.0", "-0.0": b"-0.0"}


def _product(g: list, cp: np.ndarray) -> list:
    """The 192-bit product g * cp as three 64-bit words, least significant first.
    g: four 32-bit limbs, most significant first; cp < 2**60."""
    c0, c1 = cp & LOW32, cp >> S32
    g3, g2, g1, g0 = g
    a0, a1, a2, a3 = g0 * c0, g1 * c0, g2 * c0, g3 * c0  # each < 2**64
    b0, b1, b2, b3 = g0 * c1, g1 * c1, g2 * c1, g3 * c1  # each < 2**60: c1 < 2**28
    t = (a0 >> S32) + (a1 & LOW32) + (b0 & LOW32)
    low = (t << S32) | (a0 & LOW32)
    t = (t >> S32) + (a1 >> S32) + (b0 >> S32) + (a2 & LOW32) + (b1 & LOW32)
    limb2 = t & LOW32
    t = (t >> S32) + (a2 >> S32) + (b1 >> S32) + (a3 & LOW32) + (b2 & LOW32)
    mid = (t << S32) | limb2
    t = (t >> S32) + (a3 >> S32) + (b2 >> S32) + (b3 & LOW32)
    return [low, mid, (((t >> S32) + (b3 >> S32)) << S32) | (t & LOW32)]


def _shifted_g(g_high, g_low, by) -> list:
    """g << by (1 <= by < 64) as three 64-bit words, least significant first."""
    down = U64(64) - by
    return [g_low << by, (g_high << by) | (g_low >> down), g_high >> down]


def _plus(p: list, d: list) -> list:
    low = p[0] + d[0]
    carry = (low < d[0]).astype(U64)
    mid = p[1] + d[1]
    over = mid < d[1]
    mid += carry
    return [low, mid, p[2] + d[2] + (over | (mid < carry)).astype(U64)]


def _minus(p: list, d: list) -> list:
    borrow = (p[0] < d[0]).astype(U64)
    mid = p[1] - d[1]
    under = (p[1] < d[1]) | (mid < borrow)
    return [p[0] - d[0], mid - borrow, p[2] - d[2] - under.astype(U64)]


def _round_to_odd(p: list) -> np.ndarray:
    """The top 64 bits of a 192-bit product, their last bit set if the middle 64 bits
    exceed 1 (Bolz's rop for g * cp; the lowest 64 bits are never looked at)."""
    return p[2] | (p[1] > U64(1)).astype(U64)


def _bounds(c, q, closer) -> tuple:
    """Schubfach's k and the rounded-to-odd 4 * 10**-k * (v- , v, v+), v+- the halfway
    points to the neighbouring doubles. The three products differ by g * 2**(h + 1)
    (g * 2**h below a power of two), so one multiply and two 192-bit sums find them."""
    k = (q * 1262611 - closer * 524031) >> 22  # floor(log10(2**q)), or of 3/4 * 2**q
    h = (q + _floor_log2_pow10(-k) + 1).astype(U64)  # 1..4
    row = -k - KMIN
    g = [limbs.take(row) for limbs in G]
    g_high, g_low = (g[0] << S32) | g[1], (g[2] << S32) | g[3]
    p = _product(g, c << (h + U64(2)))
    upper = _round_to_odd(_plus(p, _shifted_g(g_high, g_low, h + U64(1))))
    lower = _round_to_odd(_minus(p, _shifted_g(g_high, g_low, h + U64(1) - closer.astype(U64))))
    return k, lower, _round_to_odd(p), upper


def shortest(bits: np.ndarray) -> tuple:
    """The shortest decimal digits and exponent (x = digits * 10**exponent) of each
    finite, non-zero double (given as its uint64 bit pattern), as ``repr`` finds them."""
    exponent = ((bits >> U64(52)) & U64(0x7FF)).astype(np.int64)
    fraction = bits & FRACTION
    normal = exponent != 0
    c = np.where(normal, fraction | HIDDEN, fraction)
    q = np.where(normal, exponent - 1075, -1074)
    closer = (fraction == 0) & (exponent > 1)  # the lower neighbour is half as far
    k, lower, vb, upper = _bounds(c, q, closer)
    odd = c & U64(1)  # an odd significand's interval excludes its bounds
    lower += odd
    upper -= odd
    s = vb >> U64(2)
    sp = s // U64(10)
    up_in, wp_in = lower <= sp * U64(40), sp * U64(40) + U64(40) <= upper
    shorter = (s >= U64(10)) & (up_in != wp_in)  # one digit fewer: exactly one of two is in
    u_in, w_in = lower <= s * U64(4), s * U64(4) + U64(4) <= upper
    mid = s * U64(4) + U64(2)
    nearest = s + ((vb > mid) | ((vb == mid) & ((s & U64(1)) == 1))).astype(U64)
    digits = np.where(shorter, sp + wp_in.astype(U64), np.where(u_in != w_in, s + w_in.astype(U64), nearest))
    return _without_trailing_zeros(digits, k + shorter)


def _without_trailing_zeros(digits: np.ndarray, exponent: np.ndarray) -> tuple:
    """Trailing zeros moved into the exponent (only rows ending in 0 are worked on)."""
    rows = np.flatnonzero(digits % U64(10) == 0)
    if not len(rows):
        return digits, exponent
    d, e = digits[rows], exponent[rows]
    for p in (16, 8, 4, 2, 1):
        quotient = d // POW10[p]
        whole = quotient * POW10[p] == d
        d = np.where(whole, quotient, d)
        e += p * whole
    digits, exponent = digits.copy(), exponent.copy()
    digits[rows], exponent[rows] = d, e
    return digits, exponent


def _digit_words(digits: np.ndarray, n: np.ndarray) -> list:
    """The digits as ASCII, first digit in the lowest byte, padded with '0' to 24 bytes:
    three words."""
    d17 = digits * POW10[17 - n]  # exactly 17 digits
    first = d17 // POW10[16]
    rest = d17 - first * POW10[16]
    high = rest // POW10[8]
    low = rest - high * POW10[8]
    s8, s56 = U64(8), U64(56)
    words = []
    for group in (high, low):
        top4 = group // U64(10_000)
        words.append(FOUR_DIGITS[top4] | (FOUR_DIGITS[group - top4 * U64(10_000)] << S32))
    w1, w2 = words
    return [(first + U64(48)) | (w1 << s8), (w1 >> s56) | (w2 << s8), (w2 >> s56) | (ZEROS << s8)]


def _shifted(words: list, by: np.ndarray, fill: np.ndarray) -> list:
    """The 24 bytes moved ``by`` (0..7) bytes up, the first ``by`` bytes from ``fill``."""
    up = U64(8) * by.astype(U64)
    down = U64(64) - up  # a shift by 64 gives 0 in numpy
    w0, w1, w2 = words
    return [(w0 << up) | (fill & KEEP[by]), (w1 << up) | (w0 >> down), (w2 << up) | (w1 >> down)]


def _byte_tables() -> tuple:
    """For a byte position ``at`` (0..WIDTH + 1) and each word i, tables of: the bit shift
    that puts a byte at ``at`` in word i (64: not in it), the mask of word i's bytes
    before ``at``, and the shift that brings an earlier word's bytes from ``at`` on
    into word i (64: none)."""
    shift, keep, back = (np.full((3, WIDTH + 2), 64, dtype=U64) for _ in range(3))
    for i in range(3):
        for at in range(WIDTH + 2):
            local = at - 8 * i
            if 0 <= local < 8:
                shift[i, at] = 8 * local
            if -8 < local < 0:
                back[i, at] = -8 * local
            keep[i, at] = KEEP[min(max(local, 0), 8)]
    return shift, keep, back


AT_SHIFT, AT_KEEP, AT_BACK = _byte_tables()


def _with_point(words: list, at: np.ndarray) -> list:
    """'.' inserted at byte ``at`` (WIDTH or more: none), the bytes from there moved up one."""
    out = []
    for i, w in enumerate(words):
        keep = AT_KEEP[i].take(at)
        moved = (w & ~keep) << U64(8)
        if i:  # the last byte of the word before, if it moved
            moved |= words[i - 1] >> np.where(at < 8 * i, U64(56), U64(64))
        out.append((w & keep) | moved | (U64(ord(".")) << AT_SHIFT[i].take(at)))
    return out


def _with_suffix(words: list, at: np.ndarray, suffix: np.ndarray) -> list:
    """The bytes from ``at`` on replaced by ``suffix`` (at most 8 bytes; ``at`` WIDTH: none)."""
    return [(w & AT_KEEP[i].take(at)) | (suffix << AT_SHIFT[i].take(at)) | (suffix >> AT_BACK[i].take(at))
            for i, w in enumerate(words)]


def _exponent_suffix(e: np.ndarray) -> tuple:
    """'e-05', 'e+16', 'e-308' as words, and their lengths."""
    size = np.abs(e)
    three = size >= 100
    digits = FOUR_DIGITS[size] >> np.where(three, 8, 16).astype(U64)
    sign = np.where(e < 0, ord("-"), ord("+")).astype(U64)
    return U64(ord("e")) | (sign << U64(8)) | (digits << U64(16)), 4 + three


def text_words(values: np.ndarray) -> tuple:
    """Each float's ``repr`` as 24 bytes (three little-endian uint64 words, shape (n, 3))
    and its length."""
    x = np.ascontiguousarray(values, dtype=np.float64)
    bits = x.view(U64)
    special = ~np.isfinite(x) | (x == 0)
    negative = (bits >> U64(63)).astype(np.int64)
    bits = np.where(special, U64(0x3FF0000000000000), bits)  # 1.0 in their place, then their text
    digits, e = shortest(bits)
    n = np.searchsorted(POW10, digits, side="right")
    point = e + n  # x = 0.d1d2... * 10**point
    scientific = (point <= -4) | (point > 16)
    small = ~scientific & (point <= 0)  # 0.000ddd
    words = _digit_words(digits, n)
    lead = np.where(small, 1 - point, 0)  # the leading zeros of 0.000ddd but its first
    fill = np.where(negative == 1, (ZEROS << U64(8)) | U64(ord("-")), ZEROS)
    words = _shifted(words, negative + lead, fill)
    at = np.where(scientific, np.where(n > 1, 1, WIDTH), np.where(small, 1, point)) + negative
    words = _with_point(words, at)
    suffix, suffix_size = _exponent_suffix(point - 1)
    body = n + (n > 1)
    words = _with_suffix(words, np.where(scientific, body + negative, WIDTH), np.where(scientific, suffix, U64(0)))
    length = negative + np.where(scientific, body + suffix_size,
                                 np.where(small, 2 - point + n, np.where(point < n, n + 1, point + 2)))
    out = np.stack(words, axis=1)
    if special.any():
        rows = np.flatnonzero(special)
        texts = [SPECIAL[repr(v)] for v in x[rows].tolist()]
        out[rows] = [np.frombuffer(t.ljust(WIDTH, b"\0"), U64) for t in texts]
        length[rows] = [len(t) for t in texts]
    return out, length


def strings(values: np.ndarray) -> pa.Array:
    """Each float as ``repr(float)`` writes it, as an Arrow string array.

    The texts stay where they were built, 24 bytes apart: a string-view array points at
    each (its length, and its bytes inline up to 12 or else their offset), and Arrow's
    cast to a string array compacts them, in half the time of numpy's boolean indexing."""
    n = len(values)
    if n * WIDTH >= 2 ** 31:  # a view's offset is an int32 (a report is written 65 536 rows at a time)
        raise ValueError(f"floattext.strings writes at most {(2 ** 31 - 1) // WIDTH} floats at once, not {n}")
    words, length = text_words(values)
    view = np.empty((n, 2), dtype=U64)
    view[:, 0] = length.astype(U64) | ((words[:, 0] & KEEP.take(np.minimum(length, 4))) << S32)
    inline = ((words[:, 0] >> S32) | (words[:, 1] << S32)) & KEEP.take(np.clip(length - 4, 0, 8))
    view[:, 1] = np.where(length <= 12, inline, np.arange(0, WIDTH * n, WIDTH, dtype=U64) << S32)
    array = pa.Array.from_buffers(pa.string_view(), n, [None, pa.py_buffer(view), pa.py_buffer(words)])
    return compute.cast(array, pa.string())
