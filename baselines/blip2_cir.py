"""What FashionBLIP-2 and SPRC share: a BLIP-2 backbone, the CIR interface, model folders, building.

Their model folders are the zoo's one format (``cirbench.model_folder``) with ``backbone/`` (the
backbone's Blip2Config and tokenizer, no weights) as the structure file: ``build_blip2_model``
rebuilds the structure from it and loads the weights, with no hub access and no pickle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import nn

from cirbench.backbones.blip2 import (
    BLIP2_HUB_NAME,
    Blip2Backbone,
    blip2_backbone_skeleton,
    load_blip2_backbone,
    resolve_synth_backbone_dir,
    tiny_blip2_backbone,
)
from cirbench.backbones.blip2_processing import preprocess_image
from cirbench.interface import ModelMeta, check_training
from cirbench.model_folder import (
    keep_state_hash,
    load_model_weights,
    read_model_folder,
    read_options,
    state_dict_sha256,
    write_model_folder,
)
from cirbench.scorers import ScorerSimilarity
from cirbench.losses import Scores, in_batch_contrastive

BLIP2_VARIANTS = ("vitg", "test_tiny", "synth_tiny")


class Blip2CIRModel(ScorerSimilarity, nn.Module):
    """Base of the BLIP-2 CIR models. Subclasses define the encoders, losses and trainable parts."""

    name: ClassVar[str]
    Options: ClassVar[type]  # a dataclass of JSON-serialisable build options
    stages: ClassVar[tuple[str, ...]]
    tasks: ClassVar[tuple[str, ...]]
    meta: ModelMeta

    def __init__(self, backbone: Blip2Backbone, options: Any, variant: str):
        super().__init__()
        self.backbone = backbone
        self.options = options
        self.variant = variant

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return preprocess_image(image, self.backbone.image_size)

    def image_embeds(self, images: torch.Tensor) -> torch.Tensor:
        """ViT tokens [B, P, D] of preprocessed images.

        With ``options.cache_image_features`` and no gradient to flow into the image tower (its
        weights frozen for the stage, or evaluation), each distinct image is encoded once and its
        tokens kept in memory, keyed by its pixels: training stages that freeze the ViT (and the
        adapters) re-read the same images every epoch, and an evaluation encodes each gallery image
        as a candidate and again as a reference. Any change to the tower's weights empties the
        cache. Meant for small models: a ViT-g's tokens take 1.4 MB per image.
        """
        tower = self._image_tower_parameters()
        frozen = not torch.is_grad_enabled() or not any(p.requires_grad for p in tower)
        if not (getattr(self.options, "cache_image_features", False) and frozen):
            return self.backbone.encode_image(images)
        version = tuple((p.data_ptr(), p._version) for p in tower)
        if getattr(self, "_image_cache_version", None) != version:
            self._image_cache: dict[bytes, torch.Tensor] = {}
            self._image_cache_version = version
        keys = [hashlib.blake2b(image.detach().cpu().numpy().tobytes(), digest_size=16).digest() for image in images]
        first = {key: row for row, key in reversed(list(enumerate(keys)))}  # each new image's first row
        new = [key for key in first if key not in self._image_cache]
        if new:
            with torch.no_grad():
                self._image_cache.update(zip(new, self.backbone.encode_image(images[[first[key] for key in new]])))
        return torch.stack([self._image_cache[key] for key in keys])

    def _image_tower_parameters(self) -> list[nn.Parameter]:
        """What the ViT tokens depend on: the ViT and, where the model has them, its adapters."""
        adapters = getattr(self, "adapters", None)
        return [*self.backbone.blip.vision_model.parameters(), *(adapters.parameters() if adapters is not None else ())]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.backbone.tokenize(texts, self.options.max_text_len)

    def contrastive(
        self,
        queries: torch.Tensor,
        targets: torch.Tensor,
        scores: Scores,
        logit_scale: nn.Parameter,
        ids: Sequence[str],
    ) -> torch.Tensor:
        """In-batch loss (targets gathered across ranks under torchrun), learnable temperature capped at 1/100."""
        scale = logit_scale.clamp(max=math.log(100)).exp()
        return in_batch_contrastive(queries, targets, lambda q, t: scores(q, t) * scale, ids)

    def trainable_parts(self, stage: str) -> list[nn.Module | nn.Parameter]:
        """The modules and parameters that a training ``stage`` updates; everything else is frozen."""
        raise NotImplementedError

    def set_trainable(self, stage: str) -> None:
        check_training(self, stage=stage)
        self.requires_grad_(False)
        for part in self.trainable_parts(stage):
            part.requires_grad_(True)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute ViT and Q-Former layer activations during backward (memory for the ViT-g at batch 512).

        Non-reentrant: the frozen ViT's inputs need no grad for the adapters inside it to get theirs.
        """
        from cirbench.compat import disable_activation_checkpointing, enable_activation_checkpointing

        if enable:
            enable_activation_checkpointing(self.backbone.blip, {"use_reentrant": False})
        else:
            disable_activation_checkpointing(self.backbone.blip)

    def hold_in_bf16(self) -> None:
        """For a model built only to be evaluated at bf16: the ViT's weights in bf16 (frozen in every
        stage; BLIP-2 itself runs it in half precision), the Q-Former left fp32 under autocast, as
        transformers keeps it. Irreversible. The checkpoint hash stays that of the weights as
        loaded: results name the checkpoint, not the cast."""
        identity = self.checkpoint_hash()
        self.backbone.blip.vision_model.to(torch.bfloat16)
        keep_state_hash(self, identity)

    def checkpoint_hash(self) -> str:
        return state_dict_sha256(self)

    def save_pretrained(self, directory: str | Path) -> None:
        """A model folder (``cirbench.model_folder``) with ``backbone/`` as its structure file."""
        write_model_folder(self, directory, self.options)
        self.backbone.save_pretrained(Path(directory) / "backbone", weights=False)


def initial_backbone(variant: str, backbone_dir: str | None, seed: int) -> Blip2Backbone:
    """The backbone a fresh (not checkpointed) model starts from."""
    if variant == "vitg":
        return load_blip2_backbone(backbone_dir or BLIP2_HUB_NAME)
    if variant == "test_tiny":
        return tiny_blip2_backbone(seed)
    if variant == "synth_tiny":
        return load_blip2_backbone(resolve_synth_backbone_dir(backbone_dir))
    raise ValueError(f"unknown BLIP-2 variant {variant!r}; variants: {', '.join(BLIP2_VARIANTS)}")


def build_blip2_model(
    model_cls: type[Blip2CIRModel], variant: str, checkpoint: str | None, overrides: dict
) -> Blip2CIRModel:
    """A fresh model of ``variant``, or the one saved in ``checkpoint`` (options there, then overrides).

    New heads are drawn from ``options.seed``, so the same build gives the same weights.
    """
    if checkpoint is None:
        options = read_options(model_cls.Options, overrides)
        backbone = initial_backbone(variant, options.backbone_dir, options.seed)
    else:
        saved = read_model_folder(checkpoint, model_cls.name, variant)
        options = read_options(model_cls.Options, overrides, saved, checkpoint)
        backbone = blip2_backbone_skeleton(Path(checkpoint) / "backbone")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        model = model_cls(backbone, options, variant)
    if checkpoint is not None:
        load_model_weights(model, checkpoint)
        model.meta = dataclasses.replace(model.meta, trained_on=tuple(saved["trained_on"]))
    return model.eval()
