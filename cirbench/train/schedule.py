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
from dataclasses import dataclass, fields
from typing import Any

SCHEDULES = ("constant", "cosine", "onecycle")


@dataclass(frozen=True)
class Schedule:
    name: str = "cosine"
    warmup_steps: int = 0
    min_ratio: float = 0.0  # cosine: final lr / base lr
    pct_start: float = 0.3  # onecycle: fraction of the steps spent rising
    div_factor: float = 25.0  # onecycle: base lr / initial lr
    final_div_factor: float = 1e4  # onecycle: initial lr / final lr

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.name!r}; known: {', '.join(SCHEDULES)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Schedule":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown schedule key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def lr_factor(self, step: int, total_steps: int) -> float:
        """Multiplier of the base learning rate for optimizer step ``step`` (0-based)."""
        if self.name == "onecycle":
            return self._onecycle(step, total_steps)
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.name == "constant":
            return 1.0
        decay_steps = max(total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / decay_steps, 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def _onecycle(self, step: int, total_steps: int) -> float:
        start = 1 / self.div_factor
        end = start / self.final_div_factor
        peak_step = self.pct_start * total_steps - 1
        if step <= peak_step:
            return _cosine_between(start, 1.0, step / peak_step if peak_step > 0 else 1.0)
        return _cosine_between(1.0, end, (step - peak_step) / (total_steps - 1 - peak_step))


def _cosine_between(start: float, end: float, fraction: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))
