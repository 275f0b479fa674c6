"""A world whose shop sources are not the default one's pre-trains its own tiny backbones: known
to be needed before it starts (so the demo can say so, with the expected time), and two at once
gives the same weights as one after the other."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from cirbench.synth.tiny_backbones import (
    BackboneRecipe,
    backbone_dirs,
    backbones_ready,
    ensure_backbones,
    pretraining_minutes,
)

RECIPE = BackboneRecipe(steps=2, batch_size=8)


def _weights(world: Path) -> dict[str, str]:
    return {f"{name}/{f.name}": hashlib.sha256(f.read_bytes()).hexdigest()
            for name, folder in backbone_dirs(world).items() for f in sorted(folder.glob("*.safetensors"))}


def test_two_backbones_at_once_are_those_made_one_after_the_other(tiny_world, tmp_path, monkeypatch):
    from cirbench.backbones.blip2 import SYNTH_BACKBONE_ENV
    from cirbench.backbones.clip import SYNTH_CLIP_ENV

    for name in (SYNTH_BACKBONE_ENV, SYNTH_CLIP_ENV):  # ensure_backbones sets them; restored after the test
        monkeypatch.delenv(name, raising=False)
    one, two = (Path(shutil.copytree(tiny_world, tmp_path / name)) for name in ("one", "two"))
    assert not backbones_ready(one, RECIPE)
    steps: list[tuple[str, int, int]] = []
    ensure_backbones(one, RECIPE, lambda name, step, total: steps.append((name, step, total)))
    assert backbones_ready(one, RECIPE)
    assert steps == [("clip", 1, 2), ("clip", 2, 2), ("blip2", 1, 2), ("blip2", 2, 2)]
    ensure_backbones(two, RECIPE, jobs=2)
    assert _weights(one) == _weights(two) and len(_weights(one)) == 2


def test_the_announced_time_counts_the_backbones_side_by_side():
    assert pretraining_minutes(jobs=2) < pretraining_minutes(jobs=1)
    assert pretraining_minutes(BackboneRecipe(steps=150)) == 0.5 * pretraining_minutes()
