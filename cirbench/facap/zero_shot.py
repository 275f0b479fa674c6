"""Fashion attributes read off images by a CLIP (image and text towers, zero-shot): for each
attribute dimension, the vocabulary value whose prompt is closest to the image.

The offline captioner uses it for images that come with no metadata at all (FashionIQ images, in
build-enhfiq), so that their captions still describe what the image shows. Its accuracy is the
CLIP's: good for the synthetic world's pre-trained tiny CLIP on its own vocabulary, rough for a
general CLIP on fine attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cirbench.facap.attribute_phrases import VOCABULARY
from cirbench.facap.embedding import ClipEmbedder, unit_rows

_PROMPTS = {
    "colour": "a photo of a {value} {category}",
    "pattern": "a photo of a {category} with a {value} pattern",
    "sleeve": "a photo of a {category} with {value}",
    "neckline": "a photo of a {category} with a {value}",
    "length": "a photo of a {value} {category}",
    "fit": "a photo of a {category} with a {value} fit",
}
_ADJECTIVE_SLEEVES = {"sleeveless", "strapless"}  # "a sleeveless dress", not "a dress with sleeveless"
_LOWER_BODY = {"pants", "skirt", "shorts"}  # no sleeves, no neckline


def prompt(dimension: str, value: str, category: str) -> str:
    if dimension == "sleeve" and value in _ADJECTIVE_SLEEVES:
        return f"a photo of a {value} {category}"
    return _PROMPTS[dimension].format(value=value, category=category)


def dimensions_for(category: str) -> list[str]:
    return [d for d in _PROMPTS if not (category in _LOWER_BODY and d in ("sleeve", "neckline"))]


class ZeroShotAttributes:
    """``recognise(paths, categories) -> [{dimension: value}]`` with the pairing encoder's CLIP."""

    def __init__(self, embedder: ClipEmbedder):
        self.embedder = embedder
        self.name = f"zero-shot {embedder.name}"
        self._prompts: dict[str, dict[str, tuple[list[str], np.ndarray]]] = {}

    def __call__(self, paths: Sequence[Path], categories: Sequence[str]) -> list[dict[str, str]]:
        images = self.embedder(paths)
        return [self._best_values(vector, category) for vector, category in zip(images, categories)]

    def _best_values(self, image: np.ndarray, category: str) -> dict[str, str]:
        return {dim: values[int(np.argmax(texts @ image))] for dim, (values, texts) in self._category_prompts(category).items()}

    def _category_prompts(self, category: str) -> dict[str, tuple[list[str], np.ndarray]]:
        if category not in self._prompts:
            self._prompts[category] = {
                dim: (list(VOCABULARY[dim]), self._embed_texts([prompt(dim, v, category) for v in VOCABULARY[dim]]))
                for dim in dimensions_for(category)
            }
        return self._prompts[category]

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            features = self.embedder.backbone.encode_text(texts)
        return unit_rows(features.float().cpu().numpy())
