"""Dataset statistics in the layout of the paper's Table 1: unique images, triplets, image-caption
pairs, and vocabulary size and average length (words) of the modification texts and captions.

Words are lower-cased runs of letters and digits (apostrophes kept inside words). For
FashionIQ-style data every annotator text counts as one modification text.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class TextStats:
    count: int
    vocabulary: int
    average_length: float | None  # words per text; None without texts


def text_stats(texts: Iterable[str]) -> TextStats:
    vocabulary: set[str] = set()
    count = total = 0
    for text in texts:
        tokens = words(text)
        vocabulary.update(tokens)
        count, total = count + 1, total + len(tokens)
    return TextStats(count, len(vocabulary), round(total / count, 2) if count else None)


@dataclass(frozen=True)
class DatasetStats:
    name: str
    unique_images: int
    triplets: int
    modification_texts: TextStats
    image_caption_pairs: int = 0
    captions: TextStats | None = None

    def to_json(self) -> dict:
        return asdict(self)


def facap_stats(root: Path) -> DatasetStats:
    """A folder in FACap release layout (ours or the official one)."""
    from cirbench.data.facap import caption_map_path, find_facap_categories, read_caption_map, read_triplet_file, triplet_path

    triplets, captions = [], {}
    for category in find_facap_categories(root):
        triplets += read_triplet_file(triplet_path(root, category))
        captions.update(read_caption_map(caption_map_path(root, category)))
    images = {c for c, _, _ in triplets} | {t for _, t, _ in triplets}
    return DatasetStats(
        f"FACap-style ({Path(root).name})", len(images), len(triplets),
        text_stats(text for _, _, texts in triplets for text in texts),
        len(captions), text_stats(captions.values()),
    )


def fashioniq_stats(root: Path, split: str = "train") -> DatasetStats:
    """A folder in FashionIQ layout, one split (the paper's Table 1 counts the train split)."""
    from cirbench.data.fashioniq import caption_path, find_categories, read_caption_file

    annotations = [a for c in find_categories(root, split) for a in read_caption_file(caption_path(root, c, split), split != "test")]
    images = {a.reference_id for a in annotations} | {a.target_id for a in annotations if a.target_id}
    return DatasetStats(
        f"FashionIQ-style ({Path(root).name}, {split})", len(images), len(annotations),
        text_stats(text for a in annotations for text in a.captions),
    )
