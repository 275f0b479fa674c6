"""SPRC against SPRC's own code (``Blip2QformerCirAlignPrompt``): every stored output of both weight
regimes, through the importer (``cirbench import-weights --from sprc``) and after a save/load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from parity_data import blip2_config, lavis_tokenizer, parity_case

from cirbench.importers.blip2 import import_sprc
from cirbench.baselines.zoo import build_model

CASES = ["sprc_small", "sprc_large"]


@pytest.fixture(scope="module", params=CASES)
def imported(request):
    case = parity_case(request.param)
    model, mapped = import_sprc([case.weights], lavis_tokenizer(case), config=blip2_config(case), variant="test_tiny")
    return case, model, mapped


def _outputs(model, case) -> dict[str, torch.Tensor]:
    """Every output of the case, computed by our model from the stored inputs."""
    backbone, blip = model.backbone, model.backbone.blip
    ref, target, tokens = case.inputs["ref_pixel_values"], case.inputs["target_pixel_values"], case.tokens()
    queries = model.backbone.num_query_tokens
    with torch.no_grad():
        image_embeds = backbone.encode_image(ref)
        target_embeds = backbone.encode_image(target)
        fused = backbone.query_image_text(image_embeds, tokens)
        query = model.prompted_query(fused[:, :queries], tokens)
        candidates = model.encode_candidates(target)
        losses = model.losses(ref, tokens, target, target_ids=["t0", "t1", "t2"])
        return {
            "vision_tokens": blip.vision_model.encoder(inputs_embeds=blip.vision_model.embeddings(ref)).last_hidden_state,
            "image_embeds": image_embeds,
            "target_image_embeds": target_embeds,
            "target_query_output": backbone.query_image(target_embeds),
            "target_feats": F.normalize(candidates, dim=-1),
            "sim": model.similarity(query, candidates),
            "fused_output": fused,
            "prompt_pass_output": backbone.text_with_prefix(fused[:, :queries], tokens),
            "fusion_feats": F.normalize(query, dim=-1),
            "learnable_prompt_pass_output": model.learnable_prompt_pass(tokens),
            "learnable_prompt_feat": F.normalize(model.learnable_prompt_query(tokens), dim=-1),
            "loss_itc": losses["cir"],
            "loss_rtc": losses["cir_learnable_prompt"],
            "loss_align": losses["prompt_align"],
        }


def test_every_stored_output_matches_sprcs_code(imported):
    case, model, _ = imported
    ours = _outputs(model, case)
    assert set(ours) == set(case.outputs)
    for name, value in ours.items():
        case.check(name, value)


def test_the_import_accounts_for_every_key(imported):
    case, model, mapped = imported
    assert mapped.new == []  # SPRC's file holds every weight of the model, learnable prompt and temp included
    assert set(mapped.dropped) == {"Qformer.bert.embeddings.position_ids"}  # Qformer.cls.* is not in the parity files
    assert model.temp.item() == pytest.approx(case.spec["model"]["temperature"]["value"])


def test_outputs_survive_a_save_and_reload(imported, tmp_path):
    """The saved folder rebuilds the same model (ln_vision's eps included) through build_model."""
    case, model, _ = imported
    model.save_pretrained(tmp_path)
    reloaded = build_model("sprc:test_tiny", checkpoint=tmp_path)
    assert reloaded.backbone.blip.vision_model.post_layernorm.eps == 1e-5
    ours = _outputs(reloaded, case)
    for name in ("image_embeds", "sim", "learnable_prompt_feat", "loss_itc", "loss_rtc", "loss_align"):
        case.check(name, ours[name])


def test_our_tokenizer_gives_the_stored_ids(imported):
    case, model, _ = imported
    texts = case.inputs_json["texts"]
    tokens = model.tokenize(texts)  # padded to the longest text; SPRC pads to 32 (masked either way)
    length = tokens["input_ids"].shape[1]
    assert torch.equal(tokens["input_ids"], case.tokens()["input_ids"][:, :length])
    assert torch.equal(tokens["attention_mask"], case.tokens()["attention_mask"][:, :length])
    assert case.tokens()["attention_mask"][:, length:].sum() == 0


def test_the_losses_from_texts_equal_the_losses_from_the_stored_ids(imported):
    """training_losses (texts -> our tokenizer, padded to the longest) gives SPRC's losses too."""
    from cirbench.interface import CIRBatch

    case, model, _ = imported
    batch = CIRBatch(ref_images=case.inputs["ref_pixel_values"], texts=case.inputs_json["texts"],
                     target_images=case.inputs["target_pixel_values"], target_ids=["t0", "t1", "t2"])
    with torch.no_grad():
        losses = model.training_losses(batch)
    for ours, theirs in (("cir", "loss_itc"), ("cir_learnable_prompt", "loss_rtc"), ("prompt_align", "loss_align")):
        case.check(theirs, losses[ours])
