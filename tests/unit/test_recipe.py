"""Recipes validated in full by the one section validator: every shipped recipe reads, and every
kind of mistake (section, key, type, range, model option, stage/task) is named with its file."""

from __future__ import annotations

from pathlib import Path

import pytest

from cirbench.config import apply_overrides, load_recipe
from cirbench.errors import DataError
from cirbench.registry import RegistryError
from cirbench.train.recipe import read_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
STAGE1 = RECIPES / "fashionblip2" / "stage1_facap_tiny.yaml"


@pytest.mark.parametrize("path", sorted(p for p in RECIPES.rglob("*.yaml") if "base" not in p.parts), ids=str)
def test_every_shipped_recipe_is_valid(path):
    recipe = read_recipe(load_recipe(path), path)
    assert recipe.spec.split(":")[0] == path.relative_to(RECIPES).parts[0]
    assert type(recipe.options).__name__.endswith("Options")


@pytest.mark.parametrize("overrides, message", [
    (["trian.lr=1"], r"trian: unknown key \(did you mean train\?\)"),
    (["train.lr=fast"], "train.lr: must be a number, got 'fast'"),
    (['train.batch_size="64"'], "train.batch_size: must be an integer, got '64'"),
    (["train.tasks=cir"], "train.tasks: must be a list of strings, got 'cir'"),
    (["train.epochs=0"], "train.epochs: must be at least 1"),
    (["train.epochs=null"], "train.epochs/steps: give exactly one of epochs and steps"),
    (["train.grad_accum=0"], "train.grad_accum: must be at least 1"),
    (["train.precision=fp16"], "train.precision: must be one of 'fp32', 'bf16'"),
    (["train.schedule.warmup=5"], r"train.schedule.warmup: unknown key \(did you mean warmup_steps\?\)"),
    (["train.betas=[0.9, 1.0]"], r"train.betas: both must be in \[0, 1\)"),
    (["data.kind=facapp"], "data.kind: unknown training data kind 'facapp'. Did you mean: facap"),
    (["data.fraction=1.5"], "data.fraction: must be at most 1"),
    (["data.image_root=x", "data.kind=fashioniq"], "data.image_root: only for kind facap"),
    (["eval.dataset=fashioniq", "eval.root=x", "eval.every=0"], "eval.every: must be at least 1"),
    (["eval.dataset=fashioniq", "eval.root=x", "eval.protocol=v9"], "eval.protocol: unknown protocol 'v9'"),
    (["model.overrides.use_adaptrs=false"], r"model.overrides.use_adaptrs: unknown key \(did you mean use_adapters\?\)"),
    (["model.overrides.use_adapters=maybe"], "model.overrides.use_adapters: must be true or false, got 'maybe'"),
    (["model.overrides.matching=local"], "model.overrides.matching: must be one of 'multihead', 'global'"),
    (["model.overrides.num_heads=0"], "model.overrides.num_heads: must be at least 1"),
    (["model.name=sprc"], "model.name: the recipe trains 'sprc', not 'fashionblip2'"),
])
def test_a_bad_recipe_is_refused_naming_the_file_and_the_key(overrides, message):
    config = apply_overrides(load_recipe(STAGE1), overrides, STAGE1)
    with pytest.raises(DataError, match=message) as error:
        read_recipe(config, STAGE1, "fashionblip2")
    assert error.value.file == str(STAGE1)


def test_the_commands_variant_wins_and_an_unknown_variant_lists_the_known_ones():
    config = load_recipe(STAGE1)
    assert read_recipe(config, STAGE1).spec == "fashionblip2:synth_tiny"
    assert read_recipe(config, STAGE1, "fashionblip2:test_tiny").spec == "fashionblip2:test_tiny"
    with pytest.raises(RegistryError, match="no variant 'tiny'"):
        read_recipe(config, STAGE1, "fashionblip2:tiny")


def test_each_model_family_checks_its_own_options():
    sprc = RECIPES / "sprc" / "fashioniq_tiny.yaml"
    with pytest.raises(DataError, match="model.overrides.image_preprocess: must be one of 'targetpad', 'resize'"):
        read_recipe(apply_overrides(load_recipe(sprc), ["model.overrides.image_preprocess=crop"], sprc), sprc)
    clip = RECIPES / "clip4cir" / "stage1_tiny.yaml"
    with pytest.raises(DataError, match="model.overrides.dropout: must be at most 1"):
        read_recipe(apply_overrides(load_recipe(clip), ["model.overrides.dropout=2"], clip), clip)
    assert read_recipe(apply_overrides(load_recipe(clip), ["model.overrides.pad_ratio=null"], clip), clip).options.pad_ratio is None


def test_the_targetpad_ratio_of_the_options_is_the_backbones():
    from cirbench.backbones.targetpad import TARGETPAD_RATIO
    from cirbench.baselines.options import TARGETPAD_RATIO as OPTIONS_RATIO

    assert OPTIONS_RATIO == TARGETPAD_RATIO
