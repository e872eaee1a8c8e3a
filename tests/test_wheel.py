"""A built wheel, installed into a fresh environment outside the checkout, runs a spec."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)


@pytest.mark.skipif(shutil.which("git") is None and not (ROOT / "pyproject.toml").exists(), reason="no checkout")
def test_wheel_installed_elsewhere_finds_its_schema_and_writes_reports(tmp_path):
    dist = tmp_path / "dist"
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT)
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("gradrun-*.whl")

    # The wheel alone goes into a fresh environment; its dependencies are read from this
    # one's site-packages, appended after the fresh one (a .pth line adds a path and runs
    # none of that folder's .pth files, so the checkout's editable install stays out of
    # reach). Installing numpy, pandas and pyarrow again would only time the registry;
    # .ci/run installs the declared dependencies from scratch.
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv).returncode == 0
    py = venv / "bin" / "python"
    fresh = run(py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    Path(fresh, "dependencies.pth").write_text("\n".join(ours) + "\n")
    installed = run(sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", wheel)
    assert installed.returncode == 0, installed.stderr

    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(ROOT / "experiments" / "chain.yaml", work / "walkthrough.yaml")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    where = run(py, "-c", "import gradrun.spec as s; print(s.__file__); print(s.schema_path())", cwd=work, env=env)
    module, schema = where.stdout.split()
    assert str(ROOT) not in module and str(ROOT) not in schema  # the wheel's copy, not the checkout's

    printed = run(venv / "bin" / "gradrun", "schema", cwd=work, env=env)
    assert printed.returncode == 0
    assert json.loads(printed.stdout) == json.loads((ROOT / "schemas" / "experiment.schema.json").read_text())

    result = run(venv / "bin" / "gradrun", "walkthrough.yaml", "--out", "reports", cwd=work, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    df = pd.read_csv(work / "reports" / "walkthrough.csv")
    loss = df[(df.experiment == "matrix-loss") & (df.input == "X")]
    assert loss["analytic"].round(4).tolist() == [0.2489, -0.3748, 0.0112, 0.1260, -0.2781, -0.1395,
                                                 0.2299, -0.3662, -0.0225]
