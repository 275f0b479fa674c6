"""`cirbench ablate data-size | components | pretraining` end to end on a tiny world with barely
trained backbones and 2-step trainings: the paper's layouts with reported rows beside measured
ones, findings, the curve, reuse across the three commands, and the one-line errors."""

from __future__ import annotations

import csv
import functools
import io

import pytest
from typer.testing import CliRunner

from cirbench.cli import app

runner = CliRunner()


@pytest.fixture
def tiny_world(tmp_path, monkeypatch):
    from cirbench.synth import tiny_backbones as backbones
    from cirbench.synth.presets import resolve_knobs
    from cirbench.synth.world import write_world

    folder = tmp_path / "world"
    write_world(folder, "tiny", 0, resolve_knobs("tiny"), workers=1)
    # the default backbone recipe pre-trains for minutes; two steps make the same files
    quick = functools.partial(backbones.ensure_backbones, recipe=backbones.BackboneRecipe(steps=2, batch_size=8))
    monkeypatch.setattr(backbones, "ensure_backbones", quick)
    return folder


def ablate(command: str, world, out, *extra: str):
    return runner.invoke(app, ["ablate", command, "--world", str(world), "--out", str(out), "--steps", "2",
                               "--batch-size", "8", "--no-progress", *extra])


def csv_rows(path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_three_ablations_share_one_run_folder_and_report_in_the_paper_layouts(tiny_world, tmp_path):
    out = tmp_path / "run"
    tables = out / "results" / "tables"

    sizes = ablate("data-size", tiny_world, out, "--fractions", "0.5,1.0")
    assert sizes.exit_code == 0, sizes.output
    rows = csv_rows(tables / "data_size.csv")
    assert [(r["fraction"], r["source"]) for r in rows] == [("50%", "measured"), ("100%", "measured")]
    assert all(0 <= float(r["enhfiq_r50"]) <= 100 and r["enhfiq_r50_ci_low"] for r in rows)
    assert "prints no numbers" in (tables / "data_size.md").read_text()
    assert all((out / "results" / "plots" / f"data_size.{s}").stat().st_size > 0 for s in ("png", "pdf"))
    assert "data-size curve (largest vs smallest fraction) — fashioniq val" in sizes.output

    parts = ablate("components", tiny_world, out)
    assert parts.exit_code == 0, parts.output
    rows = csv_rows(tables / "table5_components.csv")
    assert [r["source"] for r in rows] == ["reported", "measured"] * 4
    assert all(r[key] for r in rows for key in ("no_ft_fiq", "no_ft_enhfiq", "ft_fiq", "ft_enhfiq"))
    assert "reused: fblip2_s1\n" in parts.output  # the 100% data-size model is Table 5's last row
    findings = (out / "results" / "findings_table5_components.txt").read_text()
    for title in ("multi-head vs global matching", "adapters vs none", "CIR+CTR vs CIR only"):
        assert findings.count(f"{title} — ") == 4  # no FT and FT, on both benchmarks
    assert "FACap pre-training vs none" not in findings

    pretrain = ablate("pretraining", tiny_world, out)
    assert pretrain.exit_code == 0, pretrain.output
    rows = csv_rows(tables / "table4_pretraining.csv")
    measured = [(r["model"], r["pretrain_on_facap"]) for r in rows if r["source"] == "measured"]
    assert measured == [("SPRC", "no"), ("SPRC", "yes"), ("FashionBLIP-2", "no"), ("FashionBLIP-2", "yes")]
    assert {r["source"] for r in rows if r["model"] == "UniFashion"} == {"reported"}
    assert "training fblip2_s2:" not in pretrain.output and "reused: fblip2_s2\n" in pretrain.output
    assert "Table 4" in pretrain.output and "87.93" in pretrain.output
    page = (out / "results" / "report.html").read_text()  # one page for the shared run folder
    assert "Table 4" in page and "Table 5" in page and "CIR+CTR vs CIR only" in page and "FACap pre-training" in page

    changed = ablate("data-size", tiny_world, out, "--fractions", "1.0", "--steps", "3")
    assert changed.exit_code == 1 and "differs in: train.steps" in changed.output


@pytest.mark.parametrize("args, message", [
    (["data-size", "--fractions", "0,1.5"], "each fraction must be in (0, 1]"),
    (["data-size", "--fractions", "half"], "expected numbers separated by commas"),
    (["components", "--steps", "2,0"], "expected S1,S2 or N"),
    (["components", "--world", "w", "--data-root", "d"], "not both"),
    (["pretraining", "--models", "unifashion"], "choose among fashionblip2, sprc"),
    (["pretraining", "--recipe-size", "vitg", "--data-root", "d"], "no facap/, fashioniq/, enhfashioniq/ folder"),
    (["components", "--bogus"], "No such option"),
])
def test_bad_input_ends_with_one_clear_line(args, message, tmp_path):
    result = runner.invoke(app, ["ablate", *args, "--out", str(tmp_path / "run")])
    assert result.exit_code in (1, 2) and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_a_data_root_without_the_three_folders_is_refused(tmp_path):
    (tmp_path / "data" / "fashioniq").mkdir(parents=True)
    result = runner.invoke(app, ["ablate", "pretraining", "--models", "fashionblip2", "--data-root",
                                 str(tmp_path / "data"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "no facap/, enhfashioniq/ folder" in result.output


def test_every_ablate_command_has_an_example():
    for command in ("data-size", "components", "pretraining"):
        result = runner.invoke(app, ["ablate", command, "--help"])
        assert result.exit_code == 0 and "Example: cirbench ablate " + command in result.output
