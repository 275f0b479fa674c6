"""A deterministic fake CIR model and tiny EvalSplits on disk, for evaluator and CLI tests.

The model projects a 4x4 thumbnail (and, for queries, a vector seeded by the text) with fixed
random matrices and keeps, per head, a one-hot of the largest entry. One-hot heads make every
score an exact small number (0, 1/4, 1, 2, ...), so exact ties are common and a full-sort reference
computed elsewhere sees bitwise the same scores as the chunked evaluator.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cirbench.data.schema import CIRQuery, EvalSplit
from cirbench.interface import ModelMeta
from cirbench.scorers import ScorerSimilarity

HEADS, HEAD_DIM, TOKENS, THUMB = 4, 3, 2, 4
SHAPES = {  # scorer -> (query shape, candidate shape)
    "cosine": ((HEADS * HEAD_DIM,), (HEADS * HEAD_DIM,)),
    "multihead": ((HEADS, HEAD_DIM), (HEADS, HEAD_DIM)),
    "maxsim": ((HEADS * HEAD_DIM,), (TOKENS, HEADS * HEAD_DIM)),
}


def _one_hot_heads(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """[B, prod(shape)] -> [B, *shape] with a one-hot over the last axis, per head/token."""
    grouped = x.reshape(len(x), -1, HEAD_DIM)
    one_hot = torch.nn.functional.one_hot(grouped.argmax(-1), HEAD_DIM).float()
    return one_hot.reshape(len(x), *shape)


class FakeCIRModel(ScorerSimilarity):
    def __init__(self, scorer: str = "multihead", seed: int = 0, variant: str = "test_tiny"):
        query_shape, candidate_shape = SHAPES[scorer]
        self.meta = ModelMeta("fake_cir", variant, scorer, query_shape, candidate_shape, image_size=THUMB)
        generator = torch.Generator().manual_seed(seed)
        pixels = 3 * THUMB * THUMB
        self.candidate_projection = torch.randn(pixels, int(np.prod(candidate_shape)), generator=generator)
        self.query_projection = torch.randn(pixels, int(np.prod(query_shape)), generator=generator)
        self.shapes = query_shape, candidate_shape  # what it produces, whatever meta claims
        self.seed = seed
        self.candidate_calls = 0
        self.query_calls = 0

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        thumb = np.asarray(image.resize((THUMB, THUMB)), dtype=np.float32) / 255.0
        return torch.from_numpy(thumb).permute(2, 0, 1) - 0.5

    def encode_candidates(self, images: torch.Tensor) -> torch.Tensor:
        self.candidate_calls += 1
        projection = self.candidate_projection.to(images.device)  # the evaluator places the images
        return _one_hot_heads(images.flatten(1).float() @ projection, self.shapes[1])

    def encode_query(self, ref_images: torch.Tensor, texts) -> torch.Tensor:
        self.query_calls += 1
        text = torch.stack([self._text_vector(t) for t in texts]).to(ref_images.device)
        projection = self.query_projection.to(ref_images.device)
        return _one_hot_heads(ref_images.flatten(1).float() @ projection + text, self.shapes[0])

    def _text_vector(self, text: str) -> torch.Tensor:
        generator = torch.Generator().manual_seed(zlib.crc32(text.encode()))
        return torch.randn(self.query_projection.shape[1], generator=generator)

    def checkpoint_hash(self) -> str:
        return f"fake-{self.meta.scorer}-{self.seed}"


def write_images(folder: Path, image_ids: list[str], seed: int = 0, duplicates: dict[str, str] | None = None) -> dict[str, Path]:
    """Random 8x8 PNGs; ``duplicates`` maps an id to another id whose pixels it copies. Files
    already there are kept (same seed, same pixels), so a second call leaves the gallery cache valid."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = {i: rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8) for i in image_ids}
    for copy, original in (duplicates or {}).items():
        pixels[copy] = pixels[original]
    paths = {}
    for image_id, array in pixels.items():
        paths[image_id] = folder / f"{image_id}.png"
        if not paths[image_id].exists():
            Image.fromarray(array).save(paths[image_id])
    return paths


def make_split(
    root: Path,
    category: str = "dress",
    n_gallery: int = 24,
    n_queries: int = 30,
    seed: int = 0,
    duplicates: int = 6,
) -> EvalSplit:
    """A split whose last ``duplicates`` gallery images copy earlier ones (exact score ties)."""
    rng = np.random.default_rng(seed)
    gallery = [f"{category}{i:03d}" for i in range(n_gallery)]
    copies = {gallery[-1 - i]: gallery[i] for i in range(duplicates)}
    paths = write_images(root / "images", gallery, seed=seed, duplicates=copies)
    queries = []
    for q in range(n_queries):
        reference, target = rng.choice(gallery, size=2, replace=False)
        captions = (f"is more {rng.choice(['red', 'blue', 'green'])}", f"has {rng.choice(['long', 'short'])} sleeves")
        queries.append(CIRQuery(f"{category}/val/{q}", category, str(reference), str(target), captions))
    return EvalSplit("fake_fashioniq", category, "val", queries, gallery, paths, root / f"cap.{category}.val.json")


def naive_ranks(scores: np.ndarray, targets, excluded=None) -> np.ndarray:
    """Full sort per query: descending score, the target last among equal scores."""
    ranks = []
    for row, (scores_row, target) in enumerate(zip(scores, targets)):
        keep = np.ones(len(scores_row), dtype=bool)
        if excluded is not None and excluded[row] >= 0 and excluded[row] != target:
            keep[excluded[row]] = False
        columns = np.flatnonzero(keep)
        is_target = columns == target
        order = np.lexsort((is_target, -scores_row[columns]))  # last key sorts first
        ranks.append(int(np.flatnonzero(is_target[order])[0]))
    return np.array(ranks)
