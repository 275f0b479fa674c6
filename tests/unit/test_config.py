"""Recipes as data: include merges, cycles, overrides, a stable hash."""

from __future__ import annotations

import pytest

from cirbench.config import apply_overrides, config_hash, deep_merge, load_recipe, parse_override
from cirbench.data.schema import DataError


def write(path, text):
    path.write_text(text)
    return path


def test_include_merges_recursively_and_the_including_file_wins(tmp_path):
    write(tmp_path / "base.yaml", "train:\n  lr: 0.001\n  epochs: 10\nmodel: sprc\n")
    recipe = write(tmp_path / "ablation.yaml", "include: base.yaml\ntrain:\n  lr: 0.0001\n")
    assert load_recipe(recipe) == {"train": {"lr": 0.0001, "epochs": 10}, "model": "sprc"}


def test_several_includes_apply_in_order(tmp_path):
    write(tmp_path / "a.yaml", "x: 1\ny: 1\n")
    write(tmp_path / "b.yaml", "y: 2\nz: 2\n")
    recipe = write(tmp_path / "c.yaml", "include: [a.yaml, b.yaml]\nz: 3\n")
    assert load_recipe(recipe) == {"x": 1, "y": 2, "z": 3}


def test_include_cycle_is_an_error_naming_the_chain(tmp_path):
    write(tmp_path / "a.yaml", "include: b.yaml\n")
    write(tmp_path / "b.yaml", "include: a.yaml\n")
    with pytest.raises(DataError, match="include cycle: a.yaml -> b.yaml -> a.yaml"):
        load_recipe(tmp_path / "a.yaml")


def test_missing_include_and_bad_yaml_name_the_file(tmp_path):
    recipe = write(tmp_path / "r.yaml", "include: nowhere.yaml\n")
    with pytest.raises(DataError, match="include: nowhere.yaml") as error:
        load_recipe(recipe)
    assert error.value.file == str(recipe.resolve())
    with pytest.raises(DataError, match="not valid YAML"):
        load_recipe(write(tmp_path / "bad.yaml", "a: [1, 2\n"))
    with pytest.raises(DataError, match="top level must be a mapping"):
        load_recipe(write(tmp_path / "list.yaml", "- 1\n- 2\n"))


def test_overrides_parse_values_as_yaml_and_create_missing_keys():
    assert parse_override("train.lr=1e-4") == (["train", "lr"], 1e-4)
    config = {"train": {"lr": 0.1, "epochs": 3}}
    out = apply_overrides(config, ["train.lr=0.5", "data.categories=[dress, shirt]", "name=run1"])
    assert out == {"train": {"lr": 0.5, "epochs": 3}, "data": {"categories": ["dress", "shirt"]}, "name": "run1"}
    assert config == {"train": {"lr": 0.1, "epochs": 3}}  # the input is not modified


def test_bad_overrides_are_refused():
    with pytest.raises(ValueError, match="key.sub=value"):
        parse_override("train.lr")
    with pytest.raises(ValueError, match="'lr' is not a mapping"):
        apply_overrides({"train": {"lr": 0.1}}, ["train.lr.x=1"])


def test_hash_is_stable_under_key_order_and_changes_with_values():
    a = {"train": {"lr": 0.1, "epochs": 3}, "model": "sprc"}
    b = {"model": "sprc", "train": {"epochs": 3, "lr": 0.1}}
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 16
    assert config_hash(a) != config_hash(deep_merge(a, {"train": {"lr": 0.2}}))
    assert config_hash({"x": 1}) == "5041bf1f713df204"  # sha256 of the canonical JSON {"x":1}


def test_scientific_notation_is_a_float_in_recipes_and_overrides(tmp_path):
    recipe = write(tmp_path / "r.yaml", "train:\n  lr: 2e-5\n  wd: 5.0e-2\n  name: 1e\n")
    assert load_recipe(recipe) == {"train": {"lr": 2e-5, "wd": 0.05, "name": "1e"}}
    assert parse_override("train.lr=-3E+2")[1] == -300.0
