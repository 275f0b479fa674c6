"""Gallery feature cache and chunked scoring to target ranks, with the model's ``similarity``.

Ranking rule (ties count against the target). For a query whose target sits in gallery column t,

    rank = #{candidates scoring strictly higher than the target}
         + #{other candidates scoring exactly the same as the target}

i.e. the target is placed last among equal scores, so a model that gives every candidate the same
score gets the worst rank, never a lucky one. Ranks are 0-based: rank < K is a hit at Recall@K.
With ``remove_reference`` the query's reference column is left out of the count (unless the
reference is the target itself). A NaN target score is an error, never a silent miss (the
evaluator refuses non-finite embeddings when they are encoded, so no other score can be NaN).

Memory: scores exist for one chunk of queries at a time ([b, N]), never for all queries at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from cirbench.scorers import scorer_of

if TYPE_CHECKING:
    import numpy as np
    import torch

    from cirbench.interface import CIRModel
    from cirbench.scorers import Scorer

# Largest scratch score block per chunk, in elements (2**26 float32 = 256 MB). A maxsim gallery of
# N images x T tokens costs N*T per query row, so its chunks get fewer rows.
MAX_CHUNK_ELEMENTS = 2**26


@dataclass(frozen=True)
class GalleryScores:
    """One gallery, ready to be scored against query chunks: ``score(queries[b, *q]) -> [b, N]``.

    ``row_elements`` is the size of one query's row of the scratch block (N, or N x tokens for
    maxsim): ``chunk_rows`` sizes the chunks with it."""

    score: Callable[["torch.Tensor"], "torch.Tensor"]
    row_elements: int

    @classmethod
    def of_model(cls, model: "CIRModel", candidates: "torch.Tensor") -> "GalleryScores":
        """The model's ``similarity`` against ``candidates`` [N, *c]: through its scorer with the
        gallery prepared once when the model's similarity is its scorer's (``scorer_of``), else
        ``model.similarity(chunk, candidates)`` per chunk."""
        scorer = scorer_of(model)
        if scorer is not None:
            return cls.of_scorer(scorer, candidates)
        return cls(lambda queries: model.similarity(queries, candidates), _row_elements(candidates))

    @classmethod
    def of_scorer(cls, scorer: "Scorer", candidates: "torch.Tensor") -> "GalleryScores":
        """``scorer(chunk, candidates)`` with ``candidates`` prepared once."""
        prepared = scorer.prepare_candidates(candidates)
        return cls(lambda queries: scorer.score_prepared(scorer.prepare_query(queries), prepared),
                   _row_elements(prepared))


def _row_elements(candidates: "torch.Tensor") -> int:
    return candidates.shape[0] * prod(candidates.shape[1:-1])


def chunk_rows(row_elements: int, chunk_size: int) -> int:
    """Query rows per chunk: ``chunk_size`` unless the [rows, N, *tokens] block would pass the cap."""
    return max(1, min(chunk_size, MAX_CHUNK_ELEMENTS // max(1, row_elements)))


def rank_targets(
    gallery: GalleryScores,
    queries: "torch.Tensor",
    target_cols: "torch.Tensor",
    exclude_cols: "torch.Tensor | None" = None,
    *,
    chunk_size: int = 1024,
) -> "np.ndarray":
    """0-based rank of each query's target in ``gallery`` (the module's tie rule).

    ``queries`` [Q, *q] are raw embeddings, scored chunk by chunk. ``exclude_cols`` (or -1 for
    none) names a column left out of each query's ranking. Returns int64 [Q].
    """
    import numpy as np
    import torch

    rows = chunk_rows(gallery.row_elements, chunk_size)
    ranks = []
    for start in range(0, len(queries), rows):
        stop = start + rows
        excluded = None if exclude_cols is None else exclude_cols[start:stop]
        ranks.append(ranks_from_scores(gallery.score(queries[start:stop]), target_cols[start:stop], excluded))
    if not ranks:
        return np.zeros(0, dtype=np.int64)
    return torch.cat(ranks).cpu().numpy().astype(np.int64)


def ranks_from_scores(
    scores: "torch.Tensor", target_cols: "torch.Tensor", exclude_cols: "torch.Tensor | None" = None
) -> "torch.Tensor":
    """[b, N] scores -> [b] target ranks: candidates at or above the target's score, minus itself."""
    import torch

    rows = torch.arange(scores.shape[0], device=scores.device)
    target_cols = target_cols.to(scores.device)
    target_scores = scores[rows, target_cols].unsqueeze(1)
    if torch.isnan(target_scores).any():
        raise ValueError("a target's score is NaN: cannot rank")
    ahead = (scores >= target_scores).sum(dim=1) - 1
    if exclude_cols is not None:
        exclude_cols = exclude_cols.to(scores.device)
        applies = (exclude_cols >= 0) & (exclude_cols != target_cols)
        excluded_ahead = scores[rows, exclude_cols.clamp(min=0)] >= target_scores.squeeze(1)
        ahead = ahead - (applies & excluded_ahead).long()
    return ahead


def gallery_key(
    model_spec: str, checkpoint_hash: str, gallery: Sequence[str], image_paths: dict[str, Path], precision: str = "fp32"
) -> str:
    """Cache key of one encoded gallery: the model's weights, the precision it ran at and the ordered
    image files (fp32 keys are those of before precisions existed, so old caches stay valid).

    Encoded features depend on nothing else, so two benchmarks over the same images (FashionIQ and
    enhFashionIQ, whose images/ links to FashionIQ's) share one entry. Files are named by their
    resolved path, size and modification time: a regenerated folder (e.g. a synthetic world rebuilt
    with another seed under the same ids) is encoded afresh.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([model_spec, checkpoint_hash, len(gallery)]).encode())
    if precision != "fp32":
        digest.update(f"\nprecision {precision}".encode())
    for image_id in gallery:
        path = Path(image_paths[image_id]).resolve()
        stat = path.stat()
        digest.update(f"\n{path}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


class FeatureCache:
    """Encoded galleries on disk as safetensors, one file per ``gallery_key``."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def load(self, key: str, expected_rows: int) -> "torch.Tensor | None":
        """The cached features, or None when absent or unreadable (then the caller re-encodes)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            features = load_file(str(path))["features"]
        except (SafetensorError, KeyError, OSError):
            return None
        return features if features.shape[0] == expected_rows else None

    def save(self, key: str, features: "torch.Tensor", metadata: dict[str, str]) -> Path:
        """Write atomically (``cirbench.files``), so a killed run never leaves half a file."""
        from safetensors.torch import save_file

        from cirbench.files import replacing

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        with replacing(path) as partial:
            save_file({"features": features.detach().cpu().contiguous()}, str(partial), metadata=metadata)
        return path


def default_cache_dir() -> Path:
    """``features/`` under the cache root (``$CIRBENCH_CACHE``, else ``~/.cache/cirbench``)."""
    from cirbench.files import cache_root

    return cache_root() / "features"
