"""The torch: function kind: spec loading, parameters as inputs, modes, buffers, determinism,
error reporting, dtypes, vmap and forward mode (see runner/gradrun/frameworks/torch.py)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch: function kind needs PyTorch (pip install 'gradrun[torch]')")

from gradrun import runner, spec  # noqa: E402
from gradrun.frameworks import torch as adapter  # noqa: E402
from gradrun.model import SpecError  # noqa: E402

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
SPECS = Path(__file__).parent / "torch_specs"
sys.path.insert(0, str(SPECS))
import torch_code  # noqa: E402


def run(path, **kwargs):
    return {r.name: r for r in runner.run_spec(spec.load_spec(path, **kwargs))}


def test_example_spec_passes_and_names_parameters():
    results = run(ROOT / "experiments" / "torch-layers.yaml")
    assert all(r.passed for r in results.values()), {n: r.error for n, r in results.items()}
    elements = {r.element for r in results["block-input-and-params"].records}
    assert {"x[0,0]", "up.weight[5,3]", "norm.bias[2]", "down.bias[0]"} <= elements
    inputs = {r.input for r in results["block-input-and-params"].records}
    assert inputs == {"x", "norm.weight", "norm.bias", "up.weight", "up.bias", "down.weight", "down.bias"}
    assert {r.dtype for r in results["block-float32"].records} == {"float32"}


def test_wrt_defaults_to_given_inputs_and_params_means_every_parameter():
    results = run(SPECS / "block.yaml")
    assert {r.input for r in results["default-wrt"].records} == {"x"}
    assert {r.input for r in results["all-params"].records} == {"lin.weight", "lin.bias"}


def test_modules_are_built_under_the_experiments_seed():
    results = run(SPECS / "block.yaml")
    values = {n: [r.value for r in results[n].records] for n in ("other-seed", "same-seed", "all-params")}
    torch.manual_seed(3)
    expected = torch_code.DropBlock(3).lin.bias.detach().double().numpy()
    np.testing.assert_array_equal(np.unique(values["same-seed"]), np.unique(expected))
    assert not np.isin(values["other-seed"], expected).any()


def test_train_mode_repeats_dropout_and_eval_turns_it_off():
    x = np.random.default_rng(0).standard_normal((4, 3))
    train = adapter.function("d", torch_code.DropBlock, init={"n": 3}, mode="train", seed=1)
    evaluated = adapter.function("d", torch_code.DropBlock, init={"n": 3}, seed=1)
    args = [x, *train.defaults.values()]
    out = train.forward(*args)
    np.testing.assert_array_equal(out, train.forward(*args))
    assert (out == 0).sum() >= 2  # dropout p = 0.5 zeroes some
    assert not (evaluated.forward(*args) == 0).any()


def test_buffers_are_put_back_after_every_call():
    x = np.random.default_rng(1).standard_normal((5, 2)) * 3 + 1
    fn = adapter.function("n", torch_code.Normed, init={"n": 2}, mode="train")
    code = fn.forward.__self__
    args = [x, *fn.defaults.values()]
    first = fn.forward(*args)
    fn.vjp(np.ones_like(first), *args)
    fn.forward_batch(*[np.stack([a, a]) for a in args])
    np.testing.assert_array_equal(first, fn.forward(*args))
    twin, kept = code.copies[torch.float64]
    assert torch.equal(twin.bn.running_mean, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(kept[0], torch.zeros(2, dtype=torch.float64))
    result = adapter.check(torch_code.Normed, {"x": x}, init={"n": 2}, mode="train", wrt=["x", "params"])
    assert result.passed, result.error


def test_code_that_draws_random_numbers_in_eval_mode_is_reported():
    result = adapter.check(torch_code.Noisy, {"x": np.ones(3)})
    assert not result.passed
    assert "not deterministic" in result.error and "mode: train" in result.error


def test_a_backward_that_returns_the_wrong_shape_names_both_shapes():
    from mutations_torch import layers

    bad = dict(layers.CASES[0].bugs)["bias-grad-wrong-shape"]
    case = layers.CASES[0]
    result = adapter.check(case.build(bad), case.point())
    assert "TorchBackwardError" in result.error
    assert "got []" in result.error and "[5]" in result.error


def test_inputs_are_fresh_tensors():
    fn = adapter.function("scrub", torch_code.scrub)
    x = np.array([0.5, 1.0, 2.0])
    out = fn.forward(x)
    np.testing.assert_array_equal(x, [0.5, 1.0, 2.0])
    np.testing.assert_allclose(out, np.sin(x))


def test_float32_arrays_run_float32_code():
    fn = adapter.function("lin", torch_code.DropBlock, init={"n": 3})
    args = [np.ones((2, 3), np.float32)] + [v.astype(np.float32) for v in fn.defaults.values()]
    out = fn.forward(*args)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in fn.vjp(np.ones_like(out), *args))
    assert fn.forward(*[a.astype(np.float64) for a in args]).dtype == np.float64


def test_vmap_failure_falls_back_to_one_call_each_and_says_so():
    result = adapter.check(torch_code.OldStyleListCube, {"x": np.array([0.5, -1.5, 2.0])})
    assert result.passed
    assert any("vmap failed" in n and "one call each" in n for n in result.notes)


def test_an_old_style_function_is_evaluated_in_batches_through_its_own_forward():
    # .apply of a Function without setup_context refuses torch.func.vmap; its forward,
    # called with a stand-in ctx, is plain tensor code and gives the same values
    x = np.linspace(-2.0, 2.0, 300)
    torch_code.OldStyleCube.calls.clear()
    result = adapter.check(torch_code.OldStyleCube, {"x": x}, check="full")
    assert result.passed and not result.notes
    batched = [shape for shape, applied in torch_code.OldStyleCube.calls if not applied]
    assert batched and set(batched) == {x.shape}  # under vmap, a row's shape
    # a few vmapped calls for the numeric side's 600 perturbations and more, not one each
    # (the analytic side is a VJP through .apply per output row: 300 of them)
    assert len(batched) < 20
    np.testing.assert_allclose([r.analytic for r in result.records if r.index == r.output], 3 * x ** 2)
    wrong = adapter.check(torch_code.OldStyleCubeWrong, {"x": x}, check="full")
    assert [(r.index, r.output) for r in wrong.records if r.status == "fail"] == [(0, 0)]


def test_forward_mode_is_cross_checked_against_reverse_mode():
    x = {"x": np.array([0.5, -1.5, 2.0])}
    good = adapter.check(torch_code.Cube, x)
    assert good.passed and not good.notes
    forward = [r.analytic_forward for r in good.records]
    np.testing.assert_allclose(forward, [3 * x["x"][r.index] ** 2 * (r.index == r.output) for r in good.records])
    assert not adapter.check(torch_code.CubeWrongJvp, x).passed


def test_a_function_without_forward_mode_is_not_cross_checked():
    fn = adapter.function("c", torch_code.OldStyleCube)
    assert fn.jvp is None and fn.jvp_batch is None


def test_complex_step_only_where_declared_safe():
    with pytest.raises(SpecError) as caught:
        spec.load_spec(SPECS / "bad.yaml")
    text = str(caught.value)
    assert "has no 'NoSuchThing'" in text
    assert "building DropBlock(**init) raised TypeError" in text and "takes: n, p" in text
    assert "not complex-safe: notsafe" in text
    assert all(i.line > 0 for i in caught.value.issues)
    result = run(SPECS / "complex.yaml")["complex-safe"]
    assert result.passed and {r.method for r in result.records} == {"complex"}


def test_device_cuda_where_there_is_none_is_a_spec_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SpecError, match="not available here"):
        spec.load_spec(SPECS / "cuda.yaml")
    with pytest.raises(SpecError, match="not available here"):
        spec.load_spec(ROOT / "experiments" / "torch-layers.yaml", device="cuda")
    spec.load_spec(SPECS / "cuda.yaml", device="cpu")  # --device overrides the declaration


def test_cli_device_option(tmp_path):
    from click.testing import CliRunner

    from gradrun.cli import cli

    ok = CliRunner().invoke(cli, ["run", str(SPECS / "complex.yaml"), "--device", "cpu", "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    if not torch.cuda.is_available():
        bad = CliRunner().invoke(cli, ["run", str(SPECS / "complex.yaml"), "--device", "cuda", "--out", str(tmp_path)])
        assert bad.exit_code == 2 and "not available here" in bad.output and "Traceback" not in bad.output


def test_torch_is_imported_only_for_torch_specs():
    code = ("import sys, gradrun.spec as s, gradrun.runner as r; "
            f"r.run_spec(s.load_spec({str(ROOT / 'experiments' / 'chain.yaml')!r})); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_second_order_by_double_backward():
    results = run(SPECS / "second.yaml")
    assert results["cube"].passed and results["block"].passed, describe(results)
    hessian = {(r.element, r.element2): r.analytic for r in results["cube"].records if r.check == "full"}
    np.testing.assert_allclose([hessian[("x[0]", "x[0]")], hessian[("x[1]", "x[1]")], hessian[("x[0]", "x[1]")]],
                               [6 * 0.5, 6 * -1.5, 0], atol=1e-12)
    assert not results["saved-square"].passed  # its backward is not differentiable twice


def describe(results) -> str:
    return "; ".join(f"{n}: {r.error or [(f.element, f.numeric, f.analytic) for f in r.failures[:2]]}"
                     for n, r in results.items())
