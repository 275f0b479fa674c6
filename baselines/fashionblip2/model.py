"""FashionBLIP-2 (FACap paper, section 4) on transformers' BLIP-2 image-text-retrieval model.

- Image encoder: the BLIP-2 ViT, frozen, with a bottleneck adapter in every layer (``use_adapters``).
- Query: the Q-Former fuses the reference image with the modification text (32 query tokens,
  text up to 128 word pieces); the 32 query outputs go to the matcher.
- Candidates: the same Q-Former on the image alone, the same matcher.
- Matcher (``matching="multihead"``): token mixing 32 -> 12 and channel mixing 768 -> 256, shared
  by queries and candidates; score = sum of the 12 per-head cosines (scorer ``multihead``).
  ``matching="global"`` (paper ablation): mean of the 32 tokens -> 768 -> 256, one cosine.
- Tasks: ``cir`` (query retrieves its target image among the batch's targets) and ``ctr``
  (composed-to-text retrieval: the query retrieves its target's caption among the batch's
  captions). A caption is embedded by the Q-Former's text-only pass; its [CLS] output goes through
  the matcher's channel mixing, the same weights as for images, and is compared with every head
  of the query: score = mean over heads of cos(q_h, caption). Both are in-batch contrastive losses
  with one shared learnable temperature; a target appearing twice in a batch is not its own negative.
- Stages: ``pretrain`` (stage 1, FACap: adapters, Q-Former, matcher) and ``finetune`` (stage 2,
  FashionIQ: the same without the adapters). The ViT itself is always frozen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from cirbench.backbones.adapters import VisionAdapters
from cirbench.backbones.blip2 import Blip2Backbone
from cirbench.baselines.blip2_cir import Blip2CIRModel, build_blip2_model
from cirbench.baselines.options import FashionBlip2Options
from cirbench.interface import CIRBatch, ModelMeta, check_training


class MultiHeadMatcher(nn.Module):
    """Token mixing (tokens -> heads) then channel mixing (width -> head_dim)."""

    def __init__(self, num_tokens: int, width: int, num_heads: int, head_dim: int):
        super().__init__()
        self.token_mixing = nn.Linear(num_tokens, num_heads)
        self.channel_mixing = nn.Linear(width, head_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, tokens, width] -> [B, heads, head_dim]."""
        return self.channel_mixing(self.token_mixing(tokens.transpose(1, 2)).transpose(1, 2))

    def embed_token(self, token: torch.Tensor) -> torch.Tensor:
        """One token per item [B, width] -> [B, head_dim] in the heads' space."""
        return self.channel_mixing(token)


class GlobalMatcher(nn.Module):
    """Mean of the tokens, then one projection: the ablation without multi-head matching."""

    def __init__(self, width: int, head_dim: int):
        super().__init__()
        self.projection = nn.Linear(width, head_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.projection(tokens.mean(dim=1))

    def embed_token(self, token: torch.Tensor) -> torch.Tensor:
        return self.projection(token)


class FashionBlip2(Blip2CIRModel):
    name = "fashionblip2"
    Options = FashionBlip2Options
    stages = ("pretrain", "finetune")
    tasks = ("cir", "ctr")

    def __init__(self, backbone: Blip2Backbone, options: FashionBlip2Options, variant: str):
        super().__init__(backbone, options, variant)
        vision_width = backbone.config.vision_config.hidden_size
        self.adapters = (
            VisionAdapters(backbone.vision_layers, vision_width, options.adapter_reduction)
            if options.use_adapters
            else None
        )
        multihead = options.matching == "multihead"
        self.heads = options.num_heads if multihead else 1
        self.matcher = (
            MultiHeadMatcher(backbone.num_query_tokens, backbone.hidden_size, options.num_heads, options.head_dim)
            if multihead
            else GlobalMatcher(backbone.hidden_size, options.head_dim)
        )
        # One temperature for both tasks: every trainable parameter is used whatever the tasks (DDP needs that).
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / options.init_temperature)))
        shape = (options.num_heads, options.head_dim) if multihead else (options.head_dim,)
        self.meta = ModelMeta(
            name=self.name,
            variant=variant,
            scorer="multihead" if multihead else "cosine",
            query_shape=shape,
            candidate_shape=shape,
            image_size=backbone.image_size,
        )

    def encode_query(self, ref_images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        image_embeds = self.image_embeds(ref_images)
        fused = self.backbone.query_image_text(image_embeds, self.tokenize(texts))
        return self.matcher(fused[:, : self.backbone.num_query_tokens])

    def encode_candidates(self, images: torch.Tensor) -> torch.Tensor:
        return self.matcher(self.backbone.query_image(self.image_embeds(images)))

    def encode_captions(self, captions: Sequence[str]) -> torch.Tensor:
        """Captions -> [N, head_dim]: text-only Q-Former [CLS] through the matcher's channel projection."""
        text_cls = self.backbone.text_with_prefix(None, self.tokenize(captions))[:, 0]
        return self.matcher.embed_token(text_cls)

    def mean_head_similarity(self, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """The score divided by the head count, so the temperature means the same for any number of heads."""
        return self.similarity(queries, candidates) / self.heads

    def caption_scores(self, queries: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        """[B, N]: mean over the query's heads of the cosine with each caption vector."""
        if queries.dim() == 3:
            captions = captions.unsqueeze(1).expand(-1, queries.shape[1], -1)
        return self.mean_head_similarity(queries, captions)

    def training_losses(self, batch: CIRBatch, tasks: Sequence[str] = ("cir",)) -> dict[str, torch.Tensor]:
        check_training(self, tasks=tasks)
        queries = self.encode_query(batch.ref_images, batch.texts)
        losses = {}
        if "cir" in tasks:
            targets = self.encode_candidates(batch.target_images)
            losses["cir"] = self.contrastive(
                queries, targets, self.mean_head_similarity, self.logit_scale, batch.target_ids
            )
        if "ctr" in tasks:
            if not batch.target_captions:
                raise ValueError("the ctr task needs batch.target_captions (the targets' long captions, as in FACap)")
            captions = self.encode_captions(batch.target_captions)
            losses["ctr"] = self.contrastive(queries, captions, self.caption_scores, self.logit_scale, batch.target_ids)
        return losses

    def trainable_parts(self, stage: str) -> list[nn.Module | nn.Parameter]:
        blip = self.backbone.blip
        parts = [blip.query_tokens, blip.embeddings, blip.qformer, self.matcher, self.logit_scale]
        if stage == "pretrain" and self.adapters is not None:
            parts.append(self.adapters)
        return parts


def build(variant: str, checkpoint: str | None = None, **overrides) -> FashionBlip2:
    """``fashionblip2:{vitg,test_tiny,synth_tiny}``; overrides are ``FashionBlip2Options`` fields."""
    return build_blip2_model(FashionBlip2, variant, checkpoint, overrides)
