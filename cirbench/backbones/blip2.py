"""The BLIP-2 backbone of FashionBLIP-2 and SPRC, on transformers' ``Blip2ForImageTextRetrieval``.

Three ways to get one, same classes each time:

- the real ViT-g image-text-retrieval checkpoint (``Salesforce/blip2-itm-vit-g``) or a local copy,
  loaded with ``from_pretrained`` (weights downloaded beforehand);
- a tiny random one (``tiny_blip2_backbone``) with an in-memory word-piece tokenizer, for tests;
- a tiny one pre-trained on the synthetic world (``cirbench.synth.pretrain``: contrast and
  matching), saved as a folder (config + safetensors + tokenizer) that ``load_blip2_backbone``
  reads back.

``Blip2Backbone`` exposes the Q-Former passes both models need, as the retrieval model runs them:
image-only (32 query tokens cross-attend to the ViT), fused image + text (query tokens first,
``query_length=32``, only the query part cross-attends) and text-only (``query_length=0``: every
token, prefix included, goes through the text feed-forward and nothing cross-attends).

Beside it: ``blip2_configs`` (the architectures), ``blip2_tokenizers`` (word-piece tokenizers),
``blip2_processing`` (image and text processors). This module imports torch and transformers: CLI
code imports it inside its functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer, Blip2Config, Blip2ForImageTextRetrieval

from cirbench.backbones.blip2_configs import tiny_blip2_config
from cirbench.backbones.blip2_tokenizers import build_tiny_tokenizer
from cirbench.backbones.folders import offline_hub, synth_backbone_dir
from cirbench.compat import dtype_kwargs, no_init_weights

BLIP2_HUB_NAME = "Salesforce/blip2-itm-vit-g"
SYNTH_BACKBONE_ENV = "CIRBENCH_SYNTH_BLIP2"

# LAVIS normalises the ViT output with its own ``ln_vision`` LayerNorm at torch's default eps;
# transformers builds that norm (``vision_model.post_layernorm``) with the ViT blocks' 1e-6.
LAVIS_LN_VISION_EPS = 1e-5


class Blip2Backbone(nn.Module):
    """A ``Blip2ForImageTextRetrieval`` and its tokenizer, with the Q-Former passes used by the zoo."""

    def __init__(self, blip: Blip2ForImageTextRetrieval, tokenizer):
        """``tokenizer`` may be None for a structure-only backbone (meta-device parameter counts)."""
        super().__init__()
        if not blip.config.qformer_config.use_qformer_text_input:
            raise ValueError(
                "the BLIP-2 Q-Former has no text layers: its config needs "
                "qformer_config.use_qformer_text_input=True (the image-text-retrieval checkpoints have it)"
            )
        # The one place every backbone passes (tiny, ViT-g, synth_tiny, imported, reloaded): BLIP-2's
        # weights were trained with LAVIS's ln_vision eps, which no transformers config field holds.
        blip.vision_model.post_layernorm.eps = LAVIS_LN_VISION_EPS
        self.blip = blip
        self.tokenizer = tokenizer

    @property
    def config(self) -> Blip2Config:
        return self.blip.config

    @property
    def image_size(self) -> int:
        return self.config.vision_config.image_size

    @property
    def num_query_tokens(self) -> int:
        return self.config.num_query_tokens

    @property
    def hidden_size(self) -> int:
        return self.config.qformer_config.hidden_size

    @property
    def embed_dim(self) -> int:
        return self.config.image_text_hidden_size

    @property
    def vision_layers(self) -> nn.ModuleList:
        return self.blip.vision_model.encoder.layers

    @property
    def device(self) -> torch.device:
        return self.blip.query_tokens.device

    def tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        """Word-piece ids and attention mask, padded to the longest text, on the model's device."""
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {
            "input_ids": tokens["input_ids"].to(self.device),
            "attention_mask": tokens["attention_mask"].to(self.device),
        }

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> ViT tokens [B, P, D_vision] (after the ViT's final layer norm)."""
        return self.blip.vision_model(pixel_values=pixel_values.to(self.device)).last_hidden_state

    def query_image(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Image-only Q-Former pass: the 32 query outputs [B, Q, D]."""
        queries = self.blip.query_tokens.expand(image_embeds.shape[0], -1, -1)
        return self.blip.qformer(query_embeds=queries, encoder_hidden_states=image_embeds).last_hidden_state

    def query_image_text(self, image_embeds: torch.Tensor, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Fused pass: queries + text attend to each other, queries also to the image -> [B, Q + L, D]."""
        queries = self.blip.query_tokens.expand(image_embeds.shape[0], -1, -1)
        embeddings = self.blip.embeddings(input_ids=tokens["input_ids"], query_embeds=queries)
        return self.blip.qformer(
            query_embeds=embeddings,
            query_length=self.num_query_tokens,
            attention_mask=_with_prefix_mask(tokens["attention_mask"], queries.shape[1]),
            encoder_hidden_states=image_embeds,
        ).last_hidden_state

    def text_with_prefix(self, prefix: torch.Tensor | None, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Image-free pass over [prefix, text] (``query_length=0``) -> [B, P + L, D]; text [CLS] at index P."""
        embeddings = self.blip.embeddings(input_ids=tokens["input_ids"], query_embeds=prefix)
        prefix_length = 0 if prefix is None else prefix.shape[1]
        return self.blip.qformer(
            query_embeds=embeddings,
            query_length=0,
            attention_mask=_with_prefix_mask(tokens["attention_mask"], prefix_length),
        ).last_hidden_state

    def itc_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image-text contrast space: the 32 query outputs projected and normalised [B, Q, E]."""
        return self.itc_query_features(self.encode_image(pixel_values))

    def itc_query_features(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """``itc_image_features`` from ViT tokens already computed."""
        return F.normalize(self.blip.vision_projection(self.query_image(image_embeds)), dim=-1)

    def itm_logits(self, image_embeds: torch.Tensor, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Image-text matching [B, 2] (no match, match): the ITM head on the fused pass's query
        outputs, averaged over the queries, as ``Blip2ForImageTextRetrieval`` computes it."""
        fused = self.query_image_text(image_embeds, tokens)[:, : self.num_query_tokens]
        return self.blip.itm_head(fused).mean(dim=1)

    def itc_text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Image-text contrast space: the text-only pass's [CLS] projected and normalised [B, E]."""
        return F.normalize(self.blip.text_projection(self.text_with_prefix(None, tokens)[:, 0]), dim=-1)

    def save_pretrained(self, directory: str | Path, *, weights: bool = True) -> None:
        """config.json (+ model.safetensors when ``weights``) and the tokenizer files."""
        directory = Path(directory)
        if weights:
            self.blip.save_pretrained(directory)
        else:
            self.config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)


def _with_prefix_mask(text_mask: torch.Tensor, prefix_length: int) -> torch.Tensor:
    """The text attention mask with ``prefix_length`` always-visible positions in front."""
    prefix = torch.ones(text_mask.shape[0], prefix_length, dtype=text_mask.dtype, device=text_mask.device)
    return torch.cat([prefix, text_mask], dim=1)


def load_blip2_backbone(source: str | Path) -> Blip2Backbone:
    """Weights, config and tokenizer from a hub name (downloaded beforehand) or a local folder."""
    # float32 like the heads added on top; training loops autocast to bf16 where it pays.
    with offline_hub(source, "the BLIP-2 backbone") as local_only:
        blip = Blip2ForImageTextRetrieval.from_pretrained(str(source), **dtype_kwargs(torch.float32), **local_only)
        return Blip2Backbone(blip, _checked_tokenizer(source, local_only))


def blip2_backbone_skeleton(directory: str | Path) -> Blip2Backbone:
    """The backbone structure from a folder's config and tokenizer, weights left uninitialised.

    For checkpoints whose own safetensors file overwrites every weight right after.
    """
    config = Blip2Config.from_pretrained(str(directory))
    with no_init_weights():
        blip = Blip2ForImageTextRetrieval(config)
    return Blip2Backbone(blip, _checked_tokenizer(directory))


def _checked_tokenizer(source: str | Path, hub_kwargs: dict | None = None):
    """The tokenizer saved with a backbone, refused if it maps known words to [UNK].

    (A BERT tokenizer rebuilt from a bare vocab file in transformers 5 silently does.)
    """
    tokenizer = AutoTokenizer.from_pretrained(str(source), **(hub_kwargs or {}))
    ids = tokenizer("dress shirt", add_special_tokens=False)["input_ids"]
    if tokenizer.unk_token_id in ids or len(set(ids)) < 2:
        raise ValueError(f"{source}: its tokenizer maps common words to [UNK] (ids {ids}); save it as tokenizer.json")
    return tokenizer


def tiny_blip2_backbone(seed: int = 0, words: Iterable[str] = (), image_size: int = 64) -> Blip2Backbone:
    """A tiny randomly initialised backbone; same seed -> same weights; leaves the global RNG alone."""
    tokenizer = build_tiny_tokenizer(words)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        blip = Blip2ForImageTextRetrieval(tiny_blip2_config(len(tokenizer), image_size))
        # transformers zero-initialises the query tokens (they are meant to be loaded); identical
        # queries would stay identical under training, so draw them like BLIP-2 pre-training does.
        nn.init.normal_(blip.query_tokens, std=blip.config.qformer_config.initializer_range)
    return Blip2Backbone(blip, tokenizer)


def resolve_synth_backbone_dir(override: str | Path | None = None) -> Path:
    """The pre-trained tiny backbone folder: ``override``, else ``$CIRBENCH_SYNTH_BLIP2``, else the
    one ``synth-backbones`` installed last (``cirbench.backbones.folders``)."""
    return synth_backbone_dir(override, SYNTH_BACKBONE_ENV, ("config.json", "model.safetensors"),
                              "tiny BLIP-2 backbone", kind="blip2")
