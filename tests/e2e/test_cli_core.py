"""The core commands end to end: models, eval, table, compare, bench eval.

A fake model (``fake_cir``) and a fake benchmark (``fake_fashioniq``) are registered for these
tests; one test runs the real FashionIQ reader on a FashionIQ-layout folder with missing images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cirbench.cli import app
from cirbench.data.benchmarks import DATASETS
from cirbench.eval import bench_scoring
from cirbench.baselines.zoo import MODELS, list_model_specs, register_model
from fake_cir import FakeCIRModel, make_split, write_images

CATEGORIES = ("dress", "shirt", "toptee")


def build_fake(variant: str, checkpoint: str | None = None) -> FakeCIRModel:
    return FakeCIRModel("maxsim" if variant == "maxsim" else "multihead", variant=variant)


def load_fake(root, split="val", categories=None, missing="error"):
    return [make_split(Path(root) / c, c, seed=i) for i, c in enumerate(categories or CATEGORIES)]


@pytest.fixture(scope="module", autouse=True)
def fakes_registered():
    list_model_specs()  # the zoo first, so the fake is one more entry
    if "fake_cir" not in MODELS:
        register_model("fake_cir", build_fake, variants={"test_tiny": "fake, multihead", "maxsim": "fake, maxsim"},
                       default_variant="test_tiny", description="test double")
    if "fake_fashioniq" not in DATASETS:
        DATASETS.register("fake_fashioniq", load_fake, subdir="fake_fashioniq", description="test double")


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output + repr(result.exception)
        return result.output

    return invoke


def fake_eval(cli, *extra: str, out: str = "run", code: int = 0) -> str:
    return cli("eval", "--model", "fake_cir", "--dataset", "fake_fashioniq", "--data-root", "data", "--out", out, *extra,
               code=code)


def _every_command() -> list[list[str]]:
    """Every leaf command of the CLI, groups walked (bench, ablate, ...)."""
    import typer.main

    def walk(command, path):
        children = getattr(command, "commands", None)
        if not children:
            return [path]
        return [leaf for name, child in sorted(children.items()) for leaf in walk(child, [*path, name])]

    return walk(typer.main.get_command(app), [])


@pytest.mark.parametrize("command", _every_command(), ids=" ".join)
def test_every_command_has_help_with_an_example(cli, command):
    output = cli(*command, "--help")
    assert "Example: cirbench " + command[0] in " ".join(output.split())


def test_models_lists_every_registered_spec(cli):
    output = cli("models")
    for name, variant, _ in list_model_specs():
        assert f"{name}:{variant}" in output
    assert "fashionblip2:test_tiny" in output and "fake_cir:maxsim" in output


def test_eval_writes_records_and_ranks_and_prints_the_table(cli, tmp_path):
    output = fake_eval(cli, "--table", "--batch-size", "5", "--chunk-size", "7", "--no-progress")
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 3 * 4 and {r["category"] for r in records} == set(CATEGORIES)
    assert {r["model"] for r in records} == {"fake_cir:test_tiny"} and records[0]["seed"] == 0
    ranks = (tmp_path / "run" / "ranks.jsonl").read_text().splitlines()
    assert len(ranks) == 3 and len(json.loads(ranks[0])["ranks"]) == 30
    assert "wrote 12 records" in output
    for header in ("dress R@10", "toptee R@50", "avg R@10", "fake_cir:test_tiny", "measured"):
        assert header in output
    assert len(list((tmp_path / "cache" / "features").glob("*.safetensors"))) == 3


def test_eval_precision_and_device_are_resolved_recorded_and_checked(cli, tmp_path):
    fake_eval(cli, out="auto")  # auto: $CIRBENCH_DEVICE (cpu under the tests) -> fp32
    fake_eval(cli, "--precision", "bf16", "--device", "cpu", out="bf16")
    for run, precision in (("auto", "fp32"), ("bf16", "bf16")):
        records = [json.loads(line) for line in (tmp_path / run / "results.jsonl").read_text().splitlines()]
        assert {(r["precision"], r["device"]) for r in records} == {(precision, "cpu")}
    assert len(list((tmp_path / "cache" / "features").glob("*.safetensors"))) == 2 * 3  # galleries cached per precision
    assert "--precision" in fake_eval(cli, "--precision", "fp16", out="bad", code=1)
    if not __import__("torch").cuda.is_available():
        output = fake_eval(cli, "--device", "cuda", out="bad", code=1)
        assert "CUDA is not available" in output and "Traceback" not in output


def test_eval_default_run_folder_and_category_selection(cli, tmp_path):
    cli("eval", "--model", "fake_cir:maxsim", "--dataset", "fake_fashioniq", "--data-root", "data",
        "--categories", "dress,shirt")
    [results] = list((tmp_path / "runs").glob("*-fake_cir_maxsim-fake_fashioniq/results.jsonl"))
    assert {json.loads(line)["category"] for line in results.read_text().splitlines()} == {"dress", "shirt"}


def test_eval_all_acts_on_split_categories_and_chunks_and_reuses_only_what_is_done(cli, tmp_path):
    (tmp_path / "all" / "fake_fashioniq" / "captions").mkdir(parents=True)
    base = ["eval", "--all", "--data-root", "all", "--runs", "no-runs", "--zero-shot", "fake_cir", "--out", "everything"]
    cli(*base, "--categories", "dress", "--chunk-size", "7", "--batch-size", "5")
    records = [json.loads(line) for line in (tmp_path / "everything" / "results.jsonl").read_text().splitlines()]
    assert {(r["category"], r["split"]) for r in records} == {("dress", "val")}
    output = cli(*base, "--no-progress")  # every category now: shirt and toptee are not done yet, so nothing is reused
    assert "evaluated: fake_cir:test_tiny (zero-shot) on fake_fashioniq" in " ".join(output.split())
    records = [json.loads(line) for line in (tmp_path / "everything" / "results.jsonl").read_text().splitlines()]
    assert {r["category"] for r in records} == set(CATEGORIES)
    assert "reused" in cli(*base, "--categories", "shirt,toptee")


@pytest.mark.parametrize("args, message", [
    (["--all", "--checkpoint", "x"], "--checkpoint: not used here: --all evaluates every trained model"),
    (["--all", "--model", "fake_cir"], "--model: not used here: --all evaluates"),
    (["--all", "--dataset", "fake_fashioniq"], "--dataset: not used here: --all evaluates"),
    (["--model", "fake_cir", "--dataset", "fake_fashioniq", "--runs", "r"], "--runs: not used here: --runs and --zero-shot choose the models of --all"),
    (["--model", "fake_cir", "--dataset", "fake_fashioniq", "--zero-shot", "clip_sum"], "--zero-shot: not used here"),
])
def test_eval_refuses_options_it_would_ignore(cli, tmp_path, args, message):
    output = cli("eval", "--data-root", "data", *args, code=1)
    assert message in " ".join(output.split()) and "Traceback" not in output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--model", "fake_cirr"], "Did you mean: fake_cir"),
    (["--model", "fake_cir:tiny"], "has no variant 'tiny'"),
    (["--model", "fake_cir", "--dataset", "fashioniqq"], "Did you mean: fashioniq"),
    (["--model", "fake_cir", "--protocol", "fashioniq/v9"], "unknown protocol 'fashioniq/v9'"),
])
def test_unknown_names_end_with_one_clear_message(cli, args, message):
    defaults = {"--dataset": "fake_fashioniq", "--data-root": "data"}
    given = dict(zip(args[::2], args[1::2]))
    argv = [x for key, value in {**defaults, **given}.items() for x in (key, value)]
    output = cli("eval", *argv, code=1)
    assert message in output and "Traceback" not in output


def write_fashioniq_layout(root: Path, missing: list[str]) -> None:
    """A FashionIQ-layout folder: dress with 6 queries over 10 images, some images deleted."""
    gallery = [f"D{i}" for i in range(10)]
    queries = [{"candidate": gallery[i], "target": gallery[i + 1], "captions": ["is red", "has long sleeves"]} for i in range(6)]
    for folder, name, data in [("captions", "cap.dress.val.json", queries), ("image_splits", "split.dress.val.json", gallery)]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_text(json.dumps(data))
    paths = write_images(root / "images", gallery)
    for image_id in missing:
        paths[image_id].unlink()


def test_real_reader_missing_images_stop_or_are_skipped_and_counted(cli, tmp_path):
    write_fashioniq_layout(tmp_path / "fiq", missing=["D0", "D3"])
    base = ["eval", "--model", "fake_cir", "--dataset", "fashioniq", "--data-root", "fiq"]
    stopped = cli(*base, "--out", "stopped", code=1)
    assert "missing" in stopped and "Traceback" not in stopped and not (tmp_path / "stopped").exists()
    output = cli(*base, "--missing", "skip", "--out", "skipped", "--table")
    assert "dress n=3/6" in " ".join(output.split())  # queries 0, 2, 3 lose an image
    record = json.loads((tmp_path / "skipped" / "results.jsonl").read_text().splitlines()[0])
    assert (record["n_queries"], record["n_queries_total"]) == (3, 6)


def test_table_renders_every_format_and_writes_them_all(cli, tmp_path):
    fake_eval(cli)
    assert "| fake_cir:test_tiny | measured |" in cli("table", "run", "--format", "markdown")
    assert cli("table", "run", "--format", "csv").startswith("protocol,dataset,split,model,source,setting,dress_r10")
    assert r"\toprule" in cli("table", "run/results.jsonl", "--format", "latex")
    with_reported = cli("table", "run", "--reported", "--ci", "--out", "tables")
    assert "FTI4CIR" in with_reported and "reported (fine_tuned)" in with_reported and "20.39†" in with_reported
    # the paper's rows are FashionIQ val: a table of their own beside the fake benchmark's
    assert sorted(p.name for p in (tmp_path / "tables").glob("*.md")) == [
        "fake_fashioniq-val-fashioniq_v1.md", "fashioniq-val-fashioniq_v1.md",
    ]
    assert "FTI4CIR" not in (tmp_path / "tables" / "fake_fashioniq-val-fashioniq_v1.md").read_text()
    assert len(list((tmp_path / "tables").iterdir())) == 8


def test_table_needs_something_to_show(cli):
    assert "--reported" in cli("table", code=2)
    assert "no such file or folder" in cli("table", "nowhere", code=1)


def test_compare_gives_a_paired_test_and_refuses_other_queries(cli, tmp_path):
    fake_eval(cli, out="a")
    cli("eval", "--model", "fake_cir:maxsim", "--dataset", "fake_fashioniq", "--data-root", "data", "--out", "b")
    lines = cli("compare", "a", "b", "--k", "10", "--json").splitlines()
    test = json.loads(lines[0])
    assert test["k"] == 10 and test["n_queries"] == 90 and 0 < test["p_value"] <= 1
    assert test["ci_low"] <= test["difference"] <= test["ci_high"]
    assert "p (sign-flip)" in cli("compare", "a", "b")
    cli("eval", "--model", "fake_cir", "--dataset", "fake_fashioniq", "--data-root", "data", "--out", "c",
        "--categories", "dress")
    assert "different categories" in cli("compare", "a", "c", code=1)


def test_eval_all_fails_when_a_row_is_an_error_and_compare_picks_models_out_of_its_folder(cli, tmp_path):
    (tmp_path / "data" / "fake_fashioniq" / "captions").mkdir(parents=True)
    broken = tmp_path / "runs" / "broken" / "final"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text(json.dumps({"model": "no_such_model", "variant": "tiny"}))
    output = cli("eval", "--all", "--data-root", "data", "--runs", "runs", "--zero-shot", "fake_cir,fake_cir:maxsim",
                 "--out", "all", code=1)
    assert "error row: no_such_model:tiny (broken) on fake_fashioniq" in output
    assert "error: 1 of 3 evaluations failed" in output and "Traceback" not in output
    from cirbench.results import read_records

    assert {r["label"] for r in read_records([tmp_path / "all"])} == {"fake_cir:test_tiny (zero-shot)",
                                                                       "fake_cir:maxsim (zero-shot)"}
    ambiguous = cli("compare", "all", "all", code=1)
    assert "2 evaluations match" in ambiguous and "'fake_cir:maxsim (zero-shot)' on fake_fashioniq/val" in ambiguous
    by_label_and_spec = json.loads(cli("compare", "all", "all", "--model-a", "fake_cir:maxsim (zero-shot)",
                                       "--model-b", "fake_cir", "--k", "10", "--json"))
    fake_eval(cli, out="alone")
    fake_eval(cli, "--model", "fake_cir:maxsim", out="maxsim")
    assert by_label_and_spec == json.loads(cli("compare", "maxsim", "alone", "--k", "10", "--json"))
    assert "no evaluation matches --model-a 'sprc'" in cli("compare", "all", "all", "--model-a", "sprc", "--model-b",
                                                             "fake_cir", code=1)
    assert "no evaluation matches --model-a 'fake_cir' and --dataset 'fashioniq'" in cli(
        "compare", "all", "all", "--model-a", "fake_cir", "--model-b", "fake_cir", "--dataset", "fashioniq", code=1)


def test_compare_picks_models_out_of_the_committed_demo_results_by_label(cli):
    demo = str(Path(__file__).resolve().parents[2] / "results" / "demo")
    test = json.loads(cli("compare", demo, demo, "--model-a", "CLIP4CIR", "--model-b", "CLIP image + text (zero-shot)",
                          "--dataset", "fashioniq", "--k", "10", "--json"))
    assert test["n_queries"] == 600 and test["recall_a"] != test["recall_b"]
    several = cli("compare", demo, demo, "--model-a", "fashionblip2:synth_tiny", "--model-b", "CLIP4CIR", code=1)
    assert "14 evaluations match --model-a 'fashionblip2:synth_tiny'" in several
    assert "'FashionBLIP-2 (FACap -> FIQ)' on fashioniq/val" in several and "CLIP4CIR" not in several.split(": ", 3)[-1]
    assert "--k" in cli("compare", demo, demo, "--model-a", "CLIP4CIR", "--model-b", "SPRC", "--dataset", "fashioniq",
                        "--k", "0", code=2)  # Recall@0 means nothing


def test_bench_eval_prints_ratio_and_peak_memory_as_json(cli, monkeypatch):
    monkeypatch.setattr(bench_scoring, "FASHIONIQ_VAL_SHAPES", {"dress": (20, 38), "shirt": (20, 63), "toptee": (19, 53)})
    report = json.loads(cli("bench", "eval", "--json", "--repeats", "1", "--chunk-size", "8"))
    assert set(report["categories"]) == set(CATEGORIES)
    assert report["ratio"] > 0 and report["peak_mb"] > 0 and report["chunk_size"] == 8
    assert "ours / bare" in cli("bench", "eval", "--repeats", "1")
