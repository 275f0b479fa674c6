"""Learning-rate schedules as pure functions of the optimizer step.

The loop sets ``lr = base_lr * lr_factor(step)`` before every optimizer step, so a resumed run
needs no scheduler state: the factor depends on the step alone.

- ``constant``: linear warm-up over ``warmup_steps``, then 1.
- ``cosine``: linear warm-up over ``warmup_steps``, then a cosine from 1 down to ``min_ratio``.
- ``onecycle``: PyTorch's ``OneCycleLR`` (two phases, cosine annealing): from 1/``div_factor``
  up to 1 over the first ``pct_start`` of the steps, then down to
  1/(``div_factor`` x ``final_div_factor``). SPRC trains with it (pct_start 1.5/epochs,
  div_factor 100).
"""

from __future__ import annotations

import math

from cirbench.train.recipe import Schedule

SCHEDULES = ("constant", "cosine", "onecycle")


def lr_factor(schedule: Schedule, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based)."""
    if schedule.name == "onecycle":
        return _onecycle(schedule, step, total_steps)
    if step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    if schedule.name == "constant":
        return 1.0
    decay_steps = max(total_steps - schedule.warmup_steps, 1)
    progress = min((step - schedule.warmup_steps) / decay_steps, 1.0)
    return schedule.min_ratio + (1 - schedule.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _onecycle(schedule: Schedule, step: int, total_steps: int) -> float:
    start = 1 / schedule.div_factor
    end = start / schedule.final_div_factor
    peak_step = schedule.pct_start * total_steps - 1
    if step <= peak_step:
        return _cosine_between(start, 1.0, step / peak_step if peak_step > 0 else 1.0)
    return _cosine_between(1.0, end, (step - peak_step) / (total_steps - 1 - peak_step))


def _cosine_between(start: float, end: float, fraction: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))
