"""Our BLIP-2 backbone against LAVIS 1.0.2's ``Blip2ITM``: every stored output of both weight regimes,
with the LAVIS weights imported as ``cirbench import-weights --from lavis-blip2`` does."""

from __future__ import annotations

import pytest
import torch
from parity_data import blip2_config, lavis_tokenizer, parity_case

from cirbench.importers.blip2 import import_lavis_blip2

CASES = ["blip2_small", "blip2_large"]


@pytest.fixture(scope="module", params=CASES)
def imported(request):
    case = parity_case(request.param)
    model, mapped = import_lavis_blip2([case.weights], lavis_tokenizer(case), model_name="sprc",
                                       config=blip2_config(case), variant="test_tiny")
    return case, model, mapped


def _itc_and_itm(backbone, image_embeds, case) -> tuple[torch.Tensor, torch.Tensor]:
    """[image i, text j] scores, each text tokenized alone (unpadded), as LAVIS's forward(match_head=...)."""
    image_feats = backbone.itc_query_features(image_embeds)
    itc, itm = torch.zeros(len(image_embeds), 3), torch.zeros(len(image_embeds), 3, 2)
    for j, ids in enumerate(case.inputs_json["itm_itc_input_ids"]):
        tokens = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        text_feat = backbone.itc_text_features(tokens)[0]
        for i in range(len(image_embeds)):
            itc[i, j] = (image_feats[i] @ text_feat).max()
            itm[i, j] = backbone.itm_logits(image_embeds[i : i + 1], tokens)[0]
    return itc, itm


def test_every_stored_output_matches_lavis(imported):
    case, model, _ = imported
    backbone, blip = model.backbone, model.backbone.blip
    pixels, tokens = case.inputs["pixel_values"], case.tokens()
    with torch.no_grad():
        image_embeds = backbone.encode_image(pixels)
        text_output = backbone.text_with_prefix(None, tokens)
        itc, itm = _itc_and_itm(backbone, image_embeds, case)
        ours = {
            "vision_tokens": blip.vision_model.encoder(inputs_embeds=blip.vision_model.embeddings(pixels)).last_hidden_state,
            "image_embeds": image_embeds,
            "query_output": backbone.query_image(image_embeds),
            "image_feats": backbone.itc_query_features(image_embeds),
            "text_output": text_output,
            "text_cls": text_output[:, 0],
            "text_feat": backbone.itc_text_features(tokens),
            "fused_output": backbone.query_image_text(image_embeds, tokens),
            "itc_sim": itc,
            "itm_logits": itm,
        }
    assert set(ours) == set(case.outputs)
    for name, value in ours.items():
        case.check(name, value)


def test_ln_vision_has_laviss_eps_and_the_blocks_keep_theirs(imported):
    case, model, _ = imported
    vision = model.backbone.blip.vision_model
    assert vision.post_layernorm.eps == case.spec["model"]["ln_vision"]["eps"] == 1e-5
    assert {layer.layer_norm1.eps for layer in vision.encoder.layers} == {case.spec["model"]["vision"]["block_layer_norm_eps"]}


def test_the_new_cir_parts_are_the_only_keys_not_from_the_file(imported):
    _, model, mapped = imported
    assert mapped.new == ["learnable_prompt"]  # SPRC's prompt: drawn from the seed
    assert model.temp.item() == pytest.approx(0.07)  # BLIP-2's temp, which SPRC's code starts from


def test_our_tokenizer_gives_the_stored_ids(imported):
    case, model, _ = imported
    texts = case.inputs_json["texts"]
    tokens = model.backbone.tokenize(texts, max_length=case.spec["model"]["max_txt_len"])
    assert torch.equal(tokens["input_ids"], case.tokens()["input_ids"])
    assert torch.equal(tokens["attention_mask"], case.tokens()["attention_mask"])
    alone = [model.backbone.tokenizer(text)["input_ids"] for text in texts]
    assert alone == case.inputs_json["itm_itc_input_ids"]


def test_the_vit_can_come_from_a_separate_eva_vit_file(tmp_path):
    """blip2_pretrained.pth holds no ViT; LAVIS loads it from eva_vit_g.pth (bare names, one block
    more than it builds, a head): the import takes both files and drops the extras with a reason."""
    from safetensors.torch import load_file

    case = parity_case("blip2_small")
    weights = load_file(str(case.weights))
    vit = {key.removeprefix("visual_encoder."): value for key, value in weights.items() if key.startswith("visual_encoder.")}
    vit.update({f"blocks.2.{key[len('blocks.1.'):]}": value for key, value in vit.items() if key.startswith("blocks.1.")})
    vit["head.weight"] = torch.ones(5, 40)
    torch.save({"model": {k: v for k, v in weights.items() if not k.startswith("visual_encoder.")}}, tmp_path / "blip2_pretrained.pth")
    torch.save(vit, tmp_path / "eva_vit_g.pth")
    model, mapped = import_lavis_blip2([tmp_path / "blip2_pretrained.pth", tmp_path / "eva_vit_g.pth"],
                                       lavis_tokenizer(case), config=blip2_config(case), variant="test_tiny")
    assert "visual_encoder.head.weight" in mapped.dropped and "visual_encoder.blocks.2.attn.qkv.weight" in mapped.dropped
    with torch.no_grad():
        case.check("image_embeds", model.backbone.encode_image(case.inputs["pixel_values"]))
