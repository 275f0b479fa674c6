"""Pre-training the synthetic world's tiny backbones: one loop, two objectives.

``pretrain`` is the one loop: at each step a random batch of (image, caption) pairs
(``torch.randperm`` under the seed, images decoded once and kept in memory: 64 px, a few MB per
thousand), the sum of the objective's losses, AdamW and torch's one-cycle learning rate
(``cirbench.train.schedule.one_cycle``, rising over the first 10% of the steps).

- ``ClipPretraining``: CLIP's symmetric image-text InfoNCE on the tiny open_clip model
  (``pretrain_clip_backbone``: AdamW weight decay 0.1, the learning rate alone follows the cycle);
- ``Blip2Pretraining``: BLIP-2's first-stage objectives, image-text contrast and matching, on the
  tiny ``Blip2ForImageTextRetrieval`` (``pretrain_blip2_backbone``: weight decay 0.05, and the cycle
  also moves AdamW's beta1 between 0.95 and 0.85, torch's ``OneCycleLR`` default).

Those two differences are the settings the shipped backbones (``synth/pretrained/``) were made
with. ``cirbench.synth.tiny_backbones`` runs both on a world's image-caption pairs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cirbench.backbones.blip2 import Blip2Backbone, tiny_blip2_backbone
from cirbench.backbones.blip2_processing import preprocess_image
from cirbench.backbones.blip2_tokenizers import words_of
from cirbench.backbones.clip import TINY_CLIP, ClipBackbone, tiny_clip
from cirbench.losses import duplicate_target_mask, in_batch_contrastive
from cirbench.train.schedule import one_cycle

StepReport = Callable[[int, float], None]
RECORD = "pretraining.json"


def pretrain(
    objective: nn.Module,
    images: torch.Tensor,
    captions: Sequence[str],
    *,
    steps: int,
    batch_size: int,
    seed: int,
    lr: float,
    weight_decay: float,
    cycle_momentum: bool = False,
    on_step: StepReport | None = None,
) -> dict[str, float]:
    """The one pre-training loop; returns the last step's losses.

    Args:
        objective: ``objective(images, captions) -> {name: loss}``; all its parameters train.
        images: every pair's preprocessed image [N, 3, H, W].
        captions: every pair's caption (N).
        steps: optimizer steps.
        batch_size: pairs drawn (without replacement) per step.
        seed: the batches, dropout and any sampling inside the objective (the caller's RNG is left alone).
        lr: the peak learning rate of the one-cycle schedule.
        weight_decay: AdamW's.
        cycle_momentum: also cycle AdamW's beta1 (0.95 -> 0.85 -> 0.95) with the learning rate.
        on_step: ``on_step(step, summed loss)`` after each step (0-based step).
    """
    if not len(captions):
        raise ValueError("no image-caption pairs to pre-train on")
    objective.train()
    optimizer = torch.optim.AdamW(objective.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = one_cycle(optimizer, steps, pct_start=0.1, cycle_momentum=cycle_momentum)
    losses: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in range(steps):
            batch = torch.randperm(len(captions))[:batch_size]
            losses = objective(images[batch], [captions[i] for i in batch.tolist()])
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if on_step:
                on_step(step, loss.item())
    return {name: value.item() for name, value in losses.items()}


def pretrain_clip_backbone(
    pairs: list[tuple[Path, str]],
    out_dir: str | Path,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    image_size: int = 64,
    lr: float = 1e-3,
    on_step: StepReport | None = None,
) -> Path:
    """CLIP contrastive pre-training of the tiny open_clip model on (image path, caption) pairs.

    Writes ``out_dir`` in open_clip's local-dir format (``open_clip_config.json`` +
    ``open_clip_model.safetensors``) plus ``pretraining.json`` (settings, last losses); the
    ``synth_tiny`` CLIP variants load it. Arguments as ``pretrain``'s; ``image_size`` must be the
    tiny CLIP's.
    """
    if not pairs:
        raise ValueError("no image-caption pairs to pre-train on")
    backbone = tiny_clip(seed)
    if backbone.image_size != image_size:
        raise ValueError(f"{TINY_CLIP} is built for {backbone.image_size} px images, not {image_size}")
    transform = backbone.image_transform()
    images = torch.stack([transform(Image.open(path)) for path, _ in pairs])
    captions = [caption for _, caption in pairs]
    final = pretrain(ClipPretraining(backbone), images, captions, steps=steps, batch_size=batch_size, seed=seed,
                     lr=lr, weight_decay=0.1, on_step=on_step)
    out_dir = backbone.save_open_clip(out_dir)
    _write_record(out_dir, pairs, steps, batch_size, seed, image_size, lr, final)
    return out_dir


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
    on_step: StepReport | None = None,
) -> Path:
    """Pre-train a tiny BLIP-2 with image-text contrast (and matching) on (image path, caption) pairs.

    The vocabulary is the base one plus ``words`` plus every word of the captions. Writes
    ``out_dir`` with config.json, model.safetensors, the tokenizer and pretraining.json (settings,
    last losses); the ``synth_tiny`` BLIP-2 variants load it. Other arguments as ``pretrain``'s.
    """
    if not pairs:
        raise ValueError("no image-caption pairs to pre-train on")
    captions = [caption for _, caption in pairs]
    backbone = tiny_blip2_backbone(seed, [*words, *words_of(captions)], image_size)
    images = torch.stack([preprocess_image(Image.open(path), image_size) for path, _ in pairs])
    final = pretrain(Blip2Pretraining(backbone, matching=matching), images, captions, steps=steps,
                     batch_size=batch_size, seed=seed, lr=lr, weight_decay=0.05, cycle_momentum=True, on_step=on_step)
    out_dir = Path(out_dir)
    backbone.save_pretrained(out_dir)
    _write_record(out_dir, pairs, steps, batch_size, seed, image_size, lr, final)
    return out_dir


def _write_record(out_dir: Path, pairs: list, steps: int, batch_size: int, seed: int, image_size: int, lr: float,
                  final: dict[str, float]) -> None:
    record = {"pairs": len(pairs), "steps": steps, "batch_size": batch_size, "seed": seed, "image_size": image_size,
              "lr": lr, "objectives": list(final), "final_losses": final}
    (Path(out_dir) / RECORD).write_text(json.dumps(record, indent=2) + "\n")


class ClipPretraining(nn.Module):
    """CLIP's symmetric image-text InfoNCE; pairs sharing a caption are not negatives of each other."""

    def __init__(self, backbone: ClipBackbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor, captions: Sequence[str]) -> dict[str, torch.Tensor]:
        clip = self.backbone.clip
        image_features = clip.encode_image(images)
        text_features = clip.encode_text(self.backbone.tokenizer(list(captions)).to(images.device))
        scale = clip.logit_scale.clamp(max=math.log(100)).exp()

        def scores(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
            return scale * F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T

        loss = (in_batch_contrastive(image_features, text_features, scores, captions)
                + in_batch_contrastive(text_features, image_features, scores, captions)) / 2
        return {"itc": loss}


class Blip2Pretraining(nn.Module):
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
