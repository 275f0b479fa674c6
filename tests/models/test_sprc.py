"""SPRC on the tiny BLIP-2: the two Q-Former passes, maxsim scoring, the three losses, checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from PIL import Image

from cirbench.baselines.zoo import build_model
from cirbench.interface import CIRBatch, TrainableCIRModel

TEXTS = ["is red and longer", "has stripes", "v neck and blue", "shorter sleeves"]


@pytest.fixture(scope="module")
def model():
    return build_model("sprc:test_tiny")


@pytest.fixture
def images():
    return torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def batch(images) -> CIRBatch:
    return CIRBatch(
        ref_images=images, texts=TEXTS, target_images=images.roll(1, dims=0), target_ids=["a", "b", "c", "d"]
    )


def test_contract_and_shapes(model, images):
    assert isinstance(model, TrainableCIRModel)
    assert model.meta.scorer == "maxsim"
    assert model.meta.query_shape == (256,) and model.meta.candidate_shape == (32, 256)
    with torch.no_grad():
        assert model.encode_query(images, TEXTS).shape == (4, 256)
        assert model.encode_candidates(images).shape == (4, 32, 256)


def test_similarity_is_the_best_candidate_token(model, images):
    with torch.no_grad():
        q, c = model.encode_query(images, TEXTS), model.encode_candidates(images[:3])
    manual = torch.einsum("bd,ntd->bnt", F.normalize(q, dim=-1), F.normalize(c, dim=-1)).amax(dim=-1)
    assert torch.allclose(model.similarity(q, c), manual, atol=1e-6)


def test_query_is_the_text_cls_of_the_prompted_image_free_pass(model, images):
    """Pass 2 sees the image only through the prompt of pass 1."""
    tokens = model.tokenize(TEXTS[:2])
    with torch.no_grad():
        prompt = model.sentence_prompt(images[:2], tokens)
        assert prompt.shape == (2, 32, 128)
        query = model.encode_query(images[:2], TEXTS[:2])
        assert torch.equal(query, model.prompted_query(prompt, tokens))
        assert not torch.allclose(query, model.encode_query(images[2:], TEXTS[:2]))
        assert not torch.allclose(query, model.encode_query(images[:2], TEXTS[2:]))


def test_losses_are_finite_and_reach_the_trainable_parts(images):
    model = build_model("sprc:test_tiny").train()
    model.set_trainable("finetune")
    losses = model.training_losses(batch(images))
    assert set(losses) == {"cir", "cir_learnable_prompt", "prompt_align"}
    assert all(torch.isfinite(loss) and loss.dim() == 0 for loss in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    blip = model.backbone.blip
    assert model.learnable_prompt.grad.abs().sum() > 0
    assert blip.text_projection.weight.grad.abs().sum() > 0 and blip.vision_projection.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in blip.vision_model.parameters())


def test_alignment_pulls_the_image_prompt_not_the_learnable_one(images):
    model = build_model("sprc:test_tiny").train()
    model.set_trainable("finetune")
    model.training_losses(batch(images))["prompt_align"].backward()
    assert model.learnable_prompt.grad is None
    assert model.backbone.blip.query_tokens.grad.abs().sum() > 0


def test_loss_weights_scale_the_prompt_losses(images):
    plain = build_model("sprc:test_tiny").eval()
    weighted = build_model("sprc:test_tiny", learnable_prompt_weight=0.5, align_weight=2.0).eval()
    with torch.no_grad():
        a, b = plain.training_losses(batch(images)), weighted.training_losses(batch(images))
    assert torch.equal(a["cir"], b["cir"])
    assert torch.allclose(b["cir_learnable_prompt"], 0.5 * a["cir_learnable_prompt"])
    assert torch.allclose(b["prompt_align"], 2.0 * a["prompt_align"])


def test_finetune_freezes_only_the_vit():
    model = build_model("sprc:test_tiny")
    model.set_trainable("finetune")
    blip = model.backbone.blip
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {
        f"backbone.blip.{name}"
        for name, _ in blip.named_parameters()
        if name.startswith(("vision_model.", "itm_head."))
    }
    with pytest.raises(ValueError, match="has no stage"):
        model.set_trainable("pretrain")


def test_save_and_reload_give_identical_scores(images, tmp_path):
    model = build_model("sprc:test_tiny")
    with torch.no_grad():
        model.learnable_prompt.normal_()
        model.backbone.blip.vision_projection.weight.mul_(2)
    model.save_pretrained(tmp_path)
    reloaded = build_model("sprc:test_tiny", checkpoint=tmp_path)
    with torch.no_grad():
        scores = model.similarity(model.encode_query(images, TEXTS), model.encode_candidates(images))
        again = reloaded.similarity(reloaded.encode_query(images, TEXTS), reloaded.encode_candidates(images))
    assert torch.equal(scores, again)
    assert torch.equal(model.learnable_prompt, reloaded.learnable_prompt)
    assert reloaded.checkpoint_hash() == model.checkpoint_hash()


def test_losses_are_cross_entropies_of_score_over_an_unclamped_temp(images):
    """SPRC's form: logits = score / temp (temp a parameter, 0.07 at the start, never clamped)."""
    model = build_model("sprc:test_tiny").eval()
    assert isinstance(model.temp, torch.nn.Parameter) and model.temp.item() == pytest.approx(0.07)
    with torch.no_grad():
        model.temp.fill_(0.002)  # 500x: a capped logit scale would stop at 100
        losses = model.training_losses(batch(images))
        tokens = model.tokenize(TEXTS)
        scores = model.similarity(model.encode_query(images, TEXTS), model.encode_candidates(images.roll(1, dims=0)))
        expected = F.cross_entropy(scores / 0.002, torch.arange(4))
        learnable = model.similarity(model.learnable_prompt_query(tokens), model.encode_candidates(images.roll(1, dims=0)))
    assert torch.allclose(losses["cir"], expected, rtol=1e-5)
    assert torch.allclose(losses["cir_learnable_prompt"], F.cross_entropy(learnable / 0.002, torch.arange(4)), rtol=1e-5)


def test_learnable_prompt_sits_after_the_cls_with_positions_over_the_whole_sequence():
    """[CLS, prompt x 32, text 1..]: moving the prompt between [CLS] and the words changes the pass,
    padding does not (masked), and the feature is read at position 0."""
    model = build_model("sprc:test_tiny").eval()
    short = model.tokenize(["is red"])
    padded = model.backbone.tokenizer(["is red"], padding="max_length", max_length=12, return_tensors="pt")
    with torch.no_grad():
        out = model.learnable_prompt_pass(short)
        out_padded = model.learnable_prompt_pass({"input_ids": padded["input_ids"], "attention_mask": padded["attention_mask"]})
        assert out.shape == (1, 32 + short["input_ids"].shape[1], 128)
        assert torch.allclose(out, out_padded[:, : out.shape[1]], atol=1e-5)
        blip = model.backbone.blip
        words = blip.embeddings.word_embeddings(short["input_ids"])
        before_cls = torch.cat([model.learnable_prompt, words], dim=1)  # the layout SPRC does NOT use
        before_cls = before_cls + blip.embeddings.position_embeddings(torch.arange(before_cls.shape[1]))[None]
        other = blip.qformer(query_embeds=before_cls, query_length=0).last_hidden_state
        assert not torch.allclose(other[:, 32], out[:, 0], atol=1e-3)
        assert torch.equal(model.learnable_prompt_query(short), blip.text_projection(out[:, 0]))


def test_images_get_sprcs_targetpad_and_texts_the_blip_caption_processor():
    model = build_model("sprc:test_tiny")
    tall = Image.new("RGB", (20, 100), (255, 255, 255))
    padded = model.preprocess(tall)
    assert padded.shape == (3, 64, 64) and padded[:, 32, 0].abs().sum() > 1  # black bars left and right
    resized = build_model("sprc:test_tiny", image_preprocess="resize").preprocess(tall)
    assert torch.allclose(resized[:, 32, 0], resized[:, 32, 32])  # BLIP-2's square resize: white everywhere
    cleaned = model.tokenize(["Is RED; and (longer)!"])["input_ids"]
    assert torch.equal(cleaned, model.tokenize(["is red and longer"])["input_ids"])
    raw = build_model("sprc:test_tiny", text_processor="none").tokenize(["Is RED; and (longer)!"])["input_ids"]
    assert raw.shape[1] > cleaned.shape[1]  # ; ( ) ! kept as word pieces
    with pytest.raises(ValueError, match="image_preprocess"):
        build_model("sprc:test_tiny", image_preprocess="squash")
