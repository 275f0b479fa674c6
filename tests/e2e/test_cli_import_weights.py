"""`cirbench import-weights` end to end with upstream-named weights (../shared/parity, as torch pickles
the way SPRC / CLIP4Cir / LAVIS save them): the folders it writes evaluate and train like any model
folder, and every bad input ends with one line naming the file and the key, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from typer.testing import CliRunner

from parity_data import blip2_config, parity_case

from cirbench.cli import app
from cirbench.baselines.zoo import build_model

runner = CliRunner()


@pytest.fixture(scope="module")
def sprc_upstream(tmp_path_factory):
    """SPRC's parity weights saved as SPRC's training script saves them, plus the case's config JSON."""
    case = parity_case("sprc_large")
    folder = tmp_path_factory.mktemp("sprc_upstream")
    torch.save({"epoch": 29, "Blip2QformerCirAlignPrompt": load_file(str(case.weights))}, folder / "sprc_fiq.pt")
    (folder / "blip2_config.json").write_text(blip2_config(case).to_json_string())
    return case, folder


def _import_sprc(folder: Path, weights: Path, out: Path, *extra: str):
    return runner.invoke(app, [
        "import-weights", "--from", "sprc", str(weights), "--out", str(out), "--no-progress",
        "--tokenizer", str(parity_case("sprc_large").vocab), "--config", str(folder / "blip2_config.json"),
        "--variant", "test_tiny", *extra,
    ])


def _one_clean_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # typer.Exit(1), nothing raised
    assert all(fragment in result.output for fragment in fragments), result.output
    return result.output


def test_an_imported_sprc_checkpoint_evaluates_like_the_upstream_model(sprc_upstream, tmp_path):
    case, folder = sprc_upstream
    result = _import_sprc(folder, folder / "sprc_fiq.pt", tmp_path / "sprc", "--trained-on", "fashioniq")
    assert result.exit_code == 0, result.output
    assert "sprc:test_tiny" in result.output and "cirbench eval --model sprc:test_tiny --checkpoint" in result.output
    record = json.loads((tmp_path / "sprc" / "import.json").read_text())
    assert record["files"][0]["name"] == "sprc_fiq.pt" and len(record["files"][0]["sha256"]) == 64
    assert list(record["dropped_on_purpose"]) == ["Qformer.bert.embeddings.position_ids"]
    model = build_model("sprc:test_tiny", checkpoint=tmp_path / "sprc")
    assert model.meta.trained_on == ("fashioniq",)
    tokens, ref, target = case.tokens(), case.inputs["ref_pixel_values"], case.inputs["target_pixel_values"]
    with torch.no_grad():
        case.check("sim", model.similarity(model.encode_query(ref, case.inputs_json["texts"]), model.encode_candidates(target)))
        case.check("learnable_prompt_feat", F.normalize(model.learnable_prompt_query(tokens), dim=-1))
        case.check("loss_rtc", model.losses(ref, tokens, target, ["a", "b", "c"])["cir_learnable_prompt"])


def test_an_imported_folder_evaluates_and_trains_like_a_trained_one(sprc_upstream, tmp_path):
    """`eval --checkpoint DIR` and `train --set model.init_from=DIR` take an imported folder."""
    from test_cli_train import _write_fashioniq

    _, folder = sprc_upstream
    assert _import_sprc(folder, folder / "sprc_fiq.pt", tmp_path / "sprc").exit_code == 0
    data = _write_fashioniq(tmp_path / "fiq", categories=("dress",), n_images=6)
    evaluated = runner.invoke(app, ["eval", "--model", "sprc:test_tiny", "--checkpoint", str(tmp_path / "sprc"),
                                    "--dataset", "fashioniq", "--data-root", str(data), "--out", str(tmp_path / "eval"),
                                    "--no-cache", "--table"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "sprc:test_tiny" in evaluated.output and (tmp_path / "eval" / "results.jsonl").is_file()
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "sprc" / "fashioniq_tiny.yaml"
    result = runner.invoke(app, [
        "train", "sprc:test_tiny", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--no-progress",
        "--set", f"model.init_from={tmp_path / 'sprc'}", "--set", f"data.root={data}", "--set", f"eval.root={data}",
        "--set", "train.steps=1", "--set", "train.epochs=null", "--set", "train.batch_size=4", "--set", "eval=null",
    ])
    assert result.exit_code == 0, result.output
    imported = build_model("sprc:test_tiny", checkpoint=tmp_path / "sprc")
    trained = build_model("sprc:test_tiny", checkpoint=tmp_path / "run" / "final")
    vision = "backbone.blip.vision_model.encoder.layers.0.mlp.fc1.weight"  # frozen: still the imported weights
    assert torch.equal(imported.state_dict()[vision], trained.state_dict()[vision])
    assert not torch.equal(imported.learnable_prompt, trained.learnable_prompt)


def test_clip4cir_files_import_and_rebuild(tmp_path):
    case = parity_case("clip4cir_tiny")
    torch.save({"epoch": 3, "CLIP": load_file(str(case.weights))}, tmp_path / "tuned_clip_best.pt")
    torch.save({"epoch": 5, "Combiner": load_file(str(case.folder / "combiner.safetensors"))}, tmp_path / "combiner.pt")
    without_variant = runner.invoke(app, ["import-weights", "--from", "clip4cir", str(tmp_path / "tuned_clip_best.pt"),
                                          "--out", str(tmp_path / "a"), "--no-progress"])
    _one_clean_error(without_variant, "none of clip4cir's variants (rn50x4, vit_l14)")
    with_tokenizer = runner.invoke(app, ["import-weights", "--from", "clip4cir", str(tmp_path / "tuned_clip_best.pt"),
                                         "--tokenizer", "vocab.txt", "--out", str(tmp_path / "b"), "--no-progress"])
    _one_clean_error(with_tokenizer, "only for BLIP-2 checkpoints")
    result = runner.invoke(app, ["import-weights", "--from", "clip4cir", str(tmp_path / "combiner.pt"),
                                 str(tmp_path / "tuned_clip_best.pt"), "--out", str(tmp_path / "clip4cir"),
                                 "--variant", "test_tiny", "--no-progress"])
    assert result.exit_code == 0, result.output
    model = build_model("clip4cir:test_tiny", checkpoint=tmp_path / "clip4cir")
    with torch.no_grad():
        case.check("combined", model.encode_query(case.inputs["ref_pixel_values"], case.inputs_json["texts"]))


def test_lavis_blip2_becomes_a_fashionblip2_with_new_heads(tmp_path):
    case = parity_case("blip2_small")
    torch.save({"model": load_file(str(case.weights))}, tmp_path / "blip2_pretrained.pth")
    (tmp_path / "config.json").write_text(blip2_config(case).to_json_string())
    command = ["import-weights", "--from", "lavis-blip2", str(tmp_path / "blip2_pretrained.pth"), "--model",
               "fashionblip2", "--tokenizer", str(case.vocab), "--config", str(tmp_path / "config.json"),
               "--variant", "test_tiny", "--seed", "3", "--no-progress"]
    # The tiny ViT is 40 wide: FashionBLIP-2's default adapter reduction (16) does not divide it.
    _one_clean_error(runner.invoke(app, [*command, "--out", str(tmp_path / "a")]), "not divisible by the reduction factor 16")
    result = runner.invoke(app, [*command, "--option", "adapter_reduction=8", "--out", str(tmp_path / "fblip2")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "fblip2" / "import.json").read_text())
    assert "temp" in record["dropped_on_purpose"] and record["drawn_from_seed"]["seed"] == 3
    assert {key.split(".")[0] for key in record["drawn_from_seed"]["keys"]} == {"adapters", "matcher", "logit_scale"}
    model = build_model("fashionblip2:test_tiny", checkpoint=tmp_path / "fblip2")
    with torch.no_grad():
        case.check("image_embeds", model.backbone.encode_image(case.inputs["pixel_values"]))


def test_a_missing_an_unexpected_and_a_mis_shaped_key_are_each_named(sprc_upstream, tmp_path):
    case, folder = sprc_upstream
    weights = load_file(str(case.weights))
    missing = {k: v for k, v in weights.items() if k != "visual_encoder.blocks.1.attn.v_bias"}
    unexpected = {**weights, "Qformer.bert.pooler.dense.weight": torch.ones(2, 2)}
    mis_shaped = {**weights, "text_proj.weight": torch.ones(8, 48)}
    for name, state in (("missing", missing), ("unexpected", unexpected), ("mis_shaped", mis_shaped)):
        torch.save({"Blip2QformerCirAlignPrompt": state}, tmp_path / f"{name}.pt")
    _one_clean_error(_import_sprc(folder, tmp_path / "missing.pt", tmp_path / "o1"),
                     "missing.pt: visual_encoder.blocks.1.attn.v_bias: missing")
    _one_clean_error(_import_sprc(folder, tmp_path / "unexpected.pt", tmp_path / "o2"),
                     "unexpected.pt: Qformer.bert.pooler.dense.weight: unexpected")
    _one_clean_error(_import_sprc(folder, tmp_path / "mis_shaped.pt", tmp_path / "o3"),
                     "mis_shaped.pt: text_proj.weight: shape (8, 48) does not fit")
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3"))  # nothing half-written


def test_a_pickle_with_code_is_refused_and_nothing_is_overwritten(sprc_upstream, tmp_path):
    _, folder = sprc_upstream
    torch.save({"Blip2QformerCirAlignPrompt": {"w": torch.ones(1)}, "hook": print}, tmp_path / "evil.pt")
    _one_clean_error(_import_sprc(folder, tmp_path / "evil.pt", tmp_path / "out"),
                     "evil.pt: torch pickle: refused", "weights_only=True")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "model.safetensors").write_text("a model already here")
    _one_clean_error(_import_sprc(folder, folder / "sprc_fiq.pt", tmp_path / "taken"), "already exists and is not empty")
    assert (tmp_path / "taken" / "model.safetensors").read_text() == "a model already here"


def test_files_that_are_no_checkpoint_are_refused_without_advice_to_unpickle_them(sprc_upstream, tmp_path):
    _, folder = sprc_upstream
    (tmp_path / "garbage.pt").write_bytes(b"hello")  # torch's unpickler raises KeyError on it
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"Blip2QformerCirAlignPrompt": {"w": torch.ones(1)}, "hook": print}, tmp_path / "evil.pt")
    for name in ("garbage.pt", "empty.pt", "evil.pt"):
        output = _one_clean_error(_import_sprc(folder, tmp_path / name, tmp_path / "out"), f"{name}: torch pickle: refused")
        assert "weights_only=False" not in output and "weights_only` set to `False" not in output


def test_a_missing_file_or_tokenizer_is_one_line_and_nothing_is_fetched(tmp_path):
    vocab = str(parity_case("sprc_large").vocab)
    result = runner.invoke(app, ["import-weights", "--from", "sprc", str(tmp_path / "absent.pt"), "--out", str(tmp_path / "o"),
                                 "--tokenizer", "Salesforce/blip2-itm-vit-g"])
    _one_clean_error(result, "absent.pt: file: not found")  # the file first: no tokenizer is looked up for nothing
    (tmp_path / "w.pt").write_bytes(b"")
    result = runner.invoke(app, ["import-weights", "--from", "sprc", str(tmp_path / "w.pt"), "--out", str(tmp_path / "o"),
                                 "--tokenizer", "someone/not-downloaded-tokenizer"])
    _one_clean_error(result, "--tokenizer: the BLIP-2 tokenizer someone/not-downloaded-tokenizer is not on this machine",
                     "hf download someone/not-downloaded-tokenizer")
    result = runner.invoke(app, ["import-weights", "--from", "sprc", str(tmp_path / "w.pt"), "--out", str(tmp_path / "o"),
                                 "--tokenizer", str(tmp_path / "absent_vocab.txt")])
    _one_clean_error(result, "absent_vocab.txt: --tokenizer: not found")
    assert Path(vocab).is_file() and not (tmp_path / "o").exists()


def test_help_has_an_example():
    result = runner.invoke(app, ["import-weights", "--help"])
    assert result.exit_code == 0 and "Example: cirbench import-weights" in result.output
