"""The JAX adapter: float64 for gradrun's calls only, JAX's own VJP and JVP, batched
forwards, custom_vjp checked in reverse mode only, and ``jax:`` in a spec."""

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the JAX adapter needs jax (pip install 'gradrun[jax]')")
jnp = pytest.importorskip("jax.numpy")

import gradrun  # noqa: E402
from gradrun import engine, spec as specs  # noqa: E402
from gradrun.frameworks import jax as adapter  # noqa: E402
from gradrun.model import SpecError  # noqa: E402
from gradrun.runner import run_spec  # noqa: E402
from gradrun.tree import Call, Var  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def tanh_matmul(x, w):
    return jnp.tanh(x @ w)


@jax.custom_vjp
def clip(x):
    return jnp.clip(x, -1.0, 1.0)


clip.defvjp(lambda x: (clip(x), x), lambda x, g: (jnp.where(jnp.abs(x) < 1.0, g, 0.0),))


def loss_through_clip(x):
    return jnp.sum(clip(x) ** 2)


def branchy(x):  # Python control flow on a value: JAX cannot trace it
    return x**2 if x.sum() > 0 else -x


@pytest.fixture
def point():
    rng = np.random.default_rng(3)
    return rng.normal(size=(4, 3)), rng.normal(size=(3, 2))


def test_x64_is_on_during_calls_only():
    fn = adapter.function(lambda x: x * jnp.ones(()) + jax.config.jax_enable_x64, "f")
    assert fn.forward(np.zeros(2)).tolist() == [1.0, 1.0]
    assert fn.forward(np.zeros(2)).dtype == np.float64
    assert not jax.config.jax_enable_x64 and jnp.ones(1).dtype == jnp.float32


@pytest.mark.parametrize("context", [adapter.x64, adapter._x64_by_config])
def test_x64_contexts_restore_the_users_setting(context):
    for before in (False, True):
        jax.config.update("jax_enable_x64", before)
        try:
            with context():
                assert jnp.ones(1).dtype == jnp.float64
            assert bool(jax.config.jax_enable_x64) == before
        finally:
            jax.config.update("jax_enable_x64", False)


def test_forward_computes_in_the_dtype_it_is_given(point):
    x, w = point
    fn = adapter.function(tanh_matmul, "f")
    out64 = fn.forward(x, w)
    assert out64.dtype == np.float64
    np.testing.assert_allclose(out64, np.tanh(x @ w), rtol=1e-14)
    out32 = fn.forward(x.astype(np.float32), w.astype(np.float32))
    assert out32.dtype == np.float32
    assert 1e-9 < np.abs(out32 - out64).max() < 1e-5  # float32 round-off, not float64's


def test_vjp_and_jvp_are_jaxs_and_match_closed_forms(point):
    x, w = point
    fn = adapter.function(tanh_matmul, "f")
    assert fn.params == ("x", "w")
    g = np.arange(8.0).reshape(4, 2) / 8
    d = g * (1 - np.tanh(x @ w) ** 2)
    gx, gw = fn.vjp(g, x, w)
    np.testing.assert_allclose(gx, d @ w.T, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(gw, x.T @ d, rtol=1e-13, atol=1e-14)
    tx, tw = np.ones_like(x), np.zeros_like(w)
    np.testing.assert_allclose(fn.jvp((tx, tw), x, w), (1 - np.tanh(x @ w) ** 2) * (tx @ w), rtol=1e-13, atol=1e-14)


def test_forward_batch_equals_one_call_per_row(point):
    x, w = point
    fn = adapter.function(tanh_matmul, "f")
    xs = x + np.random.default_rng(0).normal(size=(7,) + x.shape)
    rows = fn.forward_batch(xs, np.broadcast_to(w, (7,) + w.shape))
    assert rows.shape == (7, 4, 2)
    np.testing.assert_allclose(rows, [fn.forward(r, w) for r in xs], rtol=1e-14)


def branchy_matmul(x, w):  # untraceable, of two inputs
    return jnp.tanh(x @ w) if w.sum() > 0 else -jnp.tanh(x @ w)


@pytest.mark.parametrize("f", [tanh_matmul, branchy_matmul])
def test_an_input_the_same_in_every_row_goes_in_once(point, f):
    """gradrun passes the inputs a chunk does not move as stride-0 views: they are vmapped
    unbatched (in_axes None), not copied into every row and multiplied as a batch of copies."""
    x, w = point
    fn = adapter.function(f, "f")
    calls = fn.forward.__self__
    xs = x + np.random.default_rng(1).normal(size=(5,) + x.shape)
    rows = fn.forward_batch(xs, np.broadcast_to(w, (5,) + w.shape))
    np.testing.assert_allclose(rows, [fn.forward(r, w) for r in xs], rtol=1e-14)
    assert calls.traceable == (f is tanh_matmul)
    assert ("forward_batch", (0, None)) in calls.jitted or not calls.traceable
    same = fn.forward_batch(np.broadcast_to(x, (3,) + x.shape), np.broadcast_to(w, (3,) + w.shape))
    np.testing.assert_allclose(same, [fn.forward(x, w)] * 3, rtol=1e-14)
    tangents = np.eye(x.size)[[0, 4, 7]].reshape((3,) + x.shape)
    columns = fn.jvp_batch((tangents, None), x, w)
    np.testing.assert_allclose(columns, [fn.jvp((t, np.zeros_like(w)), x, w) for t in tangents], rtol=1e-14)
    assert ("jvp_batch", (0, None)) in calls.jitted or not calls.traceable


@pytest.mark.parametrize("name", ["x", "w"])
def test_forward_columns_by_batched_jvp_equal_one_jvp_per_column(point, name):
    x, w = point
    fn = adapter.function(tanh_matmul, "f")
    expr = Call("f", (Var("x"), Var("w")))
    columns = {}
    for label, f in (("batched", fn), ("one by one", dataclasses.replace(fn, jvp_batch=None))):
        graph = engine.build(expr, {"f": f}, ["x", "w"])
        vals = engine.evaluate(graph, {"x": x, "w": w})
        columns[label] = engine.forward_columns(graph, vals, name, [0, 2, 5])
    assert columns["batched"].shape == (8, 3)
    np.testing.assert_allclose(columns["batched"], columns["one by one"], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(columns["batched"], engine.jacobian(graph, vals, [name])[name][:, [0, 2, 5]],
                               rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("f, reverse_only", [(clip, True), (loss_through_clip, True), (tanh_matmul, False),
                                             (jax.jit(clip), True), (jax.jit(loss_through_clip), True),
                                             (jax.nn.softplus, False)])
def test_custom_vjp_is_checked_in_reverse_mode_only(f, reverse_only):
    fn = adapter.function(f, "f")
    assert (fn.jvp is None) == reverse_only
    assert ("reverse mode only" in fn.notes[0]) == reverse_only


def test_untraceable_function_is_called_eagerly():
    fn = adapter.function(branchy, "f")
    x = np.array([0.5, -0.2, 1.5])
    result = gradrun.check("f(x)", {"x": x}, functions={"f": fn})
    assert result.error is None and result.passed
    np.testing.assert_allclose(fn.vjp(np.ones(3), x)[0], 2 * x)


def test_code_called_eagerly_gets_arrays_of_its_own():
    """What untraceable code is given never shares memory with gradrun's working arrays, which
    gradrun writes into between calls (``jax.device_put`` alone aliases a numpy array of 1000
    floats), and it is given jax arrays."""
    xs = [np.ones(n) for n in range(1000, 1064)]  # device_put aliases those its alignment allows
    with adapter.x64():  # as gradrun calls it: float64 stays float64
        given = adapter._owned(tuple(xs))
    for x in xs:
        x[0] = -5.0
    assert all(float(g[0]) == 1.0 and isinstance(g, jax.Array) for g in given)
    fn = adapter.function(branchy, "f")
    assert fn.forward(np.array([0.5, -0.2])).shape == (2,)  # branchy is called eagerly, on such arrays


def test_arguments_go_in_without_compiling_a_conversion_per_shape(caplog):
    """jnp.asarray of a numpy array compiles jit(stage) for every new shape and dtype (28 of
    the 66 compilations of experiments/jax-rules.yaml); gradrun's calls compile the function alone."""
    fn = adapter.function(tanh_matmul, "tanh_matmul")
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level("WARNING", logger="jax"):
            fn.forward(np.ones((3, 7)), np.ones((7, 2)))
    finally:
        jax.config.update("jax_log_compiles", False)
    compiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling")]
    assert compiled and all("tanh_matmul" in m for m in compiled), compiled


def test_spec_runs_jax_functions_with_notes():
    spec = specs.load_spec(ROOT / "experiments" / "jax-rules.yaml")
    results = run_spec(spec)
    assert results and all(r.error is None and r.passed for r in results)
    notes = {r.name: " ".join(r.notes) for r in results}
    assert "reverse mode only" in notes["clip-above-threshold"]
    assert "cross-checked" in notes["logsumexp-moderate"]
    assert not jax.config.jax_enable_x64


def test_spec_flags_a_wrong_rule(tmp_path):
    (tmp_path / "wrong.py").write_text(textwrap.dedent("""
        import jax, jax.numpy as jnp

        @jax.custom_jvp
        def f(x):
            return jnp.sin(x)

        f.defjvp(lambda p, t: (jnp.sin(p[0]), jnp.cos(p[0]) * t[0] * 1.000001))
    """))
    path = tmp_path / "wrong.yaml"
    path.write_text("version: 1\nfunctions:\n  f: {jax: 'wrong:f'}\n"
                    "experiments:\n  - name: e\n    function: f\n    inputs: {x: [0.3, 1.2]}\n")
    (result,) = run_spec(specs.load_spec(path))
    assert result.error is None and not result.passed


def _issues(tmp_path, functions: str):
    path = tmp_path / "s.yaml"
    path.write_text(f"version: 1\nfunctions:\n{functions}\n"
                    "experiments:\n  - name: e\n    function: f\n    inputs: {x: 1.0}\n")
    with pytest.raises(SpecError) as e:
        specs.load_spec(path)
    return e.value.issues


def test_spec_errors_name_the_place(tmp_path):
    (issue,) = _issues(tmp_path, "  f: {jax: 'nowhere:f'}")
    assert (issue.line, issue.path) == (3, "functions.f.jax") and "not found" in issue.message
    (issue,) = _issues(tmp_path, "  f: {jax: 'jrules:f', vjp: 'jrules:g'}")
    assert "unknown key 'vjp'" in issue.message and issue.line == 3


def test_missing_jax_is_a_spec_error(tmp_path, monkeypatch):
    import gradrun.frameworks

    monkeypatch.delattr(gradrun.frameworks, "jax")
    monkeypatch.setitem(sys.modules, "gradrun.frameworks.jax", None)
    (tmp_path / "m.py").write_text("def f(x):\n    return x\n")
    (issue,) = _issues(tmp_path, "  f: {jax: 'm:f'}")
    assert "gradrun[jax]" in issue.hint


def test_jax_is_imported_only_when_a_spec_names_it():
    code = ("import sys, gradrun.cli; from gradrun import spec, runner; "
            "runner.run_spec(spec.load_spec('experiments/chain.yaml')); print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@jax.custom_jvp
def softplus_overflowing_in_float32(x):
    return jnp.logaddexp(x, 0.0)


softplus_overflowing_in_float32.defjvp(
    lambda p, t: (jnp.logaddexp(p[0], 0.0), jnp.exp(p[0]) / (1 + jnp.exp(p[0])) * t[0]))


def test_a_rule_overflowing_in_float32_only_fails_in_float32_only():
    fn = adapter.function(softplus_overflowing_in_float32, "f")
    x = {"x": np.array([-2.0, 1.0, 95.0])}  # exp(95) > float32's largest number
    verdicts = {d: gradrun.check("f(x)", x, functions={"f": fn}, dtype=d) for d in ("float64", "float32")}
    assert verdicts["float64"].passed
    assert not verdicts["float32"].passed
    assert {r.element for r in verdicts["float32"].records if not r.passed} == {"x[2]"}


def cubic_loss(x, w):
    return jnp.sum(jnp.tanh(x @ w) ** 3)


@jax.custom_jvp
def sin_with_rule(x):
    return jnp.sin(x)


sin_with_rule.defjvp(lambda p, t: (jnp.sin(p[0]), jnp.cos(p[0]) * t[0]))


@jax.custom_jvp
def sin_wrong_second_derivative(x):  # first derivative right, its derivative wrong
    return jnp.sin(x)


sin_wrong_second_derivative.defjvp(lambda p, t: (jnp.sin(p[0]), jax.lax.stop_gradient(jnp.cos(p[0])) * t[0]))


def test_second_order_is_jvp_of_vjp(point):
    x, w = point
    fn = adapter.function(cubic_loss, "f")
    h = fn.hvp(np.array(1.0), (np.ones_like(x), np.zeros_like(w)), x, w)
    expected = jax.jacfwd(jax.grad(cubic_loss, argnums=(0, 1)))
    with adapter.x64():
        hx = np.asarray(expected(jnp.asarray(x), jnp.asarray(w))[0])  # d(grad_x)/dx, (4,3,4,3)
    np.testing.assert_allclose(h[0], np.einsum("ijkl,kl->ij", hx, np.ones_like(x)), rtol=1e-12, atol=1e-13)
    result = gradrun.check("f(x, w)", {"x": x, "w": w}, functions={"f": fn}, order=2)
    assert result.error is None and result.passed


@jax.custom_vjp
def sin_by_vjp(x):
    return jnp.sin(x)


sin_by_vjp.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (jnp.cos(x) * g,))


@pytest.mark.parametrize("f, right", [(sin_with_rule, True), (sin_wrong_second_derivative, False),
                                      (sin_by_vjp, True)])
def test_second_order_sees_a_rule_whose_own_derivative_is_wrong(f, right):
    fn = adapter.function(lambda x: jnp.sum(f(x)), "f")
    for order in (1, 2):
        result = gradrun.check("f(x)", {"x": np.array([0.3, 1.1, -2.0])}, functions={"f": fn}, order=order)
        assert result.error is None
        assert result.passed == (right or order == 1)


def float32_inside(x):  # ignores the dtype it is given
    return jnp.sin(x.astype(jnp.float32))


def test_code_computing_in_float32_only_is_checked_as_float32():
    fn = adapter.function(float32_inside, "f")
    result = gradrun.check("f(x)", {"x": np.array([0.3, 1.2])}, functions={"f": fn})
    assert result.error is None and result.passed
    assert max(r.tolerance for r in result.records) > 1e-8  # float32's tolerance, not float64's


def test_the_command_runs_a_jax_spec_and_records_its_notes(tmp_path):
    import json

    from click.testing import CliRunner

    from gradrun import cli

    spec = str(ROOT / "experiments" / "jax-rules.yaml")
    result = CliRunner().invoke(cli.cli, ["run", spec, "--out", str(tmp_path), "--only", "clip-*", "-v"])
    assert result.exit_code == 0, result.output
    assert "checked in reverse mode only" in result.output
    record = json.loads((tmp_path / "jax-rules.run.json").read_text())
    assert any("reverse mode only" in note for e in record["experiments"] for note in e["notes"])


def test_a_chunk_is_padded_to_its_bucket_and_cut_back(monkeypatch):
    """Chunks of 55, 56 and 60 rows run as one batch size (one XLA compilation), and each row
    is what the function gives at that point alone."""
    from gradrun.frameworks import jax as jax_adapter
    assert [jax_adapter._bucket(r) for r in (1, 3, 14, 55, 56, 60, 64, 65, 100, 349, 1024)] == \
        [1, 4, 16, 64, 64, 64, 64, 80, 112, 384, 1024]
    fn = jax_adapter.function(lambda x: jnp.tanh(x).sum(axis=-1), "f")
    sizes = []
    real = jax_adapter._Calls.__call__
    monkeypatch.setattr(jax_adapter._Calls, "__call__",
                        lambda self, what, *args: sizes.append(len(args[0])) or real(self, what, *args))
    rng = np.random.default_rng(0)
    for rows in (55, 56, 60):
        x = rng.normal(size=(rows, 3))
        np.testing.assert_allclose(fn.forward_batch(x), np.tanh(x).sum(axis=-1), rtol=0, atol=1e-14)  # XLA tanh: last bits
    assert sizes == [64, 64, 64]
