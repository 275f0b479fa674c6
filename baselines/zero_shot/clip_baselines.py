"""Zero-shot CLIP baselines: no training, the query is the reference image alone, the modification
text alone, or the normalised sum of both; candidates are CLIP image embeddings; cosine scoring.

``ClipCIRModel`` is the shared base of the CLIP family (these baselines and CLIP4CIR): an open_clip
backbone, its preprocessing, cosine scoring, and model folders (``cirbench.model_folder``) whose
structure file is open_clip's architecture config (``open_clip_config.json``), so a checkpoint
rebuilds offline with ``build(variant, checkpoint=dir)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cirbench.backbones.clip import ClipBackbone, backbone_for_variant, load_clip, local_dir
from cirbench.baselines.options import ClipOptions
from cirbench.interface import ModelMeta
from cirbench.model_folder import (
    load_model_weights,
    read_model_folder,
    read_options,
    state_dict_sha256,
    write_model_folder,
)
from cirbench.scorers import ScorerSimilarity

# variant -> (open_clip model name, pretrained tag); the names in baselines/zoo.py
REAL_VARIANTS = {
    "vit_l14_openai": ("ViT-L-14", "openai"),
    "vit_b32_openai": ("ViT-B-32", "openai"),
    "rn50x4_openai": ("RN50x4", "openai"),
}


class ClipCIRModel(ScorerSimilarity, nn.Module):
    """Base of the CLIP family: one open_clip backbone, cosine scoring, [D] query and candidate.

    Subclasses define ``encode_query``; trainable ones also ``stages``, ``tasks``,
    ``set_trainable`` and ``training_losses``."""

    name = ""  # registry name
    Options: type[ClipOptions] = ClipOptions
    stages: tuple[str, ...] = ()  # zero-shot: nothing to train
    tasks: tuple[str, ...] = ()

    def __init__(self, backbone: ClipBackbone, variant: str, options: ClipOptions | None = None, *,
                 trained_on: Sequence[str] = ()):
        super().__init__()
        self.backbone = backbone
        self.options = options if options is not None else self.Options()
        dim = backbone.embed_dim
        self.meta = ModelMeta(
            name=self.name, variant=variant, scorer="cosine", query_shape=(dim,), candidate_shape=(dim,),
            image_size=backbone.image_size, trained_on=tuple(trained_on),
        )
        self._transform = backbone.image_transform(self.options.pad_ratio)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._transform(image)

    def encode_candidates(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.encode_image(images)

    def checkpoint_hash(self) -> str:
        return state_dict_sha256(self)

    def save_pretrained(self, directory: str | Path) -> None:
        """A model folder (``cirbench.model_folder``) with open_clip's config as its structure file."""
        write_model_folder(self, directory, self.options)
        self.backbone.save_open_clip(directory, weights=False)


class ClipImageOnly(ClipCIRModel):
    name = "clip_image_only"  # zero-shot CLIP: the reference image alone (ignores the text)

    def encode_query(self, ref_images, texts):
        return self.backbone.encode_image(ref_images)


class ClipTextOnly(ClipCIRModel):
    name = "clip_text_only"  # zero-shot CLIP: the modification text alone (ignores the image)

    def encode_query(self, ref_images, texts):
        return self.backbone.encode_text(texts)


class ClipSum(ClipCIRModel):
    name = "clip_sum"  # zero-shot CLIP: normalised image embedding + normalised text embedding

    def encode_query(self, ref_images, texts):
        image = F.normalize(self.backbone.encode_image(ref_images), dim=-1)
        text = F.normalize(self.backbone.encode_text(texts), dim=-1)
        return F.normalize(image + text, dim=-1)


def build_clip_model(
    cls: type[ClipCIRModel],
    variant: str,
    checkpoint: str | None,
    real_variants: dict[str, tuple[str, str]],
    **overrides: Any,
) -> ClipCIRModel:
    """Build ``cls`` on its variant's backbone, or restore it from a model folder.

    ``overrides`` are fields of ``cls.Options`` (a checkpoint's recorded options are the
    defaults): ``backbone_dir`` points ``synth_tiny`` at a pre-trained tiny CLIP (default:
    $CIRBENCH_SYNTH_CLIP, else the installed one) and a real variant at a local copy of its
    weights; ``seed`` fixes the random initialisation of what is not pre-trained.
    """
    if checkpoint:
        config = read_model_folder(checkpoint, cls.name, variant)
        options = read_options(cls.Options, overrides, config, checkpoint)
        backbone = load_clip(local_dir(checkpoint), load_weights=False)
        model = cls(backbone, variant, options, trained_on=config["trained_on"])
        load_model_weights(model, checkpoint)
        return model.eval()
    options = read_options(cls.Options, overrides)
    backbone = backbone_for_variant(variant, real_variants, options.backbone_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        model = cls(backbone, variant, options)
    return model.eval()


def build_image_only(variant: str, checkpoint: str | None = None, **overrides: Any) -> ClipCIRModel:
    return build_clip_model(ClipImageOnly, variant, checkpoint, REAL_VARIANTS, **overrides)


def build_text_only(variant: str, checkpoint: str | None = None, **overrides: Any) -> ClipCIRModel:
    return build_clip_model(ClipTextOnly, variant, checkpoint, REAL_VARIANTS, **overrides)


def build_sum(variant: str, checkpoint: str | None = None, **overrides: Any) -> ClipCIRModel:
    return build_clip_model(ClipSum, variant, checkpoint, REAL_VARIANTS, **overrides)
