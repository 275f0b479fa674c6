"""The per-epoch validation line: the shared evaluator on a benchmark's splits, summarised.

Recall@K per category, their unweighted mean and the protocol's headline, exactly as
``cirbench eval`` computes them (same evaluator, same protocol), without bootstrap intervals and
without a feature cache (the weights change every epoch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from cirbench.data.benchmarks import DATASETS
from cirbench.data.schema import DataError
from cirbench.eval.evaluator import evaluate
from cirbench.eval.metrics import category_mean, recall_at_k
from cirbench.eval.protocols import get_protocol

EVAL_KEYS = {"dataset", "root", "split", "categories", "missing", "protocol", "every", "batch_size"}


def make_validator(
    eval_cfg: dict[str, Any], source: str | Path, device: str, precision: str = "fp32"
) -> Callable[[nn.Module], dict[str, float]]:
    """A validator for the recipe's ``eval:`` section; the splits are read once, here. ``precision``
    "bf16" validates under bf16 autocast (the weights stay as training holds them)."""
    unknown = sorted(set(eval_cfg) - EVAL_KEYS)
    if unknown:
        raise DataError(source, f"eval.{unknown[0]}", f"unknown key; known: {', '.join(sorted(EVAL_KEYS))}")
    for key in ("dataset", "root"):
        if key not in eval_cfg:
            raise DataError(source, f"eval.{key}", "missing")
    protocol = get_protocol(eval_cfg.get("protocol", "fashioniq/v1"))
    splits = DATASETS.get(eval_cfg["dataset"])(
        eval_cfg["root"], split=eval_cfg.get("split", "val"), categories=eval_cfg.get("categories"),
        missing=eval_cfg.get("missing", "error"),
    )
    batch_size = int(eval_cfg.get("batch_size", 64))

    def validate(model: nn.Module) -> dict[str, float]:
        result = evaluate(model, splits, protocol, batch_size=batch_size, cache_dir=None, device=device, progress=False,
                          precision=precision)
        return summarise([split.ranks for split in result.splits], protocol.headline_ks)

    return validate


def summarise(ranks_per_category: list[np.ndarray], ks: tuple[int, ...]) -> dict[str, float | None]:
    """Mean over categories of Recall@K for each K (``category_mean``: None when a category has
    no queries), and their mean (the headline)."""
    means = {f"R@{k}": category_mean({str(i): recall_at_k(r, k) for i, r in enumerate(ranks_per_category)}) for k in ks}
    values = list(means.values())
    return {**means, "headline": None if None in values else sum(values) / len(values)}
