"""`cirbench train` and `cirbench bench train` end to end on a small FashionIQ-layout folder:
recipe + --set, per-epoch validation through the shared evaluator, the two CLIP4CIR stages chained
through init_from, resume of a finished run, and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cirbench.cli import app
from cirbench.baselines.zoo import build_model

REPO = Path(__file__).resolve().parents[2]
STAGE1 = REPO / "recipes" / "clip4cir" / "stage1_tiny.yaml"
STAGE2 = REPO / "recipes" / "clip4cir" / "stage2_tiny.yaml"
runner = CliRunner()


def _write_fashioniq(root: Path, categories=("dress", "shirt"), n_images=10) -> Path:
    for folder in ("captions", "image_splits", "images"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for c, category in enumerate(categories):
        ids = [f"{category}{i:02d}" for i in range(n_images)]
        for i, image_id in enumerate(ids):
            colour = ((40 * i) % 256, (90 * c + 20 * i) % 256, (255 - 25 * i) % 256)
            Image.new("RGB", (24, 32), colour).save(root / "images" / f"{image_id}.png")
        for split, pairs in (("train", range(n_images - 1)), ("val", range(0, n_images - 1, 2))):
            texts = [["is brighter", f"looks like number {i}"] for i in range(n_images)]
            triplets = [{"candidate": ids[i], "target": ids[i + 1], "captions": texts[i]} for i in pairs]
            (root / "captions" / f"cap.{category}.{split}.json").write_text(json.dumps(triplets))
            (root / "image_splits" / f"split.{category}.{split}.json").write_text(json.dumps(ids))
    return root


def _write_facap(root: Path, n_images=9) -> Path:
    """FACap release layout: image paths relative to the folder, one text per triplet, target captions."""
    (root / "images").mkdir(parents=True)
    (root / "cir_triplets").mkdir()
    (root / "image_captions").mkdir()
    names = [f"images/dress{i}.png" for i in range(n_images)]
    for i, name in enumerate(names):
        Image.new("RGB", (24, 32), ((30 * i) % 256, 100, (250 - 20 * i) % 256)).save(root / name)
    triplets = [{"candidate": names[i], "target": names[i + 1], "captions": [f"make it shade {i + 1}"]}
                for i in range(n_images - 1)]
    (root / "cir_triplets" / "dress_train_triplets.json").write_text(json.dumps(triplets))
    captions = {name: f"a dress in shade {i} with short sleeves" for i, name in enumerate(names)}
    (root / "image_captions" / "dress_train_captions.json").write_text(json.dumps(captions))
    return root


def _train(recipe: Path, data: Path, out: Path, *extra: str):
    args = ["train", "clip4cir:test_tiny", "--recipe", str(recipe), "--out", str(out), "--no-progress",
            "--set", f"data.root={data}", "--set", f"eval.root={data}", "--set", "train.batch_size=6",
            "--set", "train.schedule.warmup_steps=1", *extra]
    return runner.invoke(app, args)


def test_two_stage_training_from_recipes_with_validation_and_resume(tmp_path):
    data = _write_fashioniq(tmp_path / "fiq")
    stage1 = _train(STAGE1, data, tmp_path / "stage1", "--set", "train.epochs=2")
    assert stage1.exit_code == 0, stage1.output
    lines = [json.loads(line) for line in (tmp_path / "stage1" / "log.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and lines[-1]["step"] == 6  # 18 triplets / 6 = 3 steps
    assert set(lines[-1]["val"]) == {"R@10", "R@50", "headline"}
    assert "epoch 2  step 6/6" in stage1.output and "val R@10" in stage1.output

    final = tmp_path / "stage1" / "final"
    recipe_hash = json.loads((final / "config.json").read_text())["config_hash"]
    assert json.loads((tmp_path / "stage1" / "recipe.json").read_text())["train"]["epochs"] == 2
    assert build_model("clip4cir:test_tiny", checkpoint=final).meta.trained_on == ("fashioniq",)

    stage2 = _train(STAGE2, data, tmp_path / "stage2", "--set", "train.epochs=1", "--set", f"model.init_from={final}")
    assert stage2.exit_code == 0, stage2.output
    combined = build_model("clip4cir:test_tiny", checkpoint=tmp_path / "stage2" / "final")
    assert bool(combined.combiner_active)
    stage1_model = build_model("clip4cir:test_tiny", checkpoint=final)
    assert torch.equal(combined.backbone.clip.visual.proj, stage1_model.backbone.clip.visual.proj)  # CLIP frozen

    again = _train(STAGE1, data, tmp_path / "stage1", "--set", "train.epochs=2")
    assert again.exit_code == 1 and "pass --resume" in again.output
    resumed = _train(STAGE1, data, tmp_path / "stage1", "--set", "train.epochs=2", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((final / "config.json").read_text())["config_hash"] == recipe_hash


def test_fashionblip2_stage1_recipe_trains_cir_and_ctr_on_facap(tmp_path):
    data = _write_facap(tmp_path / "facap")
    recipe = REPO / "recipes" / "fashionblip2" / "stage1_facap_tiny.yaml"
    result = runner.invoke(app, ["train", "fashionblip2:test_tiny", "--recipe", str(recipe),
                                 "--out", str(tmp_path / "run"), "--no-progress", "--set", f"data.root={data}",
                                 "--set", "train.steps=2", "--set", "train.batch_size=4", "--set", "train.epochs=null"])
    assert result.exit_code == 0, result.output
    line = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert set(line["loss"]) == {"cir", "ctr"} and line["step"] == 2
    assert build_model("fashionblip2:test_tiny", checkpoint=tmp_path / "run" / "final").meta.trained_on == ("facap",)


def test_bad_recipes_end_with_one_clear_line(tmp_path):
    data = _write_fashioniq(tmp_path / "fiq")
    unknown_key = _train(STAGE1, data, tmp_path / "a", "--set", "train.learning_rate=0.1", "--set", "train.epochs=1")
    assert unknown_key.exit_code == 1 and "train.learning_rate: unknown key" in unknown_key.output
    wrong_model = runner.invoke(app, ["train", "sprc:test_tiny", "--recipe", str(STAGE1)])
    assert wrong_model.exit_code == 1 and "the recipe trains 'clip4cir', not 'sprc'" in wrong_model.output
    wrong_stage = _train(STAGE1, data, tmp_path / "b", "--set", "train.stage=pretrain", "--set", "train.epochs=1")
    assert wrong_stage.exit_code == 1 and "has no stage 'pretrain'" in wrong_stage.output
    missing_data = _train(STAGE1, tmp_path / "nowhere", tmp_path / "c", "--set", "train.epochs=1")
    assert missing_data.exit_code == 1 and "nowhere" in missing_data.output


@pytest.mark.parametrize("extra, message", [
    (["--set", "trian.lr=0.1"], "trian: unknown key (did you mean train?)"),
    (["--set", "train.lr=fast"], "train.lr: must be a number, got 'fast'"),
    (["--set", 'train.batch_size="64"'], "train.batch_size: must be an integer, got '64'"),
    (["--set", "train.tasks=cir"], "train.tasks: must be a list of strings, got 'cir'"),
    (["--set", "train.epochs=0"], "train.epochs: must be at least 1"),
    (["--set", "model.overrides.dropot=0.1"], "model.overrides.dropot: unknown key (did you mean dropout?)"),
    (["--set", "train.lr"], "--set train.lr: must look like key.sub=value"),
    (["--set", "train.lr=[1,"], "--set train.lr=[1,: the value is not valid YAML"),
    (["--set", "train.tasks=[cir, ctr]"], "train.tasks: clip4cir:test_tiny does not train ['ctr']"),
])
def test_a_bad_recipe_stops_before_any_folder_with_one_line_naming_file_and_key(tmp_path, extra, message):
    out = tmp_path / "run"
    result = _train(STAGE1, tmp_path / "unused", out, *extra)
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {STAGE1}: ") and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists()


def test_help_has_examples():
    for command in (["train", "--help"], ["bench", "train", "--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0 and "Example: cirbench" in result.output


def test_bench_train_reports_samples_per_second_on_cpu():
    result = runner.invoke(app, ["bench", "train", "--model", "clip4cir", "--size", "tiny", "--batch-size", "8",
                                 "--steps", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"] == "clip4cir:test_tiny" and report["samples_per_s"] > 0
    assert report["batch_size"] == 8 and report["trainable_params"] > 0
    phases = report["phases"]
    assert set(phases) == {"vision_forward", "rest_forward", "backward", "optimizer", "other"}
    assert all(value >= 0 for value in phases.values()) and abs(sum(phases.values()) - 1) < 1e-6


def test_json_output_is_one_object_on_stdout_whatever_the_libraries_print(monkeypatch):
    """transformers' loading/saving bars and any library print go to stderr, never into the JSON."""
    from transformers.utils.logging import tqdm

    import cirbench.train.bench_throughput as train_bench

    real = train_bench.benchmark_training

    def chatty(*args, **kwargs):
        print("Writing model shards: 100%")  # a library printing to stdout
        for _ in tqdm(range(3), desc="Loading weights"):
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(train_bench, "benchmark_training", chatty)
    result = runner.invoke(app, ["bench", "train", "--model", "sprc", "--size", "tiny", "--batch-size", "4",
                                 "--steps", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "sprc:test_tiny"
    assert "Writing model shards" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on CPU-only machines")
def test_bench_train_vitg_refuses_without_cuda():
    result = runner.invoke(app, ["bench", "train", "--model", "fashionblip2", "--size", "vitg"])
    assert result.exit_code == 1 and "needs a CUDA GPU" in result.output


@pytest.mark.gpu
def test_bench_train_vitg_reports_memory_and_mfu_on_gpu(tmp_path):
    result = runner.invoke(app, ["bench", "train", "--model", "fashionblip2", "--size", "vitg", "--batch-size", "16",
                                 "--micro-batch", "8", "--steps", "1", "--backbone-dir", str(tmp_path / "vitg"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"] == "fashionblip2:vitg" and report["samples_per_s"] > 0
    assert report["peak_gpu_memory_gb"] > 1 and report["model_tflops_per_step"] > 0
    assert report["mfu"] is None or 0 < report["mfu"] < 1
