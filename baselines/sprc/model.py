"""SPRC (Bai et al., ICLR 2024, "Sentence-level Prompts Benefit Composed Image Retrieval").

Facts from SPRC's public code (``blip2_qformer_cir_align_prompt``), on transformers' BLIP-2:

- Pass 1 (fused): the reference image and the text through the Q-Former (``query_length=32``);
  the 32 query outputs are the sentence-level prompt.
- Pass 2 (no image): [prompt, text] through the Q-Former with ``query_length=0``: every token,
  prompt included, takes the text feed-forward and nothing cross-attends (SPRC's modified
  Q-Former does the same when no image is given). The text [CLS] (index 32) -> text projection
  -> the 256-d query.
- Candidates: the 32 image-only Q-Former outputs through the vision projection, [32, 256];
  score = max over the 32 tokens of the cosine (scorer ``maxsim``).
- Losses, summed with weights (1, 1, 1 on FashionIQ in SPRC's script): ``cir`` (query vs the
  batch's targets), ``cir_learnable_prompt`` (the same with learnable prompt tokens in place of
  the image prompt) and ``prompt_align`` (MSE pulling the mean image prompt towards the mean of the
  detached learnable prompt).

Deliberate simplification: SPRC's code places the learnable prompt after the text's [CLS] and
positions it; here both branches use the same [prompt, text] layout, so they differ only in the
prompt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cirbench.backbones.blip2 import Blip2Backbone
from cirbench.baselines.blip2_cir import Blip2CIRModel, build_blip2_model
from cirbench.interface import CIRBatch, ModelMeta


@dataclass
class SprcOptions:
    max_text_len: int = 32  # SPRC's max_txt_len
    learnable_prompt_weight: float = 1.0
    align_weight: float = 1.0
    init_temperature: float = 0.07
    backbone_dir: str | None = None  # vitg: a local copy of the weights; synth_tiny: the tiny backbone
    cache_image_features: bool = False  # frozen image tower: encode each image once (Blip2CIRModel.image_embeds)
    seed: int = 0  # initialises the learnable prompt (and test_tiny's backbone)


class Sprc(Blip2CIRModel):
    name = "sprc"
    Options = SprcOptions
    stages = ("finetune",)
    tasks = ("cir",)

    def __init__(self, backbone: Blip2Backbone, options: SprcOptions, variant: str):
        super().__init__(backbone, options, variant)
        prompt = torch.empty(1, backbone.num_query_tokens, backbone.hidden_size)
        nn.init.normal_(prompt, std=backbone.config.qformer_config.initializer_range)
        self.learnable_prompt = nn.Parameter(prompt)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / options.init_temperature)))
        self.meta = ModelMeta(
            name=self.name,
            variant=variant,
            scorer="maxsim",
            query_shape=(backbone.embed_dim,),
            candidate_shape=(backbone.num_query_tokens, backbone.embed_dim),
            image_size=backbone.image_size,
            description="SPRC: sentence-level prompt from the fused Q-Former, max over 32 candidate tokens",
        )

    def sentence_prompt(self, ref_images: torch.Tensor, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pass 1: the query outputs of the fused image + text pass, [B, 32, D]."""
        fused = self.backbone.query_image_text(self.image_embeds(ref_images), tokens)
        return fused[:, : self.backbone.num_query_tokens]

    def prompted_query(self, prompt: torch.Tensor, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pass 2: [prompt, text] without the image; the text [CLS] projected to [B, 256]."""
        text_cls = self.backbone.text_with_prefix(prompt, tokens)[:, prompt.shape[1]]
        return self.backbone.blip.text_projection(text_cls)

    def encode_query(self, ref_images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenize(texts)
        return self.prompted_query(self.sentence_prompt(ref_images, tokens), tokens)

    def encode_candidates(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone.query_image(self.image_embeds(images))
        return self.backbone.blip.vision_projection(tokens)

    def training_losses(self, batch: CIRBatch, tasks: Sequence[str] = ("cir",)) -> dict[str, torch.Tensor]:
        self.check_tasks(tasks)
        tokens = self.tokenize(batch.texts)
        prompt = self.sentence_prompt(batch.ref_images, tokens)
        learnable = self.learnable_prompt.expand(prompt.shape[0], -1, -1)
        targets = self.encode_candidates(batch.target_images)

        def loss_against_targets(query_prompt: torch.Tensor) -> torch.Tensor:
            query = self.prompted_query(query_prompt, tokens)
            return self.contrastive(query, targets, self.similarity, self.logit_scale, batch.target_ids)

        return {
            "cir": loss_against_targets(prompt),
            "cir_learnable_prompt": self.options.learnable_prompt_weight * loss_against_targets(learnable),
            "prompt_align": self.options.align_weight * F.mse_loss(prompt.mean(dim=1), learnable.detach().mean(dim=1)),
        }

    def trainable_parts(self, stage: str) -> list[nn.Module | nn.Parameter]:
        blip = self.backbone.blip
        return [
            blip.query_tokens,
            blip.embeddings,
            blip.qformer,
            blip.vision_projection,
            blip.text_projection,
            self.learnable_prompt,
            self.logit_scale,
        ]


def build(variant: str, checkpoint: str | None = None, **overrides) -> Sprc:
    """``sprc:{vitg,test_tiny,synth_tiny}``; overrides are ``SprcOptions`` fields."""
    return build_blip2_model(Sprc, variant, checkpoint, overrides)
