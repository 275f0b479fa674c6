"""`cirbench synth` and `cirbench synth-stats` as a user runs them, and the project's real readers
reading the written world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cirbench.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "world"
    result = runner.invoke(app, ["synth", "--preset", "tiny", "--out", str(out), "--seed", "3", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    return out


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_identical_rerun_is_a_no_op(world):
    before = snapshot(world)
    result = runner.invoke(app, ["synth", "--preset", "tiny", "--out", str(world), "--seed", "3"])
    assert result.exit_code == 0 and "nothing to do" in result.output
    assert snapshot(world) == before


def test_refuses_to_overwrite_another_world(world):
    before = snapshot(world)
    result = runner.invoke(app, ["synth", "--preset", "tiny", "--out", str(world), "--seed", "4"])
    assert result.exit_code == 1
    assert "other settings" in result.output and "seed: 3 there, 4 asked" in result.output
    assert snapshot(world) == before


def test_refuses_a_non_empty_folder_that_is_no_world(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["synth", "--preset", "tiny", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "holds no synthetic world" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_interrupted_world_is_completed(world, tmp_path):
    partial = tmp_path / "partial"
    assert (
        runner.invoke(
            app, ["synth", "--preset", "tiny", "--out", str(partial), "--seed", "3", "--workers", "1"]
        ).exit_code
        == 0
    )
    manifest = json.loads((partial / "world.json").read_text())
    (partial / "world.json").write_text(json.dumps({**manifest, "complete": False}))
    next((partial / "fashioniq" / "images").iterdir()).unlink()
    result = runner.invoke(app, ["synth", "--preset", "tiny", "--out", str(partial), "--seed", "3", "--workers", "1"])
    assert result.exit_code == 0 and "wrote" in result.output
    assert {k: v[1] for k, v in snapshot(partial).items()} == {k: v[1] for k, v in snapshot(world).items()}


@pytest.mark.parametrize("knob, message", [("vagueness=2", "vagueness must be within 0..1"),
                                           ("fiq_val_gallery=-5", "fiq_val_gallery and lookalikes must be at least 0"),
                                           ("lookalikes=-1", "fiq_val_gallery and lookalikes must be at least 0")])
def test_bad_knob_is_one_clear_error(tmp_path, knob, message):
    result = runner.invoke(app, ["synth", "--preset", "tiny", "--out", str(tmp_path / "w"), "--set", knob])
    assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "w").exists()


def test_stats_as_json_and_table(world):
    result = runner.invoke(app, ["synth-stats", str(world), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["vague"]["mean_words"] < stats["detailed"]["mean_words"]
    assert stats["image_only"]["oracle_recall_at_1"] <= stats["vague"]["oracle_recall_at_1"]
    table = runner.invoke(app, ["synth-stats", str(world)])
    assert table.exit_code == 0 and "vocabulary" in table.output and "without text" in table.output


@pytest.mark.parametrize("command", ["synth", "synth-stats"])
def test_help_ends_with_an_example(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Example: cirbench " + command in result.output


def test_real_readers_read_the_world(world):
    from cirbench.data.fashioniq import load_eval_splits
    from cirbench.facap.sources import read_deepfashion_mm, read_fashion200k

    splits = load_eval_splits(world / "fashioniq", split="val")
    assert [s.category for s in splits] == ["dress", "shirt", "toptee"]
    for split in splits:
        assert split.queries and not split.missing_images
        assert all(q.reference_id in split.gallery and q.target_id in split.gallery for q in split.queries)
    shop = read_fashion200k(world / "fashion200k")
    assert shop.records and not shop.missing
    assert all(
        len({r.path.parent for r in shop.records if r.product_id == p}) == 1
        for p in {r.product_id for r in shop.records}
    )
    people = read_deepfashion_mm(world / "deepfashion_mm")
    assert people.records and all(r.description for r in people.records)
