"""floattext writes each float byte for byte as repr does; csvformat's paths through it too.

Millions of random bit patterns: ``benchmarks/bench_floattext.py --million 5``."""

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradrun import csvformat, floattext


def assert_as_repr(values):
    values = np.asarray(values, dtype=np.float64)
    got = floattext.strings(values).to_pylist()
    expected = [repr(v) for v in values.tolist()]
    wrong = [(e, g) for e, g in zip(expected, got) if e != g]
    assert not wrong, f"{len(wrong)} of {len(values)} differ from repr, first (repr, floattext): {wrong[:5]}"


def with_neighbours(values):
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        return np.concatenate([values, np.nextafter(values, 0), np.nextafter(values, np.inf),
                               np.nextafter(values, -np.inf)])


def test_random_bit_patterns_every_exponent():
    """Random doubles of every exponent, subnormals among them (and their sign flipped)."""
    rng = np.random.default_rng(14)
    bits = rng.integers(0, 2 ** 64, size=200_000, dtype=np.uint64)
    subnormal = rng.integers(1, 2 ** 52, size=5_000, dtype=np.uint64)
    values = np.concatenate([bits, subnormal]).view(np.float64)
    assert_as_repr(values[np.isfinite(values)])


def test_powers_of_two_and_of_ten_and_their_neighbours():
    twos = np.ldexp(1.0, np.arange(-1074, 1024))
    tens = np.array([float(f"1e{k}") for k in range(-323, 309)])
    assert_as_repr(with_neighbours(np.concatenate([twos, tens, -twos, -tens])))


def test_every_notation_band_edge():
    """repr turns to exponents below 1e-4 and from 1e16; Arrow's bands (1e-9, 1e-6, 1e10) too."""
    edges = np.array([1e-9, 1e-6, 1e-5, 1e-4, 1e-3, 1.0, 1e10, 1e15, 1e16, 1e17, 1e22, 1e23, 1e100, 1e-100])
    near = np.concatenate([edges, 1.5 * edges, 9.999999999999999 * edges, 0.1 * edges])
    assert_as_repr(with_neighbours(np.concatenate([near, -near])))


def test_extremes_and_specials():
    values = [0.0, -0.0, math.nan, -math.nan, math.inf, -math.inf, 5e-324, -5e-324, 1e-323,
              2.2250738585072014e-308, 2.225073858507201e-308, 1.7976931348623157e308,
              -1.7976931348623157e308, 0.1, 0.2, 0.3, 1 / 3, 2 / 3, 123.456, 1e21, 1e-7, 9.5e-5]
    assert_as_repr(values)


def test_integers_up_to_two_to_the_53_and_beyond():
    small = np.arange(0, 20_000, dtype=np.float64)
    top = 2.0 ** 53 - np.arange(0, 2_000)
    beyond = 2.0 ** 53 + 2 * np.arange(0, 2_000)
    far = np.ldexp(np.arange(1, 2_000, dtype=np.float64), 60)
    rng = np.random.default_rng(53)  # 2**53 to 2**64: a 17-digit integer's last digits are a choice
    wide = np.ldexp(rng.integers(2 ** 52, 2 ** 53, 20_000).astype(np.float64), rng.integers(1, 12, 20_000))
    decimal = 10.0 ** np.arange(0, 23) * np.array([[1], [3], [7], [9]])
    assert_as_repr(np.concatenate([small, top, beyond, far, wide, decimal.ravel(), -small, -beyond]))


def test_shortest_digits_read_back_and_carry_no_trailing_zero():
    rng = np.random.default_rng(5)
    values = rng.standard_normal(5_000) * 10.0 ** rng.integers(-300, 300, 5_000)
    digits, exponent = floattext.shortest(values.view(np.uint64))
    assert (digits % 10 != 0).all()
    back = [float(f"{d}e{e}") for d, e in zip(digits.tolist(), exponent.tolist())]
    assert np.array_equal(np.abs(values), back)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=40))
def test_any_floats(values):
    assert_as_repr(values)


def band_heavy(n, rng):
    """Floats most of which csvformat writes in repr's own notation (1e-6..1e-4, 1e10..1e16)."""
    return np.concatenate([rng.uniform(1e-6, 1e-4, n), -rng.uniform(1e10, 1e16, n), rng.standard_normal(n)])


@pytest.mark.parametrize("n", [10, 700, 3000], ids=["repr-calls", "floattext-for-the-bands", "floattext-all"])
def test_float_strings_each_path_writes_repr(n):
    """Few band floats: repr itself; many: floattext for them; most of a column: floattext for all."""
    rng = np.random.default_rng(n)
    values = np.concatenate([band_heavy(n, rng), rng.standard_normal(n if n < 3000 else 10) * 1e-7, [0.0, 7.0]])
    assert csvformat.float_strings(values).to_pylist() == [repr(v) for v in values.tolist()]
    masked = pa.array(values, mask=np.arange(len(values)) % 3 == 0)
    assert csvformat.float_strings(masked).to_pylist() == [None if i % 3 == 0 else repr(v)
                                                          for i, v in enumerate(values.tolist())]


def test_csv_of_band_heavy_floats_reads_back_bit_for_bit(tmp_path):
    rng = np.random.default_rng(7)
    values = np.concatenate([band_heavy(2000, rng), rng.integers(0, 2 ** 64, 2000, dtype=np.uint64).view(np.float64)])
    values = values[np.isfinite(values)]
    batch = pa.RecordBatch.from_arrays([pa.array(values), pa.array(np.arange(len(values)))], ["x", "i"])
    path = tmp_path / "floats.csv"
    path.write_bytes(csvformat.header(["x", "i"]) + csvformat.batch_bytes(batch))
    back = pd.read_csv(path)["x"].to_numpy()
    assert np.array_equal(back.view(np.uint64), values.view(np.uint64))
