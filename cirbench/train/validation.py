"""The per-epoch validation line: the shared evaluator on a benchmark's splits, summarised.

Recall@K per category, their unweighted mean and the protocol's headline, exactly as
``cirbench eval`` computes them (same evaluator, same protocol), without bootstrap intervals and
without a feature cache (the weights change every epoch).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from torch import nn

from cirbench.data.benchmarks import DATASETS
from cirbench.eval.evaluator import evaluate
from cirbench.eval.metrics import category_mean, recall_at_k
from cirbench.eval.protocols import get_protocol
from cirbench.train.recipe import EvalSection


def make_validator(
    section: EvalSection, device: str, precision: str = "fp32"
) -> Callable[[nn.Module], dict[str, float]]:
    """A validator for the recipe's (validated) ``eval:`` section; the splits are read once, here.

    Args:
        section: the recipe's ``eval:`` section.
        device: where the model is (inputs go there).
        precision: "bf16" validates under bf16 autocast (the weights stay as training holds them).
    """
    protocol = get_protocol(section.protocol)
    categories = list(section.categories) if section.categories is not None else None
    splits = DATASETS.get(section.dataset)(section.root, split=section.split, categories=categories,
                                           missing=section.missing)

    def validate(model: nn.Module) -> dict[str, float]:
        result = evaluate(model, splits, protocol, batch_size=section.batch_size, cache_dir=None, device=device,
                          progress=False, precision=precision)
        return summarise([split.ranks for split in result.splits], protocol.headline_ks)

    return validate


def summarise(ranks_per_category: list[np.ndarray], ks: tuple[int, ...]) -> dict[str, float | None]:
    """Mean over categories of Recall@K for each K (``category_mean``: None when a category has
    no queries), and their mean (the headline)."""
    means = {f"R@{k}": category_mean({str(i): recall_at_k(r, k) for i, r in enumerate(ranks_per_category)}) for k in ks}
    values = list(means.values())
    return {**means, "headline": None if None in values else sum(values) / len(values)}
