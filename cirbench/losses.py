"""The in-batch contrastive loss every model of the zoo trains with, across ranks.

Each query is scored against every target of the global batch (all ranks, see
``cirbench.distributed``) and trained with cross-entropy towards its own target. A target
that appears twice in the batch (same id) is not a negative of itself: those logits are masked.
Single process, this is the usual square [B, B] in-batch loss.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from cirbench.distributed import gather_strings, gather_with_grad, local_offset

Scores = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def duplicate_target_mask(local_ids: Sequence[str], all_ids: Sequence[str], offset: int) -> torch.Tensor:
    """[B, N] bool: True where column j holds row i's target id but is not row i's own column."""
    codes = {item: code for code, item in enumerate(dict.fromkeys(all_ids))}
    rows = torch.tensor([codes[item] for item in local_ids])
    columns = torch.tensor([codes[item] for item in all_ids])
    same = rows[:, None] == columns[None, :]
    own = torch.zeros_like(same)
    own[torch.arange(len(local_ids)), torch.arange(len(local_ids)) + offset] = True
    return same & ~own


def in_batch_contrastive(
    queries: torch.Tensor,
    targets: torch.Tensor,
    scores: Scores,
    target_ids: Sequence[str] | None = None,
) -> torch.Tensor:
    """Cross-entropy of each query [B, ...] against all targets [B, ...] of the global batch.

    ``scores(queries, all_targets) -> [B, N]`` gives the (already scaled) logits; row i's positive
    is this rank's i-th target. ``target_ids`` (one per local target) masks duplicate targets.
    """
    batch = queries.shape[0]
    if targets.shape[0] != batch:
        raise ValueError(f"{batch} queries but {targets.shape[0]} targets")
    logits = scores(queries, gather_with_grad(targets))
    offset = local_offset(batch)
    if target_ids:
        if len(target_ids) != batch:
            raise ValueError(f"{len(target_ids)} target ids for a batch of {batch}")
        mask = duplicate_target_mask(target_ids, gather_strings(target_ids), offset)
        logits = logits.masked_fill(mask.to(logits.device), float("-inf"))
    positives = torch.arange(batch, device=logits.device) + offset
    return F.cross_entropy(logits.float(), positives)


def scaled_cosine(scale: float | torch.Tensor) -> Scores:
    """Logits ``scale * cos(q, t)`` for [B, D] x [N, D] embeddings (CLIP-style)."""

    def scores(queries: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return scale * F.normalize(queries, dim=-1) @ F.normalize(targets, dim=-1).T

    return scores
