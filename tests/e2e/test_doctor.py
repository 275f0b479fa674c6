"""`cirbench doctor`: the environment report, the no-GPU refusal, and the GPU pipeline's very
functions run end to end at tiny size on the CPU (same steps, tiny models, gloo instead of NCCL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cirbench.cli import app
from cirbench.doctor import STEPS, DoctorPlan, run_doctor, write_tiny_fashioniq

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on CPU-only machines")
def test_doctor_gpu_without_a_gpu_says_so_in_one_line_and_exits_2(tmp_path):
    result = runner.invoke(app, ["doctor", "--gpu", "--out", str(tmp_path / "doctor")])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "no CUDA GPU" in result.stderr
    assert not (tmp_path / "doctor").exists()


def test_doctor_reports_the_environment_as_one_json_object():
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["versions"]["torch"] == torch.__version__.split("+")[0] or report["versions"]["torch"]
    assert set(report["blip2_attention"]) == {"vision_model", "qformer"}


def test_the_gpu_pipeline_runs_at_tiny_size_on_the_cpu(tmp_path):
    fashioniq = write_tiny_fashioniq(tmp_path / "fiq")
    plan = DoctorPlan(
        out=tmp_path / "doctor", device="cpu", size="tiny", fashioniq=fashioniq, bench_batch=4, bench_steps=1,
        tests=((str(REPO / "tests" / "unit" / "test_devices_compat.py"), "-k", "precision_auto"),),
    )
    lines: list[str] = []
    summary = run_doctor(plan, log=lines.append)
    failed = {r["step"]: r["error"] for r in summary["steps"] if not r["ok"]}
    assert summary["ok"] and not failed, failed
    assert [r["step"] for r in summary["steps"]] == list(STEPS)
    by_step = {r["step"]: r["details"] for r in summary["steps"]}
    assert by_step["tests"]["runs"][0]["summary"].startswith("1 passed")
    assert set(by_step["bench_train"]["reports"]) == {"fashionblip2", "sprc", "clip4cir"}
    assert all(r["samples_per_s"] > 0 for r in by_step["bench_train"]["reports"].values())
    evaluation = by_step["eval_throughput"]
    assert evaluation["images"] == 12 + 6 and evaluation["images_per_s"] > 0 and evaluation["precision"] == "fp32"
    assert by_step["torchrun_smoke"]["backend"] == "gloo" and by_step["torchrun_smoke"]["final_model"]
    written = json.loads((plan.out / "doctor.json").read_text())
    assert written["ok"] and len(written["steps"]) == len(STEPS)
    page = (plan.out / "doctor.md").read_text()
    assert "all steps passed" in page and "| fashionblip2:test_tiny | 4 |" in page and "images/s" in page


def test_a_failing_step_fails_the_run_and_the_others_still_run(tmp_path):
    plan = DoctorPlan(out=tmp_path / "doctor", device="cpu", size="tiny", fashioniq=None)
    summary = run_doctor(plan, steps=("environment", "eval_throughput"), log=lambda line: None)
    assert not summary["ok"]
    assert [(r["step"], r["ok"]) for r in summary["steps"]] == [("environment", True), ("eval_throughput", False)]
    assert "--fashioniq" in summary["steps"][1]["error"]
    assert "FAILED" in (plan.out / "doctor.md").read_text()
