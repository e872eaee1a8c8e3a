"""Hostile specs of round 9 (docs/security.md): the corpus tried, and the attacks that got through.

The attacker controls a spec file only; the user runs `gradrun spec.yaml`. Every
spec below must end in exit 2 with a message at its place, write nothing, import
nothing it names (a canary module proves it), or, where it is a valid spec, run
in bounded memory and time. Three got through before this round's fixes:

- a screen whose every half disagrees (f overflowing over a million elements)
  moved 512 directions of the whole evaluation at once: 21 GB, then the kernel's
  OOM killer;
- localizing gave up and checked every element instead: days of work, and
  report rows the row limits had counted as four projections;
- `check: auto` chose a full check by entries alone: 10 000 entries whose graph
  broadcast to a million values took over a minute (a hundred times that at the
  limits), and `check: full` or a sweep could ask for days.
"""

import numpy as np
import pytest

from gradrun import engine, graphcheck, resolve, screen, spec
from cli_helpers import ENV, write
from cli_helpers import invoke as run_command

CANARY = "canary.txt"


def invoke(*args):
    return run_command(*args, env=ENV)


def refused(ran, *fragments):
    assert ran.exit_code == 2, ran.output
    assert "Traceback" not in ran.output and "bug" not in ran.output
    for fragment in fragments:
        assert fragment in ran.output, ran.output


def experiment(body: str) -> str:
    return "version: 1\nexperiments:\n  - name: e\n" + "".join(f"    {line}\n" for line in body.splitlines())


@pytest.fixture
def canary_module(project):
    """A module of the project whose import leaves a file: proof that it ran."""
    write(project, "layers.py", f"""\
        import os
        from os import system
        open({CANARY!r}, "w").write("imported")
        def dense(x):
            return 2 * x
        def dense_vjp(g, x):
            return (2 * g,)
        """)
    return project


# --- the corpus: refused at load, at their place, nothing written ---------------------------------


@pytest.mark.parametrize("body, fragment", [
    # sizes whose product wraps in int64, or that are huge where another is 0
    ("expr: sum(X)\ninputs: {X: {shape: [4294967296, 4294967296], init: zeros}}", "has an extent above"),
    ("expr: sum(X)\ninputs: {X: {shape: [4611686018427387904, 4], init: zeros}}", "has an extent above"),
    ("expr: sum(broadcast_to(x, (4294967296, 4294967296)))\ninputs: {x: 1.0}", "cannot broadcast"),
    ("expr: sum(one_hot(y, 100000000000000)) + x\ninputs: {y: {integer: [0]}, x: 1.0}", "more than 10000000"),
    # numbers no float64 holds, and generators that would give too many or infinite values
    ("function: square\ninputs: {x: 1" + "0" * 5000 + "}", "an integer of 5001 digits is too large"),
    ("expr: x * 1e999\ninputs: {x: 1.0}", "number too large"),
    ("expr: x * 10 ** 400\ninputs: {x: 1.0}", "exponent 400 is too large"),
    ("function: square\nsweep: {x: {linspace: [0, 1, 1e20]}}", "more than 10000"),
    ("function: square\nsweep: {x: {range: [0, 1e308, 1e-308]}}", "range gives inf values"),
    ("function: square\nsweep: {x: {logspace: [0, 400, 3]}}", "not finite"),
    ("function: square\ninputs: {x: {shape: [3], init: arange, start: 1e308, step: 1e308}}", "not finite"),
    ("function: square\ninputs: {x: {shape: [3], init: uniform, low: -1e308, high: 1e308}}", "beyond float64"),
    ("function: square\nseed: 99999999999999999999999\ninputs: {x: {shape: [3]}}", "must be <= 4294967295"),
    ("function: sin\nstep: -0.0\ninputs: {x: 1.0}", "-0.0 is not allowed"),
    ("function: sin\ninputs: {x: !!float nan}", "not a valid !!float"),
    # expressions: nothing but the allow-list, bounded in size and depth
    ("expr: " + "-" * 1500 + "x\ninputs: {x: 1.0}", "expression too large"),
    ("expr: " + "x**" * 300 + "x\ninputs: {x: 1.0}", "nested more than 100 deep"),
    ("expr: x * 1j\ninputs: {x: 1.0}", "complex constants are not allowed"),
    ("expr: sum(sum(X, **a))\ninputs: {X: [1.0]}", "**keyword arguments are not allowed"),
    ("expr: (y := x)\ninputs: {x: 1.0}", "assignment is not allowed"),
    ("expr: sum(X, axis=True)\ninputs: {X: [1.0]}", "axis must be an integer"),
    ("expr: std(X, ddof=-1)\ninputs: {X: [1.0, 2.0]}", "non-negative integer"),
    ("expr: sum(X[::0])\ninputs: {X: [1.0, 2.0]}", "a slice step cannot be 0"),
    ("expr: sum(X[None])\ninputs: {X: [1.0, 2.0]}", "indices must be integer constants"),
    ("expr: x.__class__\ninputs: {x: 1.0}", "attribute access is not allowed"),
    # YAML that builds objects, or more than it says
    ("function: sin\ninputs: {x: !!python/object/apply:os.system ['touch canary.txt']}", "is not allowed"),
    ("function: sin\ninputs: {x: !<tag:yaml.org,2002:python/object/apply:os.system> ['touch canary.txt']}",
     "is not allowed"),
    ("function: sin\ninputs: {x: 1.0, ? [a, b] : 2}", "a key must be a plain scalar"),
    ("function: sin\ndescription: &a [*a]\ninputs: {x: 1.0}", "an alias refers to a node that contains it"),
])
def test_a_hostile_value_is_a_spec_error_at_its_place(project, body, fragment):
    path = write(project, "attack.yaml", experiment(body))
    refused(invoke(path, "--out", project / "out"), fragment, "attack.yaml:")
    assert not (project / "out").exists() and not (project / CANARY).exists()


def test_a_tag_directive_cannot_spell_a_python_tag(project):
    path = project / "attack.yaml"
    path.write_text("%TAG !p! tag:yaml.org,2002:python/\n---\nversion: 1\nexperiments:\n"
                    "  - {name: e, function: sin, inputs: {x: !p!object/apply:os.system ['touch canary.txt']}}\n")
    refused(invoke(path, "--out", project / "out"), "attack.yaml:5:", "is not allowed")
    assert not (project / "out").exists() and not (project / CANARY).exists()


@pytest.mark.parametrize("ref, fragment", [
    ("os:system", "not the project's own code"),
    ("builtins:eval", "not the project's own code"),
    ("numpy:load", "not the project's own code"),
    ("torch.hub:load", "not the project's own code"),
    ("jax.numpy:load", "not the project's own code"),
    ("layers:__builtins__", "special name"),
    ("layers:dense.__globals__", "not a valid name"),
    ("layers:_\uff3fimport__", "not a valid name"),  # a full-width low line, which NFKC reads as _
    ("\uff4c\uff41\uff59\uff45\uff52\uff53:dense", "not a valid name"),  # full-width "layers"
    ("l\u0430yers:dense", "not a valid name"),  # a Cyrillic a
    ("layers:dense\u200b", "not a valid name"),
    ("../layers:dense", "not a valid name"),
    ("layers.os:system", "not found"),
])
def test_a_code_reference_outside_the_trust_rule_imports_nothing(canary_module, ref, fragment):
    path = write(canary_module, "attack.yaml", f"""\
        version: 1
        functions:
          f: {{python: "{ref}", vjp: "os:system"}}
        experiments:
          - {{name: e, function: f, inputs: {{x: 1.0}}}}
        """)
    refused(invoke("validate", path), fragment, "attack.yaml:3:")
    assert not (canary_module / CANARY).exists()


@pytest.mark.parametrize("kind", ["python", "torch", "jax"])
def test_safe_mode_imports_not_even_the_projects_own_module(canary_module, kind):
    path = write(canary_module, "attack.yaml", f"""\
        version: 1
        functions:
          f: {{{kind}: "layers:dense"}}
        experiments:
          - {{name: e, function: f, inputs: {{x: 1.0}}}}
        """)
    refused(invoke(path, "--safe", "--out", canary_module / "out"), "attack.yaml:3:")
    assert not (canary_module / CANARY).exists() and not (canary_module / "out").exists()


def test_a_name_the_trusted_module_imported_is_refused_after_its_import(canary_module):
    path = write(canary_module, "attack.yaml", """\
        version: 1
        functions:
          f: {python: "layers:system", vjp: "layers:dense_vjp"}
        experiments:
          - {name: e, function: f, inputs: {x: 1.0}}
        """)
    refused(invoke("validate", path), "attack.yaml:3:", "is not defined in the project's own code")


def test_a_failed_run_leaves_the_last_good_report(project):
    out = project / "out"
    path = write(project, "run.yaml", experiment("function: sin\ninputs: {x: 1.0}"))
    assert invoke(path, "--out", out).exit_code == 0
    before = (out / "run.csv").read_bytes()
    path.write_text(experiment("function: sin\ninputs: {x: 1e999}"))
    refused(invoke(path, "--out", out), "run.yaml:5:")
    assert (out / "run.csv").read_bytes() == before


# --- what got through: memory and time of screens and full checks ---------------------------------


OVERFLOWING = """\
    version: 1
    experiments:
      - name: e
        expr: sum(softmax(exp(X)))
        check: screen
        inputs: {X: {shape: [2048], init: uniform, low: 700, high: 720}}
    """


def _batches(monkeypatch):
    seen = []
    real = engine.perturb_along

    def spy(graph, vals, name, directions, *args, **kwargs):
        seen.append(len(directions))
        return real(graph, vals, name, directions, *args, **kwargs)

    monkeypatch.setattr(engine, "perturb_along", spy)
    return seen


def test_a_screen_moves_its_directions_within_a_memory_cap(project, monkeypatch):
    """Localizing moved every half of a level at once: 512 copies of the evaluation (21 GB at a
    million elements). Now at most ``direction_rows`` directions at a time. (Every half
    disagrees here because the VJP is wrong everywhere; where f overflows, as in OVERFLOWING,
    nothing is localized since round 10: f's NaN is in every half.)"""
    monkeypatch.setattr(screen, "DIRECTIONS_CAP", 20_000)  # two rows of this evaluation (4 x 2048 + 1)
    for module in (graphcheck, screen):  # and few group tests, for time
        monkeypatch.setattr(module, "MAX_AUTO_FULL_WORK", 3_000_000)
    seen = _batches(monkeypatch)
    write(project, "layers.py", """\
        import numpy as np
        def f(x):
            return np.sin(x)
        def f_vjp(g, x):
            return (2 * g * np.cos(x),)
        """)
    path = write(project, "big.yaml", """\
        version: 1
        functions:
          f: {python: "layers:f", vjp: "layers:f_vjp"}
        experiments:
          - name: e
            expr: sum(softmax(f(X)) * X)
            check: screen
            inputs: {X: {shape: [2048], init: uniform, low: 0.1, high: 1}}
        """)
    ran = invoke(path, "--out", project / "out")
    assert ran.exit_code == 1 and "Traceback" not in ran.output, ran.output
    assert len(seen) > 10 and max(seen) <= 3, seen


def test_a_screen_that_cannot_be_localized_keeps_its_verdict_within_the_work_limit(project, monkeypatch):
    """Every half disagreeing (f overflows), localizing gave up and checked all N elements: days at a
    million, and N report rows where the limits counted four. Now the screen's failure stands."""
    for module in (graphcheck, screen):
        monkeypatch.setattr(module, "MAX_AUTO_FULL_WORK", 1_000_000)
    seen = _batches(monkeypatch)
    path = write(project, "big.yaml", OVERFLOWING)
    ran = invoke(path, "--out", project / "out")
    assert ran.exit_code == 1 and "Traceback" not in ran.output, ran.output
    rows = (project / "out" / "big.csv").read_text().splitlines()
    assert len(rows) == 1 + screen.SCREEN_DIRECTIONS  # the header and the projections, no element rows
    assert sum(seen) < 200  # group tests stopped by the work limit (1e6 / ~8000 elements)


def test_auto_screens_a_jacobian_whose_full_check_would_be_too_much_work(project):
    """10 000 entries is within FULL_LIMIT, but each evaluation holds two million values: over a
    minute in full (an hour at a hundred thousand), a fraction of a second screened."""
    path = write(project, "wide.yaml", """\
        version: 1
        experiments:
          - name: wide
            expr: sum(sin(broadcast_to(X, (100, 10000))))
            inputs: {X: {shape: [10000]}}
        """)
    ran = invoke(path, "--out", project / "out")
    assert ran.exit_code == 0, ran.output
    assert "(screen)" in ran.output


@pytest.mark.parametrize("body", [
    # every element of X moves every value of the softmax: 1e6 moves of 1e6 values (sum(X * X)
    # moves three values an element, which gradrun's own engine checks in full in seconds)
    "expr: sum(softmax(X))\ncheck: full\ninputs: {X: {shape: [1000000]}}",
    "expr: sum(sin(X) * s)\ncheck: screen\ninputs: {X: {shape: [1000000]}}\nsweep: {s: {linspace: [0, 1, 10000]}}",
])
def test_a_check_of_unbounded_work_is_a_spec_error(project, body):
    path = write(project, "slow.yaml", experiment(body))
    refused(invoke(path, "--out", project / "out"), "slow.yaml:3:", "the check would evaluate about")
    assert not (project / "out").exists()


def test_the_work_of_a_files_checks_is_bounded_together(project, monkeypatch):
    monkeypatch.setattr(resolve, "MAX_FILE_CHECK_WORK", 100)  # each: 20 moves of 2 values, 1 pullback of 21
    path = write(project, "many.yaml", """\
        version: 1
        experiments:
          - {name: a, expr: sum(X), inputs: {X: {shape: [20]}}}
          - {name: b, expr: sum(X), inputs: {X: {shape: [20]}}}
          - {name: c, expr: sum(X), inputs: {X: {shape: [20]}}}
        """)
    ran = invoke("validate", path)
    refused(ran, "many.yaml:4:", "the file's checks would evaluate more than")
    assert "many.yaml:5:" not in ran.output  # said once


def test_direction_rows_count_every_value_of_the_evaluation():
    vals = [np.zeros(1000), np.zeros((10, 1000)), np.zeros(())]
    assert screen.direction_rows(vals) == screen.DIRECTIONS_CAP // 11001
    assert screen.direction_rows([np.zeros(screen.DIRECTIONS_CAP * 2)]) == 1


def test_a_full_check_of_gradruns_own_graph_counts_what_a_move_reaches(project):
    """The issue's 1.2M-element full check of sum(sigmoid(X @ W)) runs in under a minute: a move
    of X[i, j] touches a row of X @ W (200 values), its sigmoid and the sum, not the 1.6M values
    an evaluation holds. A softmax over everything moves every value: that stays refused."""
    path = write(project, "big.yaml", """\
        version: 1
        experiments:
          - name: big
            expr: sum(sigmoid(X @ W))
            check: full
            inputs:
              X: {shape: [1000, 1000], init: normal, seed: 1}
              W: {shape: [1000, 200], init: normal, seed: 2}
        """)
    assert invoke("validate", path).exit_code == 0
    graph = spec.load_spec(str(path)).experiments[0].graph
    held = 1000 * 1000 + 1000 * 200 + 2 * 1000 * 200 + 1  # X, W, X @ W, its sigmoid, the sum
    x_move, w_move = 1 + 200 + 200 + 1, 1 + 1000 + 1000 + 1
    assert graphcheck.full_work(graph, ["X", "W"], 1) == 1000 * 1000 * x_move + 1000 * 200 * w_move + held
