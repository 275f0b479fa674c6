"""Zero-shot CLIP baselines: no training, the query is the reference image alone, the modification
text alone, or the normalised sum of both; candidates are CLIP image embeddings; cosine scoring.

``ClipCIRModel`` is the shared base of the CLIP family (these baselines and CLIP4CIR): an open_clip
backbone, its preprocessing, cosine scoring, and model folders that carry open_clip's architecture
config (``open_clip_config.json``) next to ``config.json`` + ``model.safetensors``, so a checkpoint
rebuilds offline with ``build(variant, checkpoint=dir)``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cirbench.backbones.clip import ClipBackbone, backbone_for_variant, load_clip, local_dir
from cirbench.interface import ModelMeta
from cirbench.scorers import get_scorer
from cirbench.train.checkpoint import (
    load_model_weights,
    read_model_config,
    state_dict_sha256,
    write_model_folder,
)

# variant -> (open_clip model name, pretrained tag); the names in baselines/zoo.py
REAL_VARIANTS = {
    "vit_l14_openai": ("ViT-L-14", "openai"),
    "vit_b32_openai": ("ViT-B-32", "openai"),
    "rn50x4_openai": ("RN50x4", "openai"),
}


class ClipCIRModel(nn.Module):
    """Base of the CLIP family: one open_clip backbone, cosine scoring, [D] query and candidate.

    Subclasses define ``encode_query``; trainable ones also ``stages``, ``tasks``,
    ``set_trainable`` and ``training_losses``."""

    name = ""  # registry name
    description = ""
    stages: tuple[str, ...] = ()  # zero-shot: nothing to train
    tasks: tuple[str, ...] = ()

    def __init__(self, backbone: ClipBackbone, variant: str, *, trained_on: Sequence[str] = (),
                 pad_ratio: float | None = None):
        super().__init__()
        self.backbone = backbone
        self.pad_ratio = pad_ratio
        dim = backbone.embed_dim
        self.meta = ModelMeta(
            name=self.name, variant=variant, scorer="cosine", query_shape=(dim,), candidate_shape=(dim,),
            image_size=backbone.image_size, trained_on=tuple(trained_on), description=self.description,
        )
        self._transform = backbone.image_transform(pad_ratio)
        self._scorer = get_scorer("cosine")

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._transform(image)

    def encode_candidates(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.encode_image(images)

    def similarity(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self._scorer(q, c)

    def checkpoint_hash(self) -> str:
        return state_dict_sha256(self)

    def options(self) -> dict[str, Any]:
        """Constructor options that ``save_pretrained`` records and a reload passes back."""
        return {"trained_on": list(self.meta.trained_on), "pad_ratio": self.pad_ratio}

    def save_pretrained(self, directory: str | Path) -> None:
        config = {"name": self.meta.name, "variant": self.meta.variant, "options": self.options()}
        write_model_folder(self, directory, config)
        self.backbone.save_open_clip(directory, weights=False)


class ClipImageOnly(ClipCIRModel):
    name = "clip_image_only"
    description = "zero-shot CLIP: the reference image alone (ignores the text)"

    def encode_query(self, ref_images, texts):
        return self.backbone.encode_image(ref_images)


class ClipTextOnly(ClipCIRModel):
    name = "clip_text_only"
    description = "zero-shot CLIP: the modification text alone (ignores the image)"

    def encode_query(self, ref_images, texts):
        return self.backbone.encode_text(texts)


class ClipSum(ClipCIRModel):
    name = "clip_sum"
    description = "zero-shot CLIP: normalised image embedding + normalised text embedding"

    def encode_query(self, ref_images, texts):
        image = F.normalize(self.backbone.encode_image(ref_images), dim=-1)
        text = F.normalize(self.backbone.encode_text(texts), dim=-1)
        return F.normalize(image + text, dim=-1)


def build_clip_model(
    cls: type[ClipCIRModel],
    variant: str,
    checkpoint: str | None,
    real_variants: dict[str, tuple[str, str]],
    *,
    backbone_dir: str | Path | None = None,
    seed: int = 0,
    **options: Any,
) -> ClipCIRModel:
    """Build ``cls`` on its variant's backbone, or restore it from a model folder.

    ``backbone_dir`` points ``synth_tiny`` at a pre-trained tiny CLIP (default: $CIRBENCH_SYNTH_CLIP, else the installed one)
    and a real variant at a local copy of its weights;
    ``seed`` fixes the random initialisation of what is not pre-trained; other ``options`` go to
    the model (a checkpoint's recorded options are the defaults).
    """
    _check_options(cls, options)
    if checkpoint:
        config = read_model_config(checkpoint, cls.name)
        backbone = load_clip(local_dir(checkpoint), load_weights=False)
        model = cls(backbone, config["variant"], **{**config["options"], **options})
        load_model_weights(model, checkpoint)
        return model.eval()
    backbone = backbone_for_variant(variant, real_variants, backbone_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(backbone, variant, **options)
    return model.eval()


def _check_options(cls: type[ClipCIRModel], options: dict[str, Any]) -> None:
    accepted = {
        name for klass in cls.__mro__ if issubclass(klass, ClipCIRModel)
        for name, parameter in inspect.signature(klass.__init__).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"{cls.name}: unknown option(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(accepted | {'backbone_dir', 'seed'}))}"
        )


def build_image_only(variant: str, checkpoint: str | None = None, **overrides: Any) -> ClipCIRModel:
    return build_clip_model(ClipImageOnly, variant, checkpoint, REAL_VARIANTS, **overrides)


def build_text_only(variant: str, checkpoint: str | None = None, **overrides: Any) -> ClipCIRModel:
    return build_clip_model(ClipTextOnly, variant, checkpoint, REAL_VARIANTS, **overrides)


def build_sum(variant: str, checkpoint: str | None = None, **overrides: Any) -> ClipCIRModel:
    return build_clip_model(ClipSum, variant, checkpoint, REAL_VARIANTS, **overrides)
