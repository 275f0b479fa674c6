"""Which garment attributes a world's tiny backbones see, measured by text-to-image retrieval.

Every FashionIQ-like image of a split gets a detailed caption naming all its attributes; the
caption ranks the images of its category by the backbone's image-text similarity. Reported per
backbone: how often an image with exactly the caption's attributes ranks first and in the top 10,
and for each attribute, how often the top image agrees with the caption, beside the agreement of
two images drawn at random (chance). An attribute near chance is one the backbone cannot tell
apart, so no CIR model on top of it can follow a text about it.

The scorer is any ``(image paths, captions) -> [captions, images]`` function, so the measure is
checked with an oracle scorer in the tests and applied to the real backbones by the CLI.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cirbench.data.fashioniq import read_split_file, split_path
from cirbench.errors import DataError
from cirbench.synth.attributes import ATTRIBUTES, Garment
from cirbench.synth.text import detailed_caption
from cirbench.synth.world import (
    FASHIONIQ_CATEGORIES,
    garment_of,
    load_ground_truth,
    read_manifest,
    stable_seed,
)

if TYPE_CHECKING:
    import torch

Scorer = Callable[[Sequence[Path], Sequence[str]], "torch.Tensor"]
PROBE_KS = (1, 10)


@dataclass
class AttributeProbe:
    backbone: str
    split: str
    captions: int
    exact_at_1: float  # percent of captions whose top image has exactly the caption's attributes
    exact_at_10: float  # ... among the top 10
    agreement: dict[str, float]  # attribute -> percent of captions whose top image has the caption's value
    chance: dict[str, float]  # attribute -> percent of random image pairs (same category) that agree


@dataclass
class ProbeImages:
    category: str
    paths: list[Path]
    garments: list[Garment]
    captions: list[str]


def probe_images(world_dir: Path, split: str = "val") -> list[ProbeImages]:
    """The FashionIQ-like images of ``split``, per category, with a detailed caption each."""
    world_dir = Path(world_dir)
    seed = read_manifest(world_dir)["settings"]["seed"]
    garments = {r["image_id"]: (world_dir / r["path"], garment_of(r))
                for r in load_ground_truth(world_dir) if r["source"] == "fashioniq"}
    groups = []
    for category in FASHIONIQ_CATEGORIES:
        split_file = split_path(world_dir / "fashioniq", category, split)
        ids = read_split_file(split_file)
        unknown = [i for i in ids if i not in garments]
        if unknown:
            raise DataError(split_file, unknown[0], "image id not in the world's ground truth")
        items = [garments[i] for i in ids]
        captions = [detailed_caption(g, random.Random(stable_seed(seed, "probe", str(p)))) for p, g in items]
        groups.append(ProbeImages(category, [p for p, _ in items], [g for _, g in items], captions))
    return groups


def chance_agreement(garments: Sequence[Garment], attribute: str) -> float:
    """Percent of ordered pairs of distinct images that share the attribute's value."""
    counts = Counter(getattr(g, attribute) for g in garments)
    n = len(garments)
    return 100.0 * sum(c * (c - 1) for c in counts.values()) / (n * (n - 1)) if n > 1 else 0.0


def probe_attributes(world_dir: Path, scorer: Scorer, backbone: str, split: str = "val") -> AttributeProbe:
    """Text-to-image retrieval with detailed captions over each category's images of ``split``."""
    exact = [0] * len(PROBE_KS)
    agree: Counter[str] = Counter()
    applies: Counter[str] = Counter()
    chance_sum: Counter[str] = Counter()
    total = 0
    for group in probe_images(world_dir, split):
        scores = scorer(group.paths, group.captions)
        ranked = scores.argsort(dim=1, descending=True)[:, : max(PROBE_KS)].tolist()
        for wanted, order in zip(group.garments, ranked):
            for i, k in enumerate(PROBE_KS):
                exact[i] += any(group.garments[j] == wanted for j in order[:k])
            top = group.garments[order[0]]
            for attribute in ATTRIBUTES:
                if getattr(wanted, attribute) is not None:
                    applies[attribute] += 1
                    agree[attribute] += getattr(top, attribute) == getattr(wanted, attribute)
        for attribute in ATTRIBUTES:
            if getattr(group.garments[0], attribute) is not None:
                chance_sum[attribute] += chance_agreement(group.garments, attribute) * len(group.garments)
        total += len(group.garments)
    return AttributeProbe(
        backbone=backbone,
        split=split,
        captions=total,
        exact_at_1=100.0 * exact[0] / total,
        exact_at_10=100.0 * exact[1] / total,
        agreement={a: 100.0 * agree[a] / applies[a] for a in ATTRIBUTES if applies[a]},
        chance={a: chance_sum[a] / applies[a] for a in ATTRIBUTES if applies[a]},
    )


def backbone_scorer(kind: str, directory: Path, batch_size: int = 128) -> Scorer:
    """The image-text similarity a backbone was pre-trained with: tiny BLIP-2's ITC (best of its
    32 query tokens against the text [CLS]) or CLIP's cosine."""
    import torch
    from PIL import Image

    if kind == "blip2":
        from cirbench.backbones.blip2 import load_blip2_backbone
        from cirbench.backbones.blip2_processing import preprocess_image

        blip2 = load_blip2_backbone(directory).eval()

        def encode_images(paths):
            pixels = torch.stack([preprocess_image(Image.open(p), blip2.image_size) for p in paths])
            return blip2.itc_image_features(pixels)

        def encode_texts(texts):
            return blip2.itc_text_features(blip2.tokenize(texts, 128))

        def similarity(images, texts):
            return torch.einsum("iqd,td->tiq", images, texts).amax(dim=-1)
    elif kind == "clip":
        import torch.nn.functional as F

        from cirbench.backbones.clip import load_clip, local_dir

        clip = load_clip(local_dir(directory))
        clip.clip.eval()
        transform = clip.image_transform()

        def encode_images(paths):
            return F.normalize(clip.encode_image(torch.stack([transform(Image.open(p)) for p in paths])), dim=-1)

        def encode_texts(texts):
            return F.normalize(clip.encode_text(texts), dim=-1)

        def similarity(images, texts):
            return texts @ images.T
    else:
        raise ValueError(f"unknown backbone kind {kind!r}; known: blip2, clip")

    def score(paths: Sequence[Path], captions: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            images = torch.cat([encode_images(paths[i : i + batch_size]) for i in range(0, len(paths), batch_size)])
            texts = torch.cat([encode_texts(list(captions[i : i + batch_size]))
                               for i in range(0, len(captions), batch_size)])
            return similarity(images, texts)

    return score
