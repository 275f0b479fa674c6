"""What FashionBLIP-2 and SPRC share: a BLIP-2 backbone, the CIR interface, checkpoints, building.

A checkpoint folder (``save_pretrained``) is self-contained:

    config.json            {"format", "model", "variant", "options"}: how to rebuild the model
    model.safetensors      every weight of the model, backbone included
    backbone/              the backbone's Blip2Config and tokenizer (no weights)

``build_blip2_model`` rebuilds the structure from it and loads the weights: no hub access, no
pickle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from cirbench.backbones.blip2 import (
    BLIP2_HUB_NAME,
    Blip2Backbone,
    blip2_backbone_skeleton,
    load_blip2_backbone,
    preprocess_image,
    resolve_synth_backbone_dir,
    tiny_blip2_backbone,
)
from cirbench.config import read_section
from cirbench.interface import ModelMeta, check_training
from cirbench.scorers import get_scorer
from cirbench.train.losses import Scores, in_batch_contrastive

CHECKPOINT_FORMAT = "cirbench-model/1"
BLIP2_VARIANTS = ("vitg", "test_tiny", "synth_tiny")


class Blip2CIRModel(nn.Module):
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
        self._hash_cache: tuple[tuple, str] | None = None

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return preprocess_image(image, self.backbone.image_size)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.backbone.tokenize(texts, self.options.max_text_len)

    def similarity(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return get_scorer(self.meta.scorer)(q, c)

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
        self._hash_cache = (self._fingerprint(self.state_dict()), identity)

    def checkpoint_hash(self) -> str:
        """sha256 over the state dict (names, dtypes, shapes, bytes); recomputed only after weights change."""
        state = self.state_dict()
        fingerprint = self._fingerprint(state)
        if self._hash_cache is None or self._hash_cache[0] != fingerprint:
            self._hash_cache = (fingerprint, _sha256_of_state(state))
        return self._hash_cache[1]

    @staticmethod
    def _fingerprint(state: dict[str, torch.Tensor]) -> tuple:
        # Every in-place update (optimizer step, load_state_dict) bumps a tensor's version counter.
        return tuple((name, tensor.data_ptr(), tensor._version) for name, tensor in state.items())

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "format": CHECKPOINT_FORMAT,
            "model": self.name,
            "variant": self.variant,
            "options": dataclasses.asdict(self.options),
            "trained_on": list(self.meta.trained_on),
        }
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_file(
            {name: t.detach().contiguous() for name, t in self.state_dict().items()}, directory / "model.safetensors"
        )
        self.backbone.save_pretrained(directory / "backbone", weights=False)


def _sha256_of_state(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def initial_backbone(variant: str, backbone_dir: str | None, seed: int) -> Blip2Backbone:
    """The backbone a fresh (not checkpointed) model starts from."""
    if variant == "vitg":
        return load_blip2_backbone(backbone_dir or BLIP2_HUB_NAME)
    if variant == "test_tiny":
        return tiny_blip2_backbone(seed)
    if variant == "synth_tiny":
        return load_blip2_backbone(resolve_synth_backbone_dir(backbone_dir))
    raise ValueError(f"unknown BLIP-2 variant {variant!r}; variants: {', '.join(BLIP2_VARIANTS)}")


def make_options(options_cls: type, values: dict[str, Any], source: str | Path = "model options") -> Any:
    """``values`` read as ``options_cls`` by the one section validator (``DataError`` naming the key)."""
    return read_section(options_cls, values, source, "model.overrides")


def read_checkpoint_config(checkpoint: Path, name: str, variant: str) -> dict[str, Any]:
    path = checkpoint / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; a checkpoint folder is written by save_pretrained")
    config = json.loads(path.read_text())
    if config.get("format") != CHECKPOINT_FORMAT or config.get("model") != name:
        raise ValueError(f"{path}: a {config.get('model')!r} checkpoint ({config.get('format')}), not {name!r}")
    if config.get("variant") != variant:
        raise ValueError(f"{path}: holds variant {config.get('variant')!r}, asked for {name}:{variant}")
    return config


def build_blip2_model(
    model_cls: type[Blip2CIRModel], variant: str, checkpoint: str | None, overrides: dict
) -> Blip2CIRModel:
    """A fresh model of ``variant``, or the one saved in ``checkpoint`` (options there, then overrides).

    New heads are drawn from ``options.seed``, so the same build gives the same weights.
    """
    if checkpoint is None:
        options = make_options(model_cls.Options, overrides)
        backbone = initial_backbone(variant, options.backbone_dir, options.seed)
    else:
        saved = read_checkpoint_config(Path(checkpoint), model_cls.name, variant)
        make_options(model_cls.Options, overrides)  # a bad override is named as such, not as the folder's
        options = make_options(model_cls.Options, {**saved["options"], **overrides}, Path(checkpoint) / "config.json")
        backbone = blip2_backbone_skeleton(Path(checkpoint) / "backbone")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        model = model_cls(backbone, options, variant)
    if checkpoint is not None:
        model.load_state_dict(load_file(Path(checkpoint) / "model.safetensors", device=str(model.device)))
        model.meta = dataclasses.replace(model.meta, trained_on=tuple(saved.get("trained_on", ())))
    return model.eval()
