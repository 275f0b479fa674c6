"""The BLIP-2 backbone of FashionBLIP-2 and SPRC, on transformers' ``Blip2ForImageTextRetrieval``.

Three ways to get one, same classes each time:

- the real ViT-g image-text-retrieval checkpoint (``Salesforce/blip2-itm-vit-g``) or a local copy,
  loaded with ``from_pretrained`` (weights downloaded beforehand);
- a tiny random one (``tiny_blip2_backbone``) with an in-memory word-piece tokenizer, for tests;
- a tiny one pre-trained on the synthetic world (``pretrain_blip2_backbone``: contrast and matching), saved
  as a folder (config + safetensors + tokenizer) that ``load_blip2_backbone`` reads back.

``Blip2Backbone`` exposes the Q-Former passes both models need, as the retrieval model runs them:
image-only (32 query tokens cross-attend to the ViT), fused image + text (query tokens first,
``query_length=32``, only the query part cross-attends) and text-only (``query_length=0``: every
token, prefix included, goes through the text feed-forward and nothing cross-attends).

This module imports torch and transformers: CLI code imports it inside its functions.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import AutoTokenizer, Blip2Config, Blip2ForImageTextRetrieval, PreTrainedTokenizerFast

from cirbench.backbones.folders import SYNTH_BACKBONE_COMMAND, offline_hub, synth_backbone_dir  # noqa: F401 (public here too)
from cirbench.compat import dtype_kwargs, no_init_weights
from cirbench.train.losses import duplicate_target_mask, in_batch_contrastive

BLIP2_HUB_NAME = "Salesforce/blip2-itm-vit-g"
# BLIP-2's image processor: bicubic resize to a square, then CLIP's normalisation.
BLIP2_MEAN = (0.48145466, 0.4578275, 0.40821073)
BLIP2_STD = (0.26862954, 0.26130258, 0.27577711)

SYNTH_BACKBONE_ENV = "CIRBENCH_SYNTH_BLIP2"

# LAVIS normalises the ViT output with its own ``ln_vision`` LayerNorm at torch's default eps;
# transformers builds that norm (``vision_model.post_layernorm``) with the ViT blocks' 1e-6.
LAVIS_LN_VISION_EPS = 1e-5
# LAVIS's tokenizer: bert-base-uncased plus this bos token, appended after the vocabulary.
LAVIS_BOS_TOKEN = "[DEC]"

_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CHARACTERS = string.ascii_lowercase + string.digits
# Fashion words known to every tiny tokenizer; anything else falls back to character pieces.
_BASE_WORDS = """
a an and the is are be with without more less than to of in on it its has have make makes
dress shirt top tee toptee skirt pants jacket coat blouse sweater
black white grey gray red blue green yellow orange pink purple brown beige navy
solid stripes striped dots dotted checks checked floral plaid pattern patterned print printed
sleeve sleeves sleeveless short long longer shorter medium three quarter
neck neckline round v square collar collared crew
length mini midi maxi knee ankle fit fitted loose tight slim relaxed wide narrow
darker lighter brighter color colour colored different same similar change changed
""".split()


def preprocess_image(image: Image.Image, size: int) -> torch.Tensor:
    """One PIL image -> [3, size, size] float tensor, BLIP-2's resize and normalisation."""
    pixels = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    tensor = torch.from_numpy(pixels / 255.0).permute(2, 0, 1)
    mean = torch.tensor(BLIP2_MEAN).view(3, 1, 1)
    std = torch.tensor(BLIP2_STD).view(3, 1, 1)
    return (tensor - mean) / std


def blip_caption(text: str, max_words: int = 50) -> str:
    """LAVIS's ``blip_caption`` text processor, which SPRC applies to every modification text (training
    and evaluation): lower case, ``.!"()*#:;~`` become spaces, runs of spaces collapse, at most
    ``max_words`` words. (Commas, ``?`` and apostrophes stay.)"""
    text = re.sub(r"\s{2,}", " ", re.sub(r'([.!"()*#:;~])', " ", text.lower()))
    words = text.rstrip("\n").strip(" ").split(" ")
    return " ".join(words[:max_words])


def words_of(texts: Iterable[str]) -> list[str]:
    """Lower-case alphabetic words of ``texts``, in order of first appearance."""
    return list(dict.fromkeys(w for text in texts for w in re.findall(r"[a-z]+", text.lower())))


def build_tiny_tokenizer(extra_words: Iterable[str] = (), max_length: int = 128) -> PreTrainedTokenizerFast:
    """A BERT word-piece tokenizer built from an in-memory vocabulary (no files, no network).

    Single characters and their ``##`` continuations are in the vocabulary, so unknown words split
    into pieces instead of collapsing to [UNK].
    """
    pieces = [*_SPECIAL_TOKENS, *string.punctuation, *_CHARACTERS, *(f"##{c}" for c in _CHARACTERS)]
    tokens = list(dict.fromkeys([*pieces, *_BASE_WORDS, *extra_words]))
    return wordpiece_tokenizer(tokens, max_length)


def tokenizer_from_vocab_file(vocab_file: str | Path, bos_token: str | None = LAVIS_BOS_TOKEN,
                              max_length: int = 512) -> PreTrainedTokenizerFast:
    """LAVIS's BLIP-2 tokenizer from a WordPiece ``vocab.txt`` (e.g. bert-base-uncased's): lower-casing
    BERT tokenization, with ``bos_token`` appended after the vocabulary as LAVIS adds it.

    Args:
        vocab_file: one token per line; a token's id is its line number.
        bos_token: the added token (LAVIS: ``[DEC]``); None adds nothing.
        max_length: the tokenizer's ``model_max_length``.
    """
    tokenizer = wordpiece_tokenizer(Path(vocab_file).read_text(encoding="utf-8").splitlines(), max_length)
    if bos_token:
        tokenizer.add_special_tokens({"bos_token": bos_token})
    return tokenizer


def wordpiece_tokenizer(tokens: Sequence[str], max_length: int) -> PreTrainedTokenizerFast:
    """BERT's lower-casing word-piece tokenizer over ``tokens`` (a token's id is its index), with the
    [CLS] ... [SEP] template; the special tokens must be among ``tokens``.

    Built with the ``tokenizers`` library, which every transformers release wraps alike:
    ``BertTokenizerFast(vocab_file=...)`` silently maps everything to [UNK] in transformers 5, and
    ``BertTokenizerFast(vocab=dict)`` does not exist in transformers 4.

    Args:
        tokens: the vocabulary in id order.
        max_length: the tokenizer's ``model_max_length``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = {token: index for index, token in enumerate(tokens)}
    wordpiece = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    wordpiece.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=wordpiece, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
        mask_token="[MASK]", model_max_length=max_length,
    )


_TINY_INIT = 0.1


def vitg_blip2_config() -> Blip2Config:
    """The ViT-g image-text-retrieval BLIP-2 (transformers' default sizes) with the Q-Former's text layers."""
    return Blip2Config(qformer_config={"use_qformer_text_input": True})


def tiny_blip2_config(vocab_size: int, image_size: int = 64) -> Blip2Config:
    """A ~2.4 M-parameter BLIP-2 with the paper's token counts (32 queries, 256-d ITC space).

    Trained from scratch, unlike the real one: no dropout, and initial weights 5x BERT's 0.02, so
    the image reaches the query tokens through cross-attention from the first step. With BERT's
    settings the contrastive loss sat at log(batch) for hundreds of steps (measured: dropout alone
    kept it there at every learning rate tried; see cirbench/synth/tiny_backbones.py).
    """
    return Blip2Config(
        vision_config={
            "hidden_size": 128,
            "intermediate_size": 512,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "image_size": image_size,
            "patch_size": 8,
            "attention_dropout": 0.0,
            "initializer_range": _TINY_INIT,  # the default 1e-10 assumes pretrained weights get loaded
        },
        qformer_config={
            "vocab_size": vocab_size,
            "hidden_size": 128,
            "intermediate_size": 512,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "max_position_embeddings": 128,
            "cross_attention_frequency": 2,
            "use_qformer_text_input": True,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "initializer_range": _TINY_INIT,
        },
        num_query_tokens=32,
        image_text_hidden_size=256,
    )


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


class _Blip2Pretraining(nn.Module):
    """BLIP-2's stage-1 objectives on a backbone: image-text contrast (best of 32 query tokens vs
    text [CLS]) and, with ``matching``, image-text matching (the ITM head on the fused pass).

    Matching is what trains the fused pass (queries and text attending to each other) that
    FashionBLIP-2 and SPRC build their queries with; contrast alone never runs it, and without it
    the tiny model's fused queries barely depended on the text (results/calibration/README.md).
    ``hard_share`` of the negatives are BLIP-2's hard ones, the rest uniform.
    """

    def __init__(self, backbone: Blip2Backbone, max_text_len: int = 128, matching: bool = True,
                 hard_share: float = 0.5):
        super().__init__()
        self.backbone = backbone
        self.max_text_len = max_text_len
        self.matching = matching
        self.hard_share = hard_share
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, pixel_values: torch.Tensor, captions: Sequence[str]) -> dict[str, torch.Tensor]:
        image_embeds = self.backbone.encode_image(pixel_values)
        tokens = self.backbone.tokenize(captions, self.max_text_len)
        image_feats = self.backbone.itc_query_features(image_embeds)
        text_feats = self.backbone.itc_text_features(tokens)
        scale = self.logit_scale.clamp(max=math.log(100)).exp()

        def image_to_text(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
            return scale * torch.einsum("iqd,jd->ijq", images, texts).amax(dim=-1)

        def text_to_image(texts: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
            return image_to_text(images, texts).T

        # Identical captions in a batch are not negatives of each other.
        losses = {"itc": (in_batch_contrastive(image_feats, text_feats, image_to_text, captions)
                          + in_batch_contrastive(text_feats, image_feats, text_to_image, captions)) / 2}
        if self.matching:
            similarity = image_to_text(image_feats, text_feats).detach()
            losses["itm"] = self._matching_loss(image_embeds, tokens, similarity, captions)
        return losses

    def _matching_loss(self, image_embeds: torch.Tensor, tokens: dict[str, torch.Tensor],
                       similarity: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """Each pair against a negative image for its text and a negative text for its image,
        drawn among the batch's other captions: for a random half of the rows with probability
        softmax(similarity) (BLIP-2's hard negatives), for the others uniformly. Hard negatives
        alone left the tiny model's matching loss at its prior for 300 steps (measured); the
        uniform ones teach it to read the text first."""
        # Identical captions (the pair's own included) are never its negatives.
        same = (duplicate_target_mask(captions, captions, 0) | torch.eye(len(captions), dtype=torch.bool)).to(similarity.device)
        if bool(same.all()):  # one caption for the whole batch: no negatives to draw (else every row has one)
            return similarity.new_zeros(())
        hard = torch.rand(similarity.shape[0], 1, device=similarity.device) < self.hard_share

        def draw(scores: torch.Tensor) -> torch.Tensor:
            weights = torch.where(hard, scores, torch.zeros_like(scores)).masked_fill(same, float("-inf"))
            return torch.multinomial(weights.softmax(dim=1), 1)[:, 0]

        negative_text, negative_image = draw(similarity), draw(similarity.T)
        images = torch.cat([image_embeds, image_embeds[negative_image], image_embeds])
        texts = {key: torch.cat([value, value, value[negative_text]]) for key, value in tokens.items()}
        batch = image_embeds.shape[0]
        labels = torch.cat([torch.ones(batch), torch.zeros(2 * batch)]).long().to(similarity.device)
        return F.cross_entropy(self.backbone.itm_logits(images, texts), labels)


def pretrain_blip2_backbone(
    pairs: list[tuple[Path, str]],
    out_dir: str | Path,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    image_size: int = 64,
    lr: float = 1e-3,
    words: Iterable[str] = (),
    matching: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> Path:
    """Pre-train a tiny BLIP-2 with image-text contrast (and matching) on (image path, caption) pairs; save it.

    The vocabulary is the base one plus ``words`` plus every word of the captions. Writes ``out_dir`` with
    config.json, model.safetensors, the tokenizer and pretraining.json (settings and last loss);
    ``synth_tiny`` models load it. ``on_step(step, loss)`` reports progress.
    """
    if not pairs:
        raise ValueError("no image-caption pairs to pre-train on")
    captions = [caption for _, caption in pairs]
    backbone = tiny_blip2_backbone(seed, [*words, *words_of(captions)], image_size)
    images = torch.stack([preprocess_image(Image.open(path), image_size) for path, _ in pairs])
    objective = _Blip2Pretraining(backbone, matching=matching).train()
    optimizer = torch.optim.AdamW(objective.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    losses: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # batches, dropout and the matching negatives
        for step in range(steps):
            batch = torch.randperm(len(pairs))[:batch_size].tolist()
            losses = objective(images[batch], [captions[i] for i in batch])
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if on_step:
                on_step(step, loss.item())
    out_dir = Path(out_dir)
    backbone.save_pretrained(out_dir)
    settings = {
        "pairs": len(pairs),
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "image_size": image_size,
        "lr": lr,
        "objectives": list(losses),
        "final_losses": {name: value.item() for name, value in losses.items()},
    }
    (out_dir / "pretraining.json").write_text(json.dumps(settings, indent=2) + "\n")
    return out_dir
