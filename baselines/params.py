"""Parameter counts of the full-size models, from their real classes built on the meta device.

No weights are allocated or downloaded: the ViT-g BLIP-2 configuration (transformers' default
sizes, Q-Former text layers on) is instantiated on ``torch.device("meta")`` with the same
FashionBLIP-2 / SPRC code that the ``vitg`` variants run. ``cirbench models --params`` prints them.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import torch
from torch import nn
from transformers import Blip2ForImageTextRetrieval

from cirbench.backbones.blip2 import Blip2Backbone
from cirbench.backbones.blip2_configs import vitg_blip2_config
from cirbench.baselines.fashionblip2.model import FashionBlip2
from cirbench.baselines.options import FashionBlip2Options, SprcOptions
from cirbench.baselines.sprc.model import Sprc


def count(module: nn.Module | nn.Parameter, trainable_only: bool = False) -> int:
    params = [module] if isinstance(module, nn.Parameter) else module.parameters()
    return sum(p.numel() for p in params if p.requires_grad or not trainable_only)


def vitg_backbone_on_meta(tokenizer=None) -> Blip2Backbone:
    """The ViT-g retrieval BLIP-2 as a structure without weights (``tokenizer`` only for forward shape checks)."""
    with torch.device("meta"):
        return Blip2Backbone(Blip2ForImageTextRetrieval(vitg_blip2_config()), tokenizer)


def fashionblip2_vitg_on_meta(tokenizer=None, **options) -> FashionBlip2:
    backbone = vitg_backbone_on_meta(tokenizer)
    with torch.device("meta"):
        return FashionBlip2(backbone, FashionBlip2Options(**options), "vitg")


def sprc_vitg_on_meta(tokenizer=None, **options) -> Sprc:
    backbone = vitg_backbone_on_meta(tokenizer)
    with torch.device("meta"):
        return Sprc(backbone, SprcOptions(**options), "vitg")


def full_size_parameter_counts() -> list[tuple[str, int]]:
    """(what, number of parameters) for the ViT-g BLIP-2 parts, FashionBLIP-2, SPRC and CLIP RN50x4."""
    fashionblip2 = fashionblip2_vitg_on_meta()
    blip = fashionblip2.backbone.blip
    rows = [
        ("BLIP-2 ViT-g vision tower", count(blip.vision_model)),
        ("BLIP-2 Q-Former layers (with text layers)", count(blip.qformer)),
        ("BLIP-2 Q-Former word and position embeddings", count(blip.embeddings)),
        ("BLIP-2 query tokens (32 x 768)", count(blip.query_tokens)),
        ("Blip2ForImageTextRetrieval, total", count(blip)),
        ("FashionBLIP-2 adapter, one ViT layer (1408 -> 88 -> 1408)", count(fashionblip2.adapters.adapters[0])),
        (f"FashionBLIP-2 adapters, {len(fashionblip2.adapters.adapters)} ViT layers", count(fashionblip2.adapters)),
        ("FashionBLIP-2 multi-head matcher (32 -> 12 tokens, 768 -> 256 channels)", count(fashionblip2.matcher)),
        ("FashionBLIP-2, total", count(fashionblip2)),
    ]
    for stage in fashionblip2.stages:
        fashionblip2.set_trainable(stage)
        rows.append((f"FashionBLIP-2 trainable in stage {stage!r}", count(fashionblip2, trainable_only=True)))
    sprc = sprc_vitg_on_meta()
    sprc.set_trainable("finetune")
    rows += [
        ("SPRC learnable prompt (32 x 768)", count(sprc.learnable_prompt)),
        ("SPRC, total", count(sprc)),
        ("SPRC trainable in stage 'finetune'", count(sprc, trainable_only=True)),
        ("CLIP RN50x4 (open_clip, CLIP4CIR's backbone)", count(_clip_rn50x4_on_meta())),
    ]
    return rows


def _clip_rn50x4_on_meta() -> nn.Module:
    import open_clip

    with _quiet_root_logger(), torch.device("meta"):
        return open_clip.create_model("RN50x4", pretrained=None, device="meta")


@contextmanager
def _quiet_root_logger():
    """open_clip warns that no pretrained weights were loaded: expected here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
