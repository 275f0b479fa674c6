"""A wheel install works away from the checkout: the wheel is built, installed into a fresh folder
that reuses this environment's dependencies (``pip install --no-deps --target``, no second torch),
and run from a folder that is not the checkout: ``table --reported`` (the paper's numbers are
package data) and a tiny ``train`` from a recipe named, not given as a path (recipes are package
data too)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli_train import _write_fashioniq

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel of this checkout, installed without dependencies into its own folder."""
    scratch = tmp_path_factory.mktemp("wheel")
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources, never into the checkout
    source = scratch / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".lowest-site", ".gpu", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    # no build isolation: the build uses this environment's setuptools, nothing is downloaded
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                  str(scratch / "dist"), str(source)], scratch, dict(os.environ))
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = list((scratch / "dist").glob("cirbench-*.whl"))
    site = scratch / "site"
    install = _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(site),
                    str(wheel)], scratch, dict(os.environ))
    assert install.returncode == 0, install.stderr[-3000:]
    return site


@pytest.fixture
def env(installed) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(installed), "PYTHONSAFEPATH": "1", "HF_HUB_OFFLINE": "1",
            "CIRBENCH_DEVICE": "cpu", "CIRBENCH_CACHE": str(installed.parent / "cache")}


@pytest.mark.slow
def test_the_installed_wheel_is_the_one_that_runs(installed, env, tmp_path):
    where = _run([sys.executable, "-c", "import cirbench, cirbench.baselines.zoo, cirbench.recipes, cirbench.reported; "
                  "print(cirbench.__file__)"], tmp_path, env)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed)
    assert not (installed / "tests").exists() and (installed / "cirbench" / "synth" / "pretrained" / "blip2").is_dir()


@pytest.mark.slow
def test_table_reported_from_the_wheel(env, tmp_path):
    result = _run([sys.executable, "-m", "cirbench", "table", "--reported", "--format", "csv"], tmp_path, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FashionBLIP-2" in result.stdout and "reported" in result.stdout


@pytest.mark.slow
def test_a_tiny_train_from_a_named_recipe_with_the_wheel(env, tmp_path):
    data = _write_fashioniq(tmp_path / "fiq")
    out = tmp_path / "run"
    result = _run([sys.executable, "-m", "cirbench", "train", "clip4cir:test_tiny", "--recipe", "clip4cir/stage1_tiny",
                   "--out", str(out), "--no-progress", "--set", f"data.root={data}", "--set", "eval=null",
                   "--set", "train.epochs=null", "--set", "train.steps=2", "--set", "train.batch_size=6"], tmp_path, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "final" / "config.json").read_text())["name"] == "clip4cir"
    assert len((out / "log.jsonl").read_text().splitlines()) >= 1
