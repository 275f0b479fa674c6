"""Learning-rate schedules as torch schedulers, for the training loop and the backbone pre-training.

A recipe's ``train.schedule`` (``cirbench.train.recipe.Schedule``) becomes:

- ``onecycle``: torch's ``OneCycleLR`` (two phases, cosine annealing, no momentum cycling): from
  lr/``div_factor`` up to lr over the first ``pct_start`` of the steps, then down to
  lr/(``div_factor`` x ``final_div_factor``). SPRC trains with it.
- ``cosine`` / ``constant``: torch's ``LambdaLR`` over ``warmup_factor``: a linear warm-up over
  ``warmup_steps``, then a cosine from 1 down to ``min_ratio`` (or 1).

Every lr is a function of the step alone (both schedulers compute it in closed form), and the
loop stores the scheduler's state in each checkpoint, so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from functools import partial

import torch

from cirbench.train.recipe import Schedule


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler of ``schedule`` over ``total_steps`` optimizer steps, peaking at each param
    group's current lr; step it after every optimizer step."""
    if schedule.name == "onecycle":
        return one_cycle(optimizer, total_steps, pct_start=schedule.pct_start, div_factor=schedule.div_factor,
                         final_div_factor=schedule.final_div_factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(warmup_factor, schedule, total_steps))


def warmup_factor(schedule: Schedule, total_steps: int, step: int) -> float:
    """``cosine`` / ``constant``: the multiplier of the base lr at optimizer step ``step`` (0-based)."""
    if step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    if schedule.name == "constant":
        return 1.0
    decay_steps = max(total_steps - schedule.warmup_steps, 1)
    progress = min((step - schedule.warmup_steps) / decay_steps, 1.0)
    return schedule.min_ratio + (1 - schedule.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def one_cycle(optimizer: torch.optim.Optimizer, total_steps: int, *, pct_start: float = 0.3,
              div_factor: float = 25.0, final_div_factor: float = 1e4,
              cycle_momentum: bool = False) -> torch.optim.lr_scheduler.OneCycleLR:
    """torch's ``OneCycleLR`` peaking at each param group's current lr.

    Args:
        optimizer: its groups' lr is the peak.
        total_steps: optimizer steps of the whole run.
        pct_start: share of the steps spent rising.
        div_factor: peak / initial lr.
        final_div_factor: initial / final lr.
        cycle_momentum: also cycle Adam's beta1 (or SGD's momentum) between 0.95 and 0.85.

    torch divides by zero when the rise lasts exactly one step (``pct_start * total_steps == 1``);
    the rise is then made a hair shorter, which puts the peak at step 0, as a one-step rise means.
    """
    while pct_start * total_steps - 1 == 0:
        pct_start = math.nextafter(pct_start, 0.0)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[group["lr"] for group in optimizer.param_groups], total_steps=total_steps,
        pct_start=pct_start, div_factor=div_factor, final_div_factor=final_div_factor, cycle_momentum=cycle_momentum,
    )
