"""``cirbench bench eval``: the evaluator's scoring + ranking path against a bare matrix product.

Inputs are random multi-head features (12 heads x 256, as FashionBLIP-2) shaped like FashionIQ
val: 2,017 / 2,038 / 1,961 queries over galleries of 3,817 / 6,346 / 5,373 images. Encoders are
not timed.

- ours: exactly what the evaluator runs after encoding, for a model whose similarity is the
  multihead scorer's (FashionBLIP-2): ``retrieval.GalleryScores.of_model`` (prepare the gallery)
  and ``retrieval.rank_targets`` (prepare and score query chunks, turn scores into ranks).
- bare: the already prepared, flattened queries [Q, 3072] @ gallery [N, 3072].T, per category,
  nothing else (no normalisation, no ranking, the whole [Q, N] matrix at once).

Each path is warmed up once, then timed as the best of ``repeats`` runs, per category, in the
same process with torch's thread count as set. The ratio is ours / bare over the three
categories. Peak memory is the process's peak resident set size (``ru_maxrss``) in MB at the end:
the high-water mark of everything the process held (torch itself, the random features, both
paths); ``peak_mb_before`` is the same figure before the benchmark started (mostly torch's own
libraries). On CUDA the peak of GPU memory allocated by torch is reported as well.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any, Callable

from cirbench.interface import ModelMeta
from cirbench.scorers import ScorerSimilarity

FASHIONIQ_VAL_SHAPES = {"dress": (2017, 3817), "shirt": (2038, 6346), "toptee": (1961, 5373)}
HEADS, HEAD_DIM = 12, 256


class _MultiheadModel(ScorerSimilarity):
    """What the evaluator sees of a FashionBLIP-2 once its features are encoded: the multihead scorer."""

    meta = ModelMeta("bench", "features", "multihead", (HEADS, HEAD_DIM), (HEADS, HEAD_DIM))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (ru_maxrss: KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def best_times(paths: dict[str, Callable[[], Any]], repeats: int, device: str) -> dict[str, float]:
    """Fastest of ``repeats`` runs per path, after one warm-up each; the paths alternate within a
    repeat so that load from other processes hits them alike."""
    import torch

    def timed(work: Callable[[], Any]) -> float:
        start = time.perf_counter()
        work()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for work in paths.values():
        timed(work)  # warm-up
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(repeats):
        for name, work in paths.items():
            best[name] = min(best[name], timed(work))
    return best


def _category_inputs(n_queries: int, n_gallery: int, generator, device: str):
    import torch

    queries = torch.randn(n_queries, HEADS, HEAD_DIM, generator=generator).to(device)
    gallery = torch.randn(n_gallery, HEADS, HEAD_DIM, generator=generator).to(device)
    targets = torch.randint(0, n_gallery, (n_queries,), generator=generator)
    return queries, gallery, targets


def bench_category(n_queries: int, n_gallery: int, *, generator, chunk_size: int, repeats: int, device: str) -> dict[str, Any]:
    from cirbench.eval.retrieval import GalleryScores, rank_targets
    from cirbench.scorers import get_scorer

    scorer, model = get_scorer("multihead"), _MultiheadModel()
    queries, gallery, targets = _category_inputs(n_queries, n_gallery, generator, device)
    flat_queries, flat_gallery = scorer.prepare_query(queries), scorer.prepare_candidates(gallery)
    paths = {
        "ours": lambda: rank_targets(GalleryScores.of_model(model, gallery), queries, targets, chunk_size=chunk_size),
        "bare": lambda: flat_queries @ flat_gallery.T,
    }
    best = best_times(paths, repeats, device)
    return {"queries": n_queries, "gallery": n_gallery, "ours_s": best["ours"], "bare_s": best["bare"],
            "ratio": best["ours"] / best["bare"]}


def run_eval_bench(*, chunk_size: int = 1024, repeats: int = 5, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Time both paths on the three FashionIQ-val-sized categories; one result dict."""
    import torch

    peak_before = peak_rss_mb()
    generator = torch.Generator().manual_seed(seed)
    categories = {
        name: bench_category(q, n, generator=generator, chunk_size=chunk_size, repeats=repeats, device=device)
        for name, (q, n) in FASHIONIQ_VAL_SHAPES.items()
    }
    ours = sum(c["ours_s"] for c in categories.values())
    bare = sum(c["bare_s"] for c in categories.values())
    result = {
        "device": device, "torch_threads": torch.get_num_threads(), "chunk_size": chunk_size,
        "repeats": repeats, "heads": HEADS, "head_dim": HEAD_DIM, "categories": categories,
        "ours_s": ours, "bare_s": bare, "ratio": ours / bare, "peak_mb": peak_rss_mb(), "peak_mb_before": peak_before,
    }
    if device.startswith("cuda"):
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result
