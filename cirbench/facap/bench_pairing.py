"""``cirbench bench pairing``: our pairing against a bare FAISS exact search of the same shapes.

Random unit vectors in six categories (shares below, an assumption shaped like FACap: dresses and
tops dominate), products of 1 to 4 views. Per category, in the same run and the same process:

- bare: ``IndexFlatIP`` built and searched for the top-21 of every vector (top-20 + itself);
- ours: ``pair_group`` (index, chunked search deep enough to skip other views, top-20 kept,
  seeded pick, pair records).

The two alternate which goes first from one category to the next (cancelling a drift in machine
load), and with ``repeats`` > 1 each keeps its fastest time per category (the least disturbed by
other processes). Peak memory is the process's peak resident set size (both runs included).
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Callable

import numpy as np

from cirbench.facap.embedding import unit_rows
from cirbench.facap.pairing import TOP_K, flat_ip_index, pair_group

CATEGORY_SHARES = {"dress": 0.30, "top": 0.26, "pants": 0.14, "skirt": 0.11, "jacket": 0.10, "jumpsuit": 0.09}


def category_sizes(n: int) -> dict[str, int]:
    sizes = {c: int(n * share) for c, share in CATEGORY_SHARES.items()}
    sizes["dress"] += n - sum(sizes.values())
    return sizes


def _products(size: int, rng: np.random.Generator) -> list[str]:
    views = rng.integers(1, 5, size=size)  # enough products of 1-4 views to cover ``size`` images
    return [f"p{i}" for i in np.repeat(np.arange(size), views)[:size]]


def _bare_search(vectors: np.ndarray) -> None:
    index = flat_ip_index(vectors.shape[1])
    index.add(vectors)
    index.search(vectors, TOP_K + 1)


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def bench_pairing(n: int, dim: int, seed: int = 0, repeats: int = 1) -> dict:
    import faiss

    rng = np.random.default_rng(seed)
    timings = {"ours": 0.0, "bare": 0.0}
    for number, (category, size) in enumerate(category_sizes(n).items()):
        vectors = unit_rows(rng.standard_normal((size, dim), dtype=np.float32))
        products = _products(size, rng)
        ids = [f"{category}/{i}" for i in range(size)]
        runs = {"bare": lambda: _bare_search(vectors), "ours": lambda: pair_group(ids, vectors, products, seed)}
        order = ["bare", "ours"] if number % 2 == 0 else ["ours", "bare"]
        seconds: dict[str, list[float]] = {"bare": [], "ours": []}
        for _ in range(repeats):
            for name in order:
                seconds[name].append(_seconds(runs[name]))
        for name in timings:
            timings[name] += min(seconds[name])
    return {
        "n": n, "dim": dim, "repeats": repeats, "categories": category_sizes(n), "threads": faiss.omp_get_max_threads(),
        "ours_s": round(timings["ours"], 4), "bare_s": round(timings["bare"], 4),
        "ratio": round(timings["ours"] / timings["bare"], 3) if timings["bare"] else None,
        "peak_mb": round(peak_rss_mb(), 1),
    }
