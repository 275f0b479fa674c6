"""FashionBLIP-2 on the tiny BLIP-2: shapes, scoring, adapters, stages, losses, checkpoints."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cirbench.baselines.zoo import build_model
from cirbench.interface import CIRBatch, TrainableCIRModel

TEXTS = ["is red and longer", "has stripes", "v neck and blue", "shorter sleeves"]


def count(module) -> int:
    params = [module] if isinstance(module, torch.nn.Parameter) else module.parameters()
    return sum(p.numel() for p in params)


def trainable(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def model():
    return build_model("fashionblip2:test_tiny")


@pytest.fixture
def images():
    return torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def batch(images, **fields) -> CIRBatch:
    defaults = dict(
        ref_images=images,
        texts=TEXTS,
        target_images=images.roll(1, dims=0),
        target_captions=["a long red dress", "a striped shirt", "a blue top", "a short shirt"],
        target_ids=["t0", "t1", "t2", "t3"],
    )
    return CIRBatch(**{**defaults, **fields})


def test_contract_and_shapes(model, images):
    assert isinstance(model, TrainableCIRModel)
    assert model.meta.scorer == "multihead" and model.meta.query_shape == model.meta.candidate_shape == (12, 256)
    assert model.preprocess(Image.new("RGB", (80, 50))).shape == (3, 64, 64)
    with torch.no_grad():
        assert model.encode_query(images, TEXTS).shape == (4, 12, 256)
        assert model.encode_candidates(images).shape == (4, 12, 256)
        assert model.encode_captions(["a red dress"]).shape == (1, 256)


def test_similarity_is_the_sum_of_head_cosines(model, images):
    with torch.no_grad():
        q, c = model.encode_query(images, TEXTS), model.encode_candidates(images[:3])
    manual = F.cosine_similarity(q[:, None], c[None], dim=-1).sum(dim=-1)
    assert torch.allclose(model.similarity(q, c), manual, atol=1e-5)


def test_query_depends_on_image_and_text(model, images):
    with torch.no_grad():
        base = model.encode_query(images[:2], TEXTS[:2])
        other_text = model.encode_query(images[:2], TEXTS[2:])
        other_image = model.encode_query(images[2:], TEXTS[:2])
    assert not torch.allclose(base, other_text) and not torch.allclose(base, other_image)


def test_zero_initialised_adapters_leave_the_vit_unchanged(images):
    plain = build_model("fashionblip2:test_tiny", use_adapters=False)
    adapted = build_model("fashionblip2:test_tiny")
    assert plain.adapters is None and len(adapted.adapters.adapters) == 4
    with torch.no_grad():
        assert torch.equal(plain.backbone.encode_image(images), adapted.backbone.encode_image(images))
        torch.nn.init.normal_(adapted.adapters.adapters[2].up.weight, std=0.1)
        assert not torch.allclose(plain.backbone.encode_image(images), adapted.backbone.encode_image(images))
    # reduction 16 on width 128: 128 -> 8 -> 128, with biases
    assert count(adapted.adapters.adapters[0]) == 128 * 8 + 8 + 8 * 128 + 128


def test_stages_freeze_what_the_paper_freezes():
    model = build_model("fashionblip2:test_tiny")
    blip = model.backbone.blip
    qformer_side = count(blip.qformer) + count(blip.embeddings) + count(blip.query_tokens) + count(model.matcher)
    model.set_trainable("pretrain")
    assert trainable(model) == qformer_side + count(model.adapters) + 1  # + the temperature
    assert trainable(blip.vision_model) == 0
    model.set_trainable("finetune")
    assert trainable(model) == qformer_side + 1
    assert trainable(blip.vision_model) == 0 and trainable(model.adapters) == 0
    with pytest.raises(ValueError, match="has no stage"):
        model.set_trainable("combiner")


@pytest.mark.parametrize("tasks", [("cir",), ("ctr",), ("cir", "ctr")])
def test_training_losses_are_finite_and_train_the_right_parts(images, tasks):
    model = build_model("fashionblip2:test_tiny").train()
    model.set_trainable("pretrain")
    losses = model.training_losses(batch(images), tasks)
    assert set(losses) == set(tasks)
    assert all(torch.isfinite(loss) and loss.dim() == 0 for loss in losses.values())
    sum(losses.values()).backward()
    # Every trainable parameter takes part, whatever the tasks (DistributedDataParallel requires it).
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.matcher.channel_mixing.weight.grad.abs().sum() > 0
    assert model.adapters.adapters[0].up.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.blip.vision_model.parameters())


def test_task_errors(model, images):
    with pytest.raises(ValueError, match="target_captions"):
        model.training_losses(batch(images, target_captions=None), ("ctr",))
    with pytest.raises(ValueError, match="does not train"):
        model.training_losses(batch(images), ("itm",))


def test_duplicate_targets_are_not_negatives(model, images):
    """Two queries with the same target: masking removes that target's copy from the negatives."""
    same = batch(images, target_images=images[[0, 1, 0, 2]], target_ids=["a", "b", "a", "c"])
    unmasked = batch(images, target_images=images[[0, 1, 0, 2]], target_ids=[])
    model.eval()
    with torch.no_grad():
        masked_loss = model.training_losses(same)["cir"]
        plain_loss = model.training_losses(unmasked)["cir"]
    assert masked_loss < plain_loss


def test_global_matching_ablation(images):
    model = build_model("fashionblip2:test_tiny", matching="global")
    assert model.meta.scorer == "cosine" and model.meta.query_shape == (256,)
    with torch.no_grad():
        q, c = model.encode_query(images, TEXTS), model.encode_candidates(images)
    assert q.shape == c.shape == (4, 256)
    assert torch.allclose(model.similarity(q, c), F.normalize(q, dim=-1) @ F.normalize(c, dim=-1).T, atol=1e-6)
    losses = model.train().training_losses(batch(images), ("cir", "ctr"))
    assert all(math.isfinite(loss.item()) for loss in losses.values())
    with pytest.raises(ValueError, match="matching"):
        build_model("fashionblip2:test_tiny", matching="mean")


def test_save_and_reload_give_identical_scores(images, tmp_path):
    model = build_model("fashionblip2:test_tiny", seed=7)
    with torch.no_grad():  # move away from the initial weights so that a reload from scratch would differ
        model.matcher.token_mixing.weight.add_(0.5)
        model.adapters.adapters[0].up.weight.normal_()
    model.meta = dataclasses.replace(model.meta, trained_on=("facap",))
    model.save_pretrained(tmp_path)
    reloaded = build_model("fashionblip2:test_tiny", checkpoint=tmp_path)
    with torch.no_grad():
        scores = model.similarity(model.encode_query(images, TEXTS), model.encode_candidates(images))
        again = reloaded.similarity(reloaded.encode_query(images, TEXTS), reloaded.encode_candidates(images))
    assert torch.equal(scores, again)
    assert reloaded.checkpoint_hash() == model.checkpoint_hash()
    assert reloaded.meta.trained_on == ("facap",) and reloaded.options.seed == 7
    with pytest.raises(ValueError, match="variant"):
        build_model("fashionblip2:synth_tiny", checkpoint=tmp_path)
    with pytest.raises(ValueError, match="sprc"):
        build_model("sprc:test_tiny", checkpoint=tmp_path)


def test_checkpoint_hash_follows_the_weights(images):
    model = build_model("fashionblip2:test_tiny")
    first = model.checkpoint_hash()
    assert model.checkpoint_hash() == first == build_model("fashionblip2:test_tiny").checkpoint_hash()
    with torch.no_grad():
        model.matcher.channel_mixing.bias.add_(1.0)
    assert model.checkpoint_hash() != first


def test_unknown_option_is_an_error():
    with pytest.raises(ValueError, match="unknown key"):
        build_model("fashionblip2:test_tiny", adapters=False)


def test_gradient_checkpointing_keeps_the_adapter_gradients(images):
    """Checkpointed layers of the frozen ViT must still pass gradients to the adapters inside them."""
    gradients = []
    for checkpointing in (False, True):
        model = build_model("fashionblip2:test_tiny").train()
        model.set_trainable("pretrain")
        if checkpointing:
            model.set_grad_checkpointing(True)
        torch.manual_seed(0)  # same dropout draws in both runs
        sum(model.training_losses(batch(images), ("cir", "ctr")).values()).backward()
        gradients.append(model.adapters.adapters[0].up.weight.grad)
    assert model.backbone.blip.vision_model.encoder.gradient_checkpointing
    assert gradients[0].abs().sum() > 0 and torch.allclose(gradients[0], gradients[1], atol=1e-6)
