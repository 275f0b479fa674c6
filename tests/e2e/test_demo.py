"""The README's main command, end to end: `cirbench demo --quick` on a fresh synthetic world."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cirbench.cli import app
from cirbench.experiments.plan import TEXT_BLIND


def test_quick_demo_builds_trains_evaluates_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))  # a fresh default world, not the user's
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output

    records = [json.loads(line) for line in (out / "results" / "results.jsonl").read_text().splitlines()]
    labels = {r["label"] for r in records}
    assert {TEXT_BLIND, "CLIP image + text (zero-shot)", "FashionBLIP-2 (FACap -> FIQ)", "CLIP4CIR", "SPRC"} <= labels

    # The modification text is necessary on the default world: the quick demo's FashionBLIP-2 beats
    # the text-blind baseline on FashionIQ-synth val (measured: avg R@10 9.33 against 1.33, +8.0
    # points; the floor is half of that), and the baseline stays below R@50 80 on both benchmarks.
    def average(label: str, dataset: str, metric: str) -> float:
        values = [r["value"] for r in records if (r["label"], r["dataset"], r["metric"]) == (label, dataset, metric)]
        assert len(values) == 3, (label, dataset, metric)  # dress, shirt, toptee
        return sum(values) / 3

    blind = average(TEXT_BLIND, "fashioniq", "recall@10")
    assert average("FashionBLIP-2 (FACap -> FIQ)", "fashioniq", "recall@10") >= blind + 4.0
    assert all(average(TEXT_BLIND, dataset, "recall@50") < 80 for dataset in ("fashioniq", "enhfashioniq"))
    assert {r["dataset"] for r in records} == {"fashioniq", "enhfashioniq"}
    assert (out / "results" / "errors.jsonl").read_text() == ""
    assert all(r["value"] is not None and 0 <= r["value"] <= 100 for r in records)
    for name in ("report.html", "grids/fashionblip2_dress.png"):
        assert (out / "results" / name).stat().st_size > 0
    assert "fashioniq val" in result.output and "SPRC" in result.output
    enhanced = json.loads((out / "data" / "enhfashioniq" / "captions" / "cap.dress.val.json").read_text())
    texts = {entry["captions"][0] for entry in enhanced}
    assert len(texts) > len(enhanced) / 4, "enhFashionIQ texts must describe the images, not one stock phrase"

    # A rerun reuses every trained model and every finished evaluation: nothing is lost or redone.
    again = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert "training " not in again.output and "evaluated:" not in again.output
    assert len((out / "results" / "results.jsonl").read_text().splitlines()) == len(records)
