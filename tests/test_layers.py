"""Layers declared in YAML (experiments/layers.yaml): they pass, their gradients are
the ones PyTorch computes independently, a wrong rule in the table fails them, and
ties and where's boundaries are reported as kinks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from gradrun import engine, expr, primitives, runner, spec, tree

LAYERS = Path(__file__).resolve().parents[1] / "experiments" / "layers.yaml"


@pytest.fixture(scope="module")
def layers():
    return {e.name: e for e in spec.load_spec(LAYERS).experiments}


def test_every_layer_passes(layers):
    for exp in layers.values():
        result = runner.run_experiment(exp)
        assert result.passed, (exp.name, [(r.element, r.status) for r in result.worst(3)])
        assert {r.status for r in result.records} == {"pass"}, exp.name


def test_integer_labels_are_inputs_but_not_differentiated(layers):
    mlp = layers["mlp-cross-entropy"]
    assert mlp.wrt == ["W1", "b1", "W2"]
    np.testing.assert_array_equal(mlp.points[0].inputs["labels"], [0, 2, 1, 2])
    assert mlp.integers == ("labels",)
    assert "mask" not in layers["causal-attention"].wrt and layers["causal-attention"].integers == ("mask",)


def gradients(exp, cotangent=None):
    """gradrun's reverse mode on the experiment's graph: name -> gradient."""
    graph = runner.graph_of(exp)
    vals = engine.evaluate(graph, exp.points[0].inputs)
    out = vals[graph.output]
    g = np.ones_like(out) if cotangent is None else cotangent
    return out, engine.vjp(graph, vals, g)


# name -> function of torch tensors built from torch's own layers, not from gradrun's table
def _torch_layers(torch):
    F = torch.nn.functional

    def mlp(X, W1, b1, W2, labels):
        return F.cross_entropy(F.relu(X @ W1 + b1) @ W2, labels.long())

    def attention(Q, K, V):
        return F.scaled_dot_product_attention(Q[None], K[None], V[None])[0]

    def causal(X, mask):
        return F.scaled_dot_product_attention(X[None], X[None], X[None], is_causal=True)[0]

    return {
        "mlp-cross-entropy": mlp,
        "layer-norm": lambda x, gamma, beta: F.layer_norm(x, (x.shape[-1],), gamma, beta, eps=1e-5),
        "attention": attention,
        "causal-attention": causal,
        "batch-norm-train": lambda x, gamma, beta: F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5),
        "residual-gelu": lambda x, W1, b1, W2: x + F.gelu(x @ W1 + b1) @ W2,
        "glu-slices": lambda X, W: F.glu(X @ W, dim=1).sum(dim=1),
    }


@pytest.mark.parametrize("name", ["mlp-cross-entropy", "layer-norm", "attention", "causal-attention",
                                  "batch-norm-train", "residual-gelu", "glu-slices"])
def test_forward_and_gradients_match_pytorch(layers, name):
    torch = pytest.importorskip("torch")
    exp = layers[name]
    inputs = exp.points[0].inputs
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k in exp.wrt) for k, v in inputs.items()}
    expected = _torch_layers(torch)[name](**tensors)
    g = np.random.default_rng(0).normal(size=tuple(expected.shape))
    expected.backward(torch.tensor(g))
    out, grads = gradients(exp, g)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    for k in exp.wrt:
        np.testing.assert_allclose(grads[k], tensors[k].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


# a wrong rule in the table (the VJP rule of a primitive's one argument): the layers that use it must fail
WRONG = {
    "log_softmax": ("vjp", lambda g, ans, x, axis=-1: g - np.exp(ans) * g, "mlp-cross-entropy"),
    "var": ("vjp", lambda g, ans, x, axis=None, keepdims=False, ddof=0: 0 * x, "layer-norm"),
    "softmax": ("vjp", lambda g, ans, x, axis=-1: ans * g, "attention"),
    "gelu": ("vjp", lambda g, ans, x: g * (ans / np.where(x == 0, 1, x)), "residual-gelu"),
    "mean": ("vjp", lambda g, ans, x, axis=None, keepdims=False: np.broadcast_to(
        g if keepdims or axis is None else np.expand_dims(g, axis), x.shape) * 1.0, "batch-norm-train"),
    "index": ("vjp", lambda g, ans, x, key: np.zeros_like(x), "glu-slices"),
}


@pytest.mark.parametrize("prim", sorted(WRONG))
def test_a_wrong_rule_fails_the_layer(layers, monkeypatch, prim):
    field, rule, name = WRONG[prim]
    monkeypatch.setitem(primitives.PRIMITIVES, prim, dataclasses.replace(primitives.get(prim), **{field: (rule,)}))
    result = runner.run_experiment(layers[name])
    assert not result.passed, name
    assert any(r.status == "fail" for r in result.records)


def run_expr(tmp_path, text, inputs, method="auto"):
    path = tmp_path / "k.yaml"
    path.write_text(f"experiments:\n  - name: e\n    expr: \"{text}\"\n    method: {method}\n    inputs: {inputs}\n")
    (exp,) = spec.load_spec(path).experiments
    return runner.run_experiment(exp)


KINKS = [
    ("max(X, axis=1)", "{X: [[1, 1], [0, 2]]}", {"X[0,0]", "X[0,1]"}),
    ("min(x)", "{x: [0.5, 0.5, 2]}", {"x[0]", "x[1]"}),
    ("maximum(x, y)", "{x: 1.0, y: 1.0}", {"x", "y"}),
    ("where(x > 0.5, 2 * x - 0.5, x)", "{x: [0.5, 1.0]}", {"x[0]"}),  # continuous, slopes 1 and 2
    ("clip(x, -1, 1)", "{x: [1.0, 0.3, -1.0]}", {"x[0]", "x[2]"}),
]


@pytest.mark.parametrize("method", ["auto", "central", "complex"])
@pytest.mark.parametrize("text, inputs, at", KINKS, ids=[k[0] for k in KINKS])
def test_ties_and_boundaries_are_kinks(tmp_path, text, inputs, at, method):
    result = run_expr(tmp_path, text, inputs, method)
    assert result.passed
    kinks = {r.element for r in result.records if r.status == "kink"}
    assert kinks == at


def test_away_from_ties_nothing_is_a_kink(tmp_path):
    result = run_expr(tmp_path, "max(X, axis=0) + where(X > 0, X, 0.1 * X)", "{X: [[1, -2], [0.5, 3]]}")
    assert result.passed and {r.status for r in result.records} == {"pass"}


COLUMNS = [  # (expression, the text its error must point at, what the error says)
    ("sum(sigmoid(x[1:4] * y))", "x[1:4] * y", "mul (broadcasting) of shapes (3,) and (2,)"),
    ("sum(x) + softmax(X, axis=2)", "softmax(X, axis=2)", "axis 2 is out of range for an argument of shape (2, 3)"),
    ("mean(X) * reshape(X, (4, 2))", "reshape(X, (4, 2))", "cannot reshape 6 elements"),
    ("sum(X[:, 5])", "X[:, 5]", "index 5 is out of range for axis 1 of length 3"),
    ("sum(var(x, ddof=4))", "var(x, ddof=4)", "ddof=4 leaves no degrees of freedom over 4 elements"),
]


@pytest.mark.parametrize("text, at, message", COLUMNS, ids=[c[0] for c in COLUMNS])
def test_shape_errors_point_at_the_call(tmp_path, text, at, message):
    path = tmp_path / "s.yaml"
    line = f'    expr: "{text}"'
    values = {"x": "[1, 2, 3, 4]", "y": "[1, 2]", "X": "[[1, 2, 3], [4, 5, 6]]"}
    used = ", ".join(f"{k}: {v}" for k, v in values.items() if k in tree.variables(expr.parse(text)))
    path.write_text("experiments:\n  - name: e\n" + line + "\n    inputs: {" + used + "}\n")
    (issue,) = spec.validate(path)
    assert (issue.line, issue.column) == (3, line.index(at) + 1)
    assert message in issue.message
