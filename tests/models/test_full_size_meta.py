"""Full-size (ViT-g) configurations checked without weights, on the meta device.

transformers' default Blip2Config is the ViT-g BLIP-2: vision tower 985,952,256 parameters,
Blip2ForImageTextRetrieval 1,172,031,490 in total; FashionBLIP-2's adapters at reduction 16 add
249,304 per ViT layer (39 layers).
"""

from __future__ import annotations

import pytest
import torch

from cirbench.backbones.blip2_configs import vitg_blip2_config
from cirbench.baselines.params import fashionblip2_vitg_on_meta, full_size_parameter_counts, sprc_vitg_on_meta
from cirbench.baselines.zoo import build_model

VISION_TOWER = 985_952_256
RETRIEVAL_MODEL = 1_172_031_490
ADAPTER_PER_LAYER = 1408 * 88 + 88 + 88 * 1408 + 1408
MATCHER = 32 * 12 + 12 + 768 * 256 + 256


@pytest.fixture(scope="module")
def counts() -> dict[str, int]:
    return dict(full_size_parameter_counts())


def test_vitg_config_is_the_paper_backbone():
    config = vitg_blip2_config()
    vision = config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size) == (1408, 39, 224, 14)
    assert (config.num_query_tokens, config.qformer_config.hidden_size, config.image_text_hidden_size) == (32, 768, 256)
    assert config.qformer_config.use_qformer_text_input


def test_blip2_counts(counts):
    assert counts["BLIP-2 ViT-g vision tower"] == VISION_TOWER
    assert counts["Blip2ForImageTextRetrieval, total"] == RETRIEVAL_MODEL


def test_fashionblip2_counts(counts):
    assert ADAPTER_PER_LAYER == 249_304
    assert counts["FashionBLIP-2 adapter, one ViT layer (1408 -> 88 -> 1408)"] == ADAPTER_PER_LAYER
    assert counts["FashionBLIP-2 adapters, 39 ViT layers"] == 39 * ADAPTER_PER_LAYER == 9_722_856
    assert counts["FashionBLIP-2 multi-head matcher (32 -> 12 tokens, 768 -> 256 channels)"] == MATCHER
    assert counts["FashionBLIP-2, total"] == RETRIEVAL_MODEL + 9_722_856 + MATCHER + 1  # + the temperature
    qformer_side = (
        counts["BLIP-2 Q-Former layers (with text layers)"]
        + counts["BLIP-2 Q-Former word and position embeddings"]
        + counts["BLIP-2 query tokens (32 x 768)"]
        + MATCHER
    )
    assert counts["FashionBLIP-2 trainable in stage 'pretrain'"] == qformer_side + 9_722_856 + 1
    assert counts["FashionBLIP-2 trainable in stage 'finetune'"] == qformer_side + 1


def test_sprc_counts(counts):
    assert counts["SPRC learnable prompt (32 x 768)"] == 32 * 768
    assert counts["SPRC, total"] == RETRIEVAL_MODEL + 32 * 768 + 1


def test_vitg_candidates_encode_on_meta():
    """The full ViT-g image path (adapters, Q-Former, heads) runs shape-only on the meta device.

    (The query path cannot: transformers inspects the text padding mask's values.)
    """
    images = torch.empty(2, 3, 224, 224, device="meta")
    fashionblip2 = fashionblip2_vitg_on_meta()
    assert fashionblip2.meta.query_shape == fashionblip2.meta.candidate_shape == (12, 256)
    assert fashionblip2.meta.image_size == 224
    assert fashionblip2.encode_candidates(images).shape == (2, 12, 256)
    sprc = sprc_vitg_on_meta()
    assert sprc.meta.query_shape == (256,) and sprc.meta.candidate_shape == (32, 256)
    assert sprc.encode_candidates(images).shape == (2, 32, 256)


@pytest.mark.weights
@pytest.mark.parametrize("name", ["fashionblip2", "sprc"])
def test_vitg_builds_from_the_published_weights(name):
    model = build_model(f"{name}:vitg")
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        query, candidates = model.encode_query(images, ["is red"]), model.encode_candidates(images)
    assert query.shape[1:] == model.meta.query_shape and candidates.shape[1:] == model.meta.candidate_shape
