"""cache_image_features (FashionBLIP-2, SPRC): each image's ViT tokens computed once while no
gradient flows into the image tower, never a different number than without the cache."""

from __future__ import annotations

import pytest
import torch

from cirbench.baselines.zoo import build_model
from cirbench.interface import CIRBatch

TEXTS = ["is red and longer", "has stripes", "v neck and blue", "shorter sleeves"]


def _images(seed: int) -> torch.Tensor:
    return torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _steps(spec: str, stage: str, cache: bool, steps: int = 3) -> tuple[list[float], object]:
    torch.manual_seed(0)
    model = build_model(spec, cache_image_features=cache).train()
    model.set_trainable(stage)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = CIRBatch(_images(0), TEXTS, _images(1), target_ids=["a", "b", "c", "d"])
    losses = []
    for _ in range(steps):
        loss = sum(model.training_losses(batch, ("cir",)).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, model


@pytest.mark.parametrize("spec, stage", [("fashionblip2:test_tiny", "finetune"), ("fashionblip2:test_tiny", "pretrain"),
                                         ("sprc:test_tiny", "finetune")])
def test_training_with_the_cache_gives_the_same_losses(spec, stage):
    plain, _ = _steps(spec, stage, cache=False)
    cached, model = _steps(spec, stage, cache=True)
    assert cached == pytest.approx(plain, rel=1e-5, abs=1e-6)
    frozen = stage == "finetune"  # stage 1 trains the adapters inside the ViT: nothing may be cached
    assert len(getattr(model, "_image_cache", {})) == (8 if frozen else 0)


def test_the_cache_encodes_each_image_once_and_forgets_when_the_tower_changes(monkeypatch):
    model = build_model("fashionblip2:test_tiny", cache_image_features=True).eval()
    calls = []
    encode = model.backbone.encode_image
    monkeypatch.setattr(model.backbone, "encode_image", lambda images: calls.append(len(images)) or encode(images))
    images = _images(2)
    with torch.no_grad():
        first = model.encode_candidates(images)
        again = model.encode_query(torch.cat([images[:2], images[:2]]), TEXTS)  # known images, one repeated
        assert calls == [4] and torch.equal(first, model.encode_candidates(images))
        model.backbone.blip.vision_model.post_layernorm.weight.add_(1.0)  # the tower's weights change
        changed = model.encode_candidates(images)
    assert calls == [4, 4] and not torch.allclose(changed, first)
    assert again.shape[0] == 4
