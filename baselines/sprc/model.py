"""SPRC (Bai et al., ICLR 2024, "Sentence-level Prompts Benefit Composed Image Retrieval").

What SPRC's public code computes (``Blip2QformerCirAlignPrompt`` in its modified LAVIS), on
transformers' BLIP-2; ``tests/parity`` checks every pass and loss against outputs of that code:

- Pass 1 (fused): the reference image and the text through the Q-Former (``query_length=32``);
  the 32 query outputs are the sentence-level prompt.
- Pass 2 (no image): [prompt, text] through the Q-Former with ``query_length=0``: every token,
  prompt included, takes the text feed-forward and nothing cross-attends (SPRC's modified
  Q-Former does the same when no image is given); position embeddings on the text only. The
  text [CLS] (index 32) -> text projection -> the 256-d query.
- Candidates: the 32 image-only Q-Former outputs through the vision projection, [32, 256];
  score = max over the 32 tokens of the cosine (scorer ``maxsim``).
- Losses, summed with weights (1, 1, 1 on FashionIQ in SPRC's script), all cross-entropies of
  ``score / temp`` towards the own target among the batch's targets:
  ``cir`` (SPRC's ``loss_itc``: the query above), ``cir_learnable_prompt`` (``loss_rtc``: the
  learnable prompt tokens inserted after the text's [CLS], [CLS, prompt x 32, text tokens 1..],
  with position embeddings over that whole sequence, every token through the text feed-forward,
  the feature read at position 0) and ``prompt_align`` (``loss_align``: MSE pulling the mean
  image prompt towards the mean of the detached learnable prompt).
- Temperature: SPRC's form, a learnable ``temp`` initialised at 0.07 that divides the scores and
  is never clamped (not the log-scale, capped-at-100 parameter of the other models here), so the
  training dynamics (its gradient and its optimizer state) are SPRC's and an SPRC checkpoint's
  ``temp`` loads as is.
- Text: SPRC runs LAVIS's ``blip_caption`` processor over every text, then BERT word pieces
  ([CLS] text [SEP], no [DEC]), truncated at 32 (``max_txt_len``).
- Images: SPRC trains and evaluates FashionIQ with CLIP4Cir's "targetpad" (ratio 1.25, 224 px),
  the default here; ``image_preprocess="resize"`` is BLIP-2's own square resize.

One deliberate difference: a target that appears twice in a batch is not a negative of itself
here (the zoo's in-batch loss masks it); SPRC's loss counts it as one. With distinct targets
(``target_ids`` all different) the losses are SPRC's exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cirbench.backbones.blip2 import Blip2Backbone
from cirbench.backbones.blip2_processing import BLIP2_MEAN, BLIP2_STD, blip_caption
from cirbench.backbones.targetpad import targetpad_transform
from cirbench.baselines.blip2_cir import Blip2CIRModel, build_blip2_model
from cirbench.baselines.options import SprcOptions
from cirbench.interface import CIRBatch, ModelMeta, check_training
from cirbench.losses import in_batch_contrastive


class Sprc(Blip2CIRModel):
    name = "sprc"
    Options = SprcOptions
    stages = ("finetune",)
    tasks = ("cir",)

    def __init__(self, backbone: Blip2Backbone, options: SprcOptions, variant: str):
        super().__init__(backbone, options, variant)
        prompt = torch.empty(1, backbone.num_query_tokens, backbone.hidden_size)
        nn.init.normal_(prompt, std=backbone.config.qformer_config.initializer_range)
        self.learnable_prompt = nn.Parameter(prompt)  # SPRC's prompt_tokens
        self.temp = nn.Parameter(torch.tensor(float(options.init_temperature)))
        self._targetpad = targetpad_transform(backbone.image_size, BLIP2_MEAN, BLIP2_STD)
        self.meta = ModelMeta(
            name=self.name,
            variant=variant,
            scorer="maxsim",
            query_shape=(backbone.embed_dim,),
            candidate_shape=(backbone.num_query_tokens, backbone.embed_dim),
            image_size=backbone.image_size,
        )

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        if self.options.image_preprocess == "targetpad":
            return self._targetpad(image)
        return super().preprocess(image)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if self.options.text_processor == "blip_caption":
            texts = [blip_caption(text) for text in texts]
        return super().tokenize(texts)

    def sentence_prompt(self, ref_images: torch.Tensor, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pass 1: the query outputs of the fused image + text pass, [B, 32, D]."""
        fused = self.backbone.query_image_text(self.image_embeds(ref_images), tokens)
        return fused[:, : self.backbone.num_query_tokens]

    def prompted_query(self, prompt: torch.Tensor, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pass 2: [prompt, text] without the image; the text [CLS] projected to [B, 256]."""
        text_cls = self.backbone.text_with_prefix(prompt, tokens)[:, prompt.shape[1]]
        return self.backbone.blip.text_projection(text_cls)

    def learnable_prompt_pass(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """SPRC's learnable-prompt pass: [CLS, prompt x 32, text tokens 1..] -> [B, 32 + L, D].

        Position embeddings run over the whole sequence (the prompt takes positions 1..32), no image,
        every token through the text feed-forward (``query_length=0``).
        """
        blip = self.backbone.blip
        ids, text_mask = tokens["input_ids"], tokens["attention_mask"]
        words = blip.embeddings.word_embeddings(ids)
        prompt = self.learnable_prompt.expand(ids.shape[0], -1, -1).to(words.dtype)
        sequence = torch.cat([words[:, :1], prompt, words[:, 1:]], dim=1)
        positions = torch.arange(sequence.shape[1], device=ids.device)
        sequence = sequence + blip.embeddings.position_embeddings(positions)[None]
        # SPRC passes the mask as [ones(32), text mask] over this sequence; since [CLS] is never
        # masked that is the same mask as the one aligned with the tokens, built here.
        prompt_mask = torch.ones(ids.shape[0], prompt.shape[1], dtype=text_mask.dtype, device=text_mask.device)
        mask = torch.cat([text_mask[:, :1], prompt_mask, text_mask[:, 1:]], dim=1)
        return blip.qformer(query_embeds=sequence, query_length=0, attention_mask=mask).last_hidden_state

    def learnable_prompt_query(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """The learnable-prompt pass's [CLS] (position 0) projected to [B, 256]."""
        return self.backbone.blip.text_projection(self.learnable_prompt_pass(tokens)[:, 0])

    def encode_query(self, ref_images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenize(texts)
        return self.prompted_query(self.sentence_prompt(ref_images, tokens), tokens)

    def encode_candidates(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone.query_image(self.image_embeds(images))
        return self.backbone.blip.vision_projection(tokens)

    def training_losses(self, batch: CIRBatch, tasks: Sequence[str] = ("cir",)) -> dict[str, torch.Tensor]:
        check_training(self, tasks=tasks)
        return self.losses(batch.ref_images, self.tokenize(batch.texts), batch.target_images, batch.target_ids)

    def losses(
        self,
        ref_images: torch.Tensor,
        tokens: dict[str, torch.Tensor],
        target_images: torch.Tensor,
        target_ids: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """SPRC's three weighted losses from already tokenized texts.

        Args:
            ref_images: [B, 3, H, W] preprocessed reference images.
            tokens: ``input_ids`` and ``attention_mask`` [B, L] of the modification texts.
            target_images: [B, 3, H, W] preprocessed target images.
            target_ids: one id per target; a repeated id is not a negative of itself.
        """
        prompt = self.sentence_prompt(ref_images, tokens)
        learnable = self.learnable_prompt.expand(prompt.shape[0], -1, -1)
        targets = self.encode_candidates(target_images)

        def against_targets(queries: torch.Tensor) -> torch.Tensor:
            return in_batch_contrastive(queries, targets, lambda q, t: self.similarity(q, t) / self.temp, target_ids)

        return {
            "cir": against_targets(self.prompted_query(prompt, tokens)),
            "cir_learnable_prompt": self.options.learnable_prompt_weight * against_targets(self.learnable_prompt_query(tokens)),
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
            self.temp,
        ]


def build(variant: str, checkpoint: str | None = None, **overrides) -> Sprc:
    """``sprc:{vitg,test_tiny,synth_tiny}``; overrides are ``SprcOptions`` fields."""
    return build_blip2_model(Sprc, variant, checkpoint, overrides)
