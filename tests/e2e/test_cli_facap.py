"""The FACap commands end to end on a tiny synthetic world: build-facap (default world path included),
facap-stats, quality-sheet, quality-report with automatic faithfulness, build-enhfiq, bench pairing."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from cirbench.cli import app

COMMANDS = [["build-facap"], ["build-enhfiq"], ["facap-stats"], ["quality-sheet"], ["quality-report"], ["bench", "pairing"]]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from cirbench.synth.presets import resolve_knobs
    from cirbench.synth.world import write_world

    folder = tmp_path_factory.mktemp("world")
    write_world(folder, "tiny", 0, resolve_knobs("tiny"), workers=1)
    return folder


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Example: cirbench" in result.output


def test_default_build_writes_the_default_world_then_builds_from_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("cirbench.synth.default_world.DEFAULT_PRESET", "tiny")  # the default world, at test size
    out = tmp_path / "facap"
    result = run("build-facap", "--out", out)
    assert result.exit_code == 0, result.output
    from cirbench.synth.world import WORLD_FORMAT

    assert (tmp_path / f"cache/worlds/tiny-seed0-format{WORLD_FORMAT}/world.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and {s["name"] for s in manifest["sources"]} == {"fashion200k", "deepfashion_mm"}
    assert "total" in result.output


def test_build_stats_sheet_and_report_on_a_world(world, tmp_path):
    out = tmp_path / "facap"
    first = run("build-facap", "--world", world, "--out", out, "--quiet", "--clip-model", "thumbnail")
    assert first.exit_code == 0, first.output
    files = {p: p.read_bytes() for p in out.rglob("*.json") if "work" not in p.parts}
    assert run("build-facap", "--world", world, "--out", out, "--quiet", "--clip-model", "thumbnail").exit_code == 0
    assert files == {p: p.read_bytes() for p in out.rglob("*.json") if "work" not in p.parts}

    stats = run("facap-stats", out, "--fashioniq", world / "fashioniq", "--json")
    facap, fiq = [json.loads(line) for line in stats.output.splitlines()]
    assert facap["triplets"] == json.loads((out / "manifest.json").read_text())["counts"]["triplets"]
    assert facap["captions"]["average_length"] > fiq["modification_texts"]["average_length"]

    sheet = tmp_path / "sheets" / "rater1"
    assert run("quality-sheet", out, "--n", 12, "--out", sheet).exit_code == 0
    rows = list(csv.DictReader(open(sheet.with_suffix(".csv"))))
    for row in rows:
        row.update(faithfulness="4", details="3", saliency="5")
    with open(sheet.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = json.loads(run("quality-report", sheet.with_suffix(".csv"), "--auto-faithfulness", world, "--json").output)
    scores = report[out.name]
    assert scores["faithfulness"]["mean"] == 4.0 and scores["saliency"]["ratings"] == 12
    auto = scores["auto_faithfulness"]
    assert auto["claims"] > 0 and auto["changes"] > 0 and 0.5 < auto["precision"] <= 1.0
    table = run("quality-report", sheet.with_suffix(".csv"), "--auto-faithfulness", world)
    assert "4.00 ± 0.00" in table.output and "auto precision" in table.output


def test_build_enhfiq_on_a_world_and_bench(world, tmp_path):
    out = tmp_path / "enh"
    result = run("build-enhfiq", "--world", world, "--out", out, "--quiet", "--clip-model", "thumbnail")
    assert result.exit_code == 0, result.output
    from cirbench.data.fashioniq import load_enhanced_eval_splits

    splits = load_enhanced_eval_splits(out)
    assert sum(len(s.queries) for s in splits) == sum(len(s.gallery) for s in splits)
    bench = json.loads(run("bench", "pairing", "--n", 600, "--dim", 16, "--json").output)
    assert bench["ratio"] > 0 and bench["peak_mb"] > 0


def test_bad_input_is_one_clear_error(tmp_path):
    (tmp_path / "f200k" / "labels").mkdir(parents=True)
    result = CliRunner().invoke(app, ["build-facap", "--fashion200k", str(tmp_path / "f200k"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "no Fashion200k label files found" in result.output
    result = CliRunner().invoke(app, ["build-facap", "--folder", str(tmp_path)])
    assert result.exit_code == 2 and "--folder and --metadata go together" in result.output


def test_the_tiny_blip2_vocabulary_has_every_word_the_world_and_facap_texts_use(world, tmp_path):
    """Words outside the tiny tokenizer's list fall apart into letters (2-3x longer sequences)."""
    from cirbench.backbones.blip2_tokenizers import build_tiny_tokenizer, words_of
    from cirbench.data.facap import load_facap
    from cirbench.data.fashioniq import read_fashioniq_train
    from cirbench.synth.vocabulary import world_vocabulary

    out = tmp_path / "facap"
    assert run("build-facap", "--world", world, "--out", out, "--quiet", "--clip-model", "thumbnail").exit_code == 0
    triplets = load_facap(out)
    texts = [text for t in triplets for text in t.texts] + [t.target_caption for t in triplets]
    vocabulary = set(build_tiny_tokenizer(world_vocabulary(world)).vocab)
    assert not set(words_of(texts)) - vocabulary
    # FashionIQ-like annotations: every word but the typos (a swapped pair of letters) is known
    annotations = read_fashioniq_train(world / "fashioniq", ["dress", "shirt", "toptee"])
    unknown = set(words_of(text for t in annotations for text in t.texts)) - vocabulary
    assert all(any(sorted(word) == sorted(known) for known in vocabulary) for word in unknown), unknown
