"""CLIP4CIR against OpenAI CLIP + CLIP4Cir's Combiner and targetpad preprocessing: every stored output,
with the CLIP and Combiner files imported as ``cirbench import-weights --from clip4cir`` does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from parity_data import parity_case
from PIL import Image

from cirbench.importers.clip4cir import import_clip4cir


@pytest.fixture(scope="module")
def imported():
    case = parity_case("clip4cir_tiny")
    model, mapped = import_clip4cir([case.weights, case.folder / "combiner.safetensors"], variant="test_tiny")
    return case, model, mapped


def test_the_architecture_read_from_the_shapes_is_the_cases(imported):
    case, model, mapped = imported
    clip = case.spec["model"]["clip"]
    config = model.backbone.model_cfg
    assert config["embed_dim"] == clip["embed_dim"] and config["quick_gelu"] is True
    assert config["vision_cfg"] == {"image_size": clip["image_resolution"], "layers": clip["vision_layers"],
                                    "width": clip["vision_width"], "patch_size": None}
    assert config["text_cfg"] == {"context_length": clip["context_length"], "vocab_size": clip["vocab_size"],
                                  "width": clip["transformer_width"], "heads": clip["transformer_heads"],
                                  "layers": clip["transformer_layers"]}
    assert set(mapped.dropped) == {"input_resolution", "context_length", "vocab_size"}
    assert mapped.new == [] and bool(model.combiner_active)  # everything from the two files; the Combiner is on


def test_every_stored_output_matches_clip4cirs_code(imported):
    case, model, _ = imported
    inputs = case.inputs
    logit_scale = case.spec["model"]["combiner"]["logit_scale"]
    with torch.no_grad():
        reference = model.backbone.encode_image(inputs["ref_pixel_values"])
        text = model.backbone.clip.encode_text(inputs["input_ids"].long())
        target = model.backbone.encode_image(inputs["target_pixel_values"])
        stage1 = F.normalize(reference + text, dim=-1)
        stage1_logits = logit_scale * stage1 @ F.normalize(target, dim=-1).T
        combined = model.combiner(reference, text)
        logits = logit_scale * combined @ F.normalize(target, dim=-1).T
        ours = {
            "ref_features": reference,
            "text_features": text,
            "target_features": target,
            "element_wise_sum": stage1,
            "stage1_logits": stage1_logits,
            "stage1_loss": F.cross_entropy(stage1_logits, torch.arange(3)),
            "combined": combined,
            "logits": logits,
            "combiner_loss": F.cross_entropy(logits, torch.arange(3)),
        }
    assert set(ours) == set(case.outputs)
    for name, value in ours.items():
        case.check(name, value)


def test_the_model_interface_gives_the_combiner_query_and_loss(imported):
    """encode_query (texts through our tokenizer) and training_losses are the stored Combiner outputs."""
    from cirbench.interface import CIRBatch

    case, model, _ = imported
    texts = case.inputs_json["texts"]
    assert torch.equal(model.backbone.tokenizer(texts), case.inputs["input_ids"].long())
    batch = CIRBatch(ref_images=case.inputs["ref_pixel_values"], texts=texts,
                     target_images=case.inputs["target_pixel_values"], target_ids=["t0", "t1", "t2"])
    with torch.no_grad():
        case.check("combined", model.encode_query(case.inputs["ref_pixel_values"], texts))
        case.check("combiner_loss", model.training_losses(batch)["cir"])


def test_targetpad_preprocessing_gives_the_stored_pixels(imported):
    case, model, _ = imported
    images = [Image.fromarray(case.inputs[f"ref_image_{i}_uint8"].numpy()) for i in range(3)]
    assert [image.size for image in images] == [(60, 100), (80, 80), (120, 50)]  # tall, square, wide
    pixels = torch.stack([model.preprocess(image) for image in images])
    assert (pixels - case.inputs["ref_pixel_values"]).abs().max().item() <= 1e-6


def test_the_fine_tuned_weights_get_the_fp16_rounding_of_clip4cirs_gpu_loader(tmp_path):
    """OpenAI's loader rounds conv / linear / attention weights to float16, not norms or embeddings."""
    from safetensors.torch import load_file, save_file

    case = parity_case("clip4cir_tiny")
    state = {key: value.float() if value.is_floating_point() else value for key, value in load_file(str(case.weights)).items()}
    bump = 1e-4  # not representable next to these float16 values: rounding removes it
    for key in ("visual.conv1.weight", "visual.attnpool.q_proj.weight", "transformer.resblocks.0.attn.in_proj_weight",
                "text_projection", "visual.bn1.weight", "ln_final.weight", "token_embedding.weight"):
        state[key] = state[key] + bump * torch.rand_like(state[key])
    save_file(state, str(tmp_path / "fine_tuned.safetensors"))
    model, mapped = import_clip4cir([tmp_path / "fine_tuned.safetensors"], variant="test_tiny")
    ours = model.backbone.clip.state_dict()
    for key in ("visual.conv1.weight", "visual.attnpool.q_proj.weight", "transformer.resblocks.0.attn.in_proj_weight", "text_projection"):
        assert torch.equal(ours[key], state[key].half().float()), key
    for key in ("visual.bn1.weight", "ln_final.weight", "token_embedding.weight"):
        assert torch.equal(ours[key], state[key]), key
    assert not bool(model.combiner_active)  # no Combiner file: the stage-1 sum, the Combiner drawn from the seed
    assert {key.split(".")[0] for key in mapped.new} == {"combiner"}
