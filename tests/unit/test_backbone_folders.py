"""Where synth_tiny finds its tiny backbones: backbone_dir, else the variable, else the pair that
synth-backbones installed last (recorded in the cache), else one error saying what to run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cirbench.backbones.blip2 import SYNTH_BACKBONE_ENV, resolve_synth_backbone_dir
from cirbench.backbones.clip import SYNTH_CLIP_ENV, resolve_synth_clip_dir
from cirbench.backbones.folders import installed_record, record_installed

SHIPPED = Path(__file__).resolve().parents[2] / "cirbench" / "synth" / "pretrained"


@pytest.fixture
def nothing_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))
    for name in (SYNTH_CLIP_ENV, SYNTH_BACKBONE_ENV):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_without_anything_installed_the_error_says_what_to_run(nothing_installed):
    for resolve in (resolve_synth_clip_dir, resolve_synth_backbone_dir):
        with pytest.raises(FileNotFoundError, match=r"is installed: run `cirbench synth-backbones --world WORLD_DIR` once"):
            resolve()


def test_installed_backbones_are_found_without_variables_and_a_variable_overrides(nothing_installed, monkeypatch):
    world = nothing_installed / "world"
    folders = {kind: shutil.copytree(SHIPPED / kind, world / "backbones" / kind) for kind in ("clip", "blip2")}
    record_installed(world, folders)
    assert installed_record().parent == nothing_installed / "cache"
    assert resolve_synth_clip_dir() == folders["clip"].resolve()
    assert resolve_synth_backbone_dir() == folders["blip2"].resolve()
    monkeypatch.setenv(SYNTH_CLIP_ENV, str(SHIPPED / "clip"))
    assert resolve_synth_clip_dir() == SHIPPED / "clip"
    assert resolve_synth_clip_dir(folders["clip"]) == folders["clip"]  # backbone_dir first


def test_installed_backbones_that_were_deleted_name_where_they_were_looked_for(nothing_installed):
    world = nothing_installed / "world"
    record_installed(world, {"clip": world / "backbones" / "clip", "blip2": world / "backbones" / "blip2"})
    with pytest.raises(FileNotFoundError, match=r"clip \(from the record of the last synth-backbones .*synth_backbones.json\)"):
        resolve_synth_clip_dir()
    installed_record().write_bytes(b"\xff not json")  # a damaged record is no record
    with pytest.raises(FileNotFoundError, match="is installed: run"):
        resolve_synth_backbone_dir()


def test_a_worlds_own_backbones_are_kept_whatever_recipe_made_them_and_recorded(nothing_installed, tiny_world,
                                                                               monkeypatch):
    """The demo and the ablations never pre-train over what synth-backbones made (keep_existing)."""
    import json

    from cirbench.synth import pretrain
    from cirbench.synth.tiny_backbones import BackboneRecipe, backbone_dirs, ensure_backbones

    world = Path(shutil.copytree(tiny_world, nothing_installed / "world"))
    made = ensure_backbones(world, BackboneRecipe(steps=2, batch_size=8))
    assert json.loads(installed_record().read_text())["blip2"] == str(made["blip2"].resolve())
    weights = {kind: (folder / next(p.name for p in folder.glob("*.safetensors"))).read_bytes()
               for kind, folder in made.items()}

    def no_pretraining(*args, **kwargs):
        raise AssertionError("pre-trained over the world's own backbones")

    monkeypatch.setattr(pretrain, "pretrain_blip2_backbone", no_pretraining)
    monkeypatch.setattr(pretrain, "pretrain_clip_backbone", no_pretraining)
    installed_record().unlink()
    assert ensure_backbones(world, keep_existing=True) == backbone_dirs(world)  # another recipe asked: kept
    assert json.loads(installed_record().read_text())["clip"] == str(made["clip"].resolve())
    assert weights == {kind: (folder / next(p.name for p in folder.glob("*.safetensors"))).read_bytes()
                       for kind, folder in made.items()}
    with pytest.raises(AssertionError, match="pre-trained over"):  # without keep_existing: the recipe decides
        ensure_backbones(world)
