"""bf16 evaluation (``eval --precision bf16``) ranks like fp32 on a tiny model, and names itself.

bf16 autocast runs on the CPU too, so the very code path of a CUDA evaluation (autocast, the ViT's
weights held in bf16, fp32 ranking) is checked here against the fp32 evaluation of the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cirbench.eval.evaluator import evaluate, hold_in_bf16
from cirbench.eval.protocols import get_protocol
from cirbench.baselines.zoo import build_model
from fake_cir import make_split

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    return [make_split(root / c, c, n_gallery=32, n_queries=40, seed=i, duplicates=0) for i, c in enumerate(("dress", "shirt"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", ["fashionblip2:test_tiny"])
def test_bf16_ranks_agree_closely_with_fp32(splits, spec, device, tmp_path):
    protocol = get_protocol("fashioniq/v1")
    fp32_model, bf16_model = build_model(spec).to(device), build_model(spec).to(device)
    checkpoint = fp32_model.checkpoint_hash()
    assert hold_in_bf16(bf16_model)
    assert bf16_model.backbone.blip.vision_model.embeddings.patch_embedding.weight.dtype == torch.bfloat16
    assert {p.dtype for p in bf16_model.backbone.blip.qformer.parameters()} == {torch.float32}
    assert bf16_model.checkpoint_hash() == checkpoint  # results name the checkpoint, not its cast

    fp32 = evaluate(fp32_model, splits, protocol, device=device, progress=False, cache_dir=tmp_path)
    bf16 = evaluate(bf16_model, splits, protocol, device=device, progress=False, cache_dir=tmp_path, precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16") and bf16.checkpoint_hash == checkpoint
    assert len(list(tmp_path.glob("*.safetensors"))) == 2 * len(splits)  # one cache entry per precision
    for exact, rounded in zip(fp32.splits, bf16.splits):
        correlation = np.corrcoef(exact.ranks, rounded.ranks)[0, 1]
        assert correlation > 0.98, (spec, exact.category, correlation)  # measured: 0.998 on the CPU
        assert np.mean(np.abs(exact.ranks - rounded.ranks)) < 1.5  # measured: 0.2-0.4 places
    assert any(not np.array_equal(a.ranks, b.ranks) for a, b in zip(fp32.splits, bf16.splits))  # bf16 really ran


def test_an_unknown_precision_is_refused(splits):
    with pytest.raises(ValueError, match="precision"):
        evaluate(build_model("fashionblip2:test_tiny"), splits, get_protocol("fashioniq/v1"), progress=False, precision="fp16")
