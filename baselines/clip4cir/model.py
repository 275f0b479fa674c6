"""CLIP4CIR (Baldrati et al.), on an open_clip backbone, as its public code trains it.

Stage ``clip_finetune``: both CLIP encoders are fine-tuned with the query normalize(img + txt) of
the raw (unnormalised) features against the normalised target image feature.
Stage ``combiner``: CLIP is frozen and the Combiner learns to fuse the two features:

    t' = Dropout(ReLU(Linear(D, 4D) t))      i' = Dropout(ReLU(Linear(D, 4D) i))
    h  = [t', i']                            (8D)
    λ  = Sigmoid(Linear(8D, 1) Dropout(ReLU(Linear(8D, 8D) h)))
    q  = normalize(Linear(8D, D) Dropout(ReLU(Linear(8D, 8D) h)) + λ t + (1 - λ) i)

Both stages use an in-batch cross-entropy on cosine x 100. CLIP stays in eval mode throughout (the
public code fine-tunes it with ``clip_model.eval()``: frozen batch-norm statistics for the ResNets).
Images go through "targetpad" (pad to 1.25:1, resize, centre crop). Until the Combiner has been
trained, queries are the stage-1 sum; the ``combiner_active`` buffer records the switch, so it is
part of the weights, the checkpoint and the checkpoint hash.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cirbench.backbones.clip import ClipBackbone
from cirbench.baselines.options import Clip4CirOptions
from cirbench.baselines.zero_shot.clip_baselines import ClipCIRModel, build_clip_model
from cirbench.interface import CIRBatch, check_training
from cirbench.losses import in_batch_contrastive, scaled_cosine

REAL_VARIANTS = {
    "rn50x4": ("RN50x4", "openai"),
    "vit_l14": ("ViT-L-14", "openai"),
}


class Combiner(nn.Module):
    """CLIP4Cir's Combiner: projected text and image, a mixing MLP, and a sigmoid-gated residual."""

    def __init__(self, dim: int, projection_dim: int, hidden_dim: int, dropout: float = 0.5):
        super().__init__()
        self.text_projection = _linear_relu_dropout(dim, projection_dim, dropout)
        self.image_projection = _linear_relu_dropout(dim, projection_dim, dropout)
        self.mixer = _linear_relu_dropout(2 * projection_dim, hidden_dim, dropout)
        self.output = nn.Linear(hidden_dim, dim)
        self.gate = nn.Sequential(
            _linear_relu_dropout(2 * projection_dim, hidden_dim, dropout), nn.Linear(hidden_dim, 1), nn.Sigmoid()
        )

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        projected = torch.cat([self.text_projection(text), self.image_projection(image)], dim=-1)
        gate = self.gate(projected)
        return F.normalize(self.output(self.mixer(projected)) + gate * text + (1 - gate) * image, dim=-1)


def _linear_relu_dropout(inputs: int, outputs: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, outputs), nn.ReLU(), nn.Dropout(dropout))


class CLIP4CIR(ClipCIRModel):
    name = "clip4cir"
    Options = Clip4CirOptions
    stages = ("clip_finetune", "combiner")
    tasks = ("cir",)

    def __init__(self, backbone: ClipBackbone, variant: str, options: Clip4CirOptions | None = None, *,
                 trained_on: Sequence[str] = ()):
        super().__init__(backbone, variant, options, trained_on=trained_on)
        options, dim = self.options, backbone.embed_dim
        self.combiner = Combiner(dim, options.projection_factor * dim, options.hidden_factor * dim, options.dropout)
        self.register_buffer("combiner_active", torch.tensor(False))
        self.logit_scale = options.logit_scale

    def fuse(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if self.combiner_active:
            return self.combiner(image, text)
        return F.normalize(image + text, dim=-1)

    def encode_query(self, ref_images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        return self.fuse(self.backbone.encode_image(ref_images), self.backbone.encode_text(texts))

    def set_trainable(self, stage: str) -> None:
        check_training(self, stage=stage)
        self.requires_grad_(False)
        if stage == "clip_finetune":
            self.backbone.requires_grad_(True)
            self.backbone.clip.logit_scale.requires_grad_(False)  # unused: the scale is fixed at 100
        else:
            self.combiner.requires_grad_(True)
        self.combiner_active.fill_(stage == "combiner")

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)

    def train(self, mode: bool = True) -> "CLIP4CIR":
        super().train(mode)
        self.backbone.eval()
        return self

    def training_losses(self, batch: CIRBatch, tasks: Sequence[str] = ("cir",)) -> dict[str, torch.Tensor]:
        check_training(self, tasks=tasks)
        with torch.set_grad_enabled(not bool(self.combiner_active) and torch.is_grad_enabled()):
            reference = self.backbone.encode_image(batch.ref_images)
            text = self.backbone.encode_text(batch.texts)
            target = self.backbone.encode_image(batch.target_images)
        query = self.fuse(reference.float(), text.float())
        loss = in_batch_contrastive(query, target.float(), scaled_cosine(self.logit_scale), batch.target_ids)
        return {"cir": loss}


def build(variant: str, checkpoint: str | None = None, **overrides: Any) -> CLIP4CIR:
    return build_clip_model(CLIP4CIR, variant, checkpoint, REAL_VARIANTS, **overrides)
