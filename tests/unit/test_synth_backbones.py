"""A world whose shop sources are not the default one's pre-trains its own tiny backbones: said
before it starts, with progress lines without bars, and two at once gives the same weights."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from cirbench.synth.backbones import (
    BackboneRecipe,
    backbone_dirs,
    backbones_ready,
    ensure_backbones,
    pretraining_minutes,
    pretraining_progress,
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
    lines: list[str] = []
    with pretraining_progress(False, lines.append) as on_step:
        ensure_backbones(one, RECIPE, on_step)
    assert backbones_ready(one, RECIPE)
    assert lines[0] == "pre-training tiny clip: 2 steps" and "pre-training tiny blip2: step 2/2" in lines[-1]
    assert sum("/2, " in line for line in lines) == 4  # a line per quarter (here: per step) of each backbone
    ensure_backbones(two, RECIPE, jobs=2)
    assert _weights(one) == _weights(two) and len(_weights(one)) == 2


def test_the_announced_time_counts_the_backbones_side_by_side():
    assert pretraining_minutes(jobs=2) < pretraining_minutes(jobs=1)
    assert pretraining_minutes(BackboneRecipe(steps=150)) == 0.5 * pretraining_minutes()
