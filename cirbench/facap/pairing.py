"""CLIP pairing as in the paper: within one source and category, every image's top-20 most similar
images by inner product (other views of the same product excluded), and one of them at random.

The search is exact (FAISS ``IndexFlatIP``, ``flat_ip_index``: on the GPUs when FAISS was
installed with GPU support and sees one) and runs over chunks of queries, so memory holds the
vectors, one chunk of results and the kept top-k, never the similarity matrix. The random pick is
a hash of (seed, image id): the same image gets the same partner in every run, resumed or not.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Callable, Sequence

import numpy as np

TOP_K = 20
CHUNK_SIZE = 16384


def group_indices(keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], np.ndarray]:
    """(source, category) -> positions of its images, groups in sorted order."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for position, key in enumerate(keys):
        groups[key].append(position)
    return {key: np.asarray(groups[key], dtype=np.int64) for key in sorted(groups)}


def flat_ip_index(dim: int):
    """An exact inner-product FAISS index over ``dim``-d vectors: on every GPU when the installed
    FAISS has GPU support and sees a GPU (faiss-gpu has no CPU fallback of its own, so the GPU count
    is checked first), else on the CPU (faiss-cpu, the default install)."""
    import faiss

    index = faiss.IndexFlatIP(dim)
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    if get_num_gpus is not None and get_num_gpus() > 0:
        return faiss.index_cpu_to_all_gpus(index)
    return index


def search_excluding_products(
    vectors: np.ndarray,
    products: np.ndarray,
    queries: np.ndarray,
    k: int = TOP_K,
    chunk_size: int = CHUNK_SIZE,
    advance: Callable[[int], None] = lambda n: None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` neighbours of ``vectors[queries]`` among ``vectors`` whose product code
    differs from the query's (so the query itself is out too).

    Returns ids [Q, k] (-1 where fewer than k candidates exist) and their scores [Q, k]. Searching
    ``k + (largest product's view count)`` deep is enough: at most that many hits share a product.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = flat_ip_index(vectors.shape[1])
    index.add(vectors)
    depth = min(len(vectors), k + int(np.bincount(products).max()))
    ids_out = np.full((len(queries), k), -1, dtype=np.int64)
    scores_out = np.full((len(queries), k), -np.inf, dtype=np.float32)
    for start in range(0, len(queries), chunk_size):
        rows = queries[start : start + chunk_size]
        scores, ids = index.search(vectors[rows], depth)
        keep = (ids >= 0) & (products[np.maximum(ids, 0)] != products[rows][:, None])
        first_kept = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        kept = np.take_along_axis(keep, first_kept, axis=1)
        width = first_kept.shape[1]
        ids_out[start : start + len(rows), :width] = np.where(kept, np.take_along_axis(ids, first_kept, axis=1), -1)
        scores_out[start : start + len(rows), :width] = np.where(kept, np.take_along_axis(scores, first_kept, axis=1), -np.inf)
        advance(len(rows))
    return ids_out, scores_out


def stable_choice(seed: int, key: str, n: int) -> int:
    """A uniform pick in [0, n) that depends only on (seed, key)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n


def pair_group(
    image_ids: Sequence[str],
    vectors: np.ndarray,
    product_ids: Sequence[str],
    seed: int,
    queries: np.ndarray | None = None,
    k: int = TOP_K,
    chunk_size: int = CHUNK_SIZE,
    advance: Callable[[int], None] = lambda n: None,
) -> list[dict]:
    """One pair record per query image of one (source, category) group:
    ``{"key": reference id, "target": id or None, "rank": 1-based, "score": inner product}``."""
    _, products = np.unique(np.asarray(product_ids), return_inverse=True)
    queries = np.arange(len(image_ids)) if queries is None else queries
    ids, scores = search_excluding_products(vectors, products, queries, k, chunk_size, advance)
    records = []
    for row, query in enumerate(queries.tolist()):
        candidates = ids[row][ids[row] >= 0]
        key = image_ids[query]
        if len(candidates) == 0:
            records.append({"key": key, "target": None})
            continue
        pick = stable_choice(seed, key, len(candidates))
        records.append({
            "key": key, "target": image_ids[candidates[pick]], "rank": pick + 1,
            "score": round(float(scores[row, pick]), 6),
        })
    return records
