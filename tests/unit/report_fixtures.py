"""Result records and ranks made from chosen target ranks (no model, no evaluator run), for the
report tests: the records go through the real ``results`` writers, so tables read them as usual."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from cirbench.eval.evaluator import EvalResult, SplitRanks
from cirbench.eval.protocols import FASHIONIQ_V1
from cirbench.results import eval_records, rank_rows, write_run

CATEGORIES = ("dress", "shirt", "toptee")


def eval_result(
    model: str, checkpoint: str, ranks_by_category: Mapping[str, Sequence[int]], dataset: str = "synth_fashioniq"
) -> EvalResult:
    splits = [
        SplitRanks(dataset, category, "val", [f"{category}/val/{i}" for i in range(len(ranks))],
                   np.asarray(ranks, dtype=np.int64), n_gallery=1000, n_queries_total=len(ranks))
        for category, ranks in ranks_by_category.items()
    ]
    return EvalResult(model, checkpoint, FASHIONIQ_V1.id, "cpu", splits)


def write_result_run(
    folder: Path, results: Sequence[EvalResult], run_prefix: str = "run", seed: int = 0,
    labels: Sequence[str | None] | None = None,
) -> tuple[list, list]:
    """Each result as its own run in ``folder`` (with its table label, as ``eval --all`` gives
    one); returns (records, ranks rows) as written."""
    records, ranks = [], []
    for number, result in enumerate(results):
        run_id = f"{run_prefix}-{number}"
        label = labels[number] if labels else None
        records += eval_records(result, FASHIONIQ_V1, run_id=run_id, seed=seed, n_resamples=200, label=label)
        ranks += [{**row, "label": label} if label else row for row in rank_rows(result, run_id=run_id, seed=seed)]
    write_run(folder, records, ranks)
    return records, ranks


def hit_ranks(n: int, n_hits: int, hit_rank: int = 0, miss_rank: int = 500) -> list[int]:
    """``n_hits`` queries at ``hit_rank`` then the rest at ``miss_rank``."""
    return [hit_rank] * n_hits + [miss_rank] * (n - n_hits)
