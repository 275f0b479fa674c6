"""Recipes as data: include merges, cycles, overrides, a stable hash."""

from __future__ import annotations

import pytest

from cirbench.config import apply_overrides, config_hash, deep_merge, load_recipe, parse_override
from cirbench.errors import DataError


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
    with pytest.raises(DataError, match="r.yaml: --set train.lr: must look like key.sub=value"):
        parse_override("train.lr", "r.yaml")
    with pytest.raises(DataError, match=r"--set train.lr=\[1,: the value is not valid YAML"):
        apply_overrides({}, ["train.lr=[1,"])
    with pytest.raises(DataError, match="train.lr is not a mapping"):
        apply_overrides({"train": {"lr": 0.1}}, ["train.lr.x=1"])
    assert apply_overrides({"eval": None}, ["eval.root=x"]) == {"eval": {"root": "x"}}


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


# ---- the one section validator -----------------------------------------------------------------

from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Literal  # noqa: E402

from cirbench.config import SectionError, at_least, between, greater_than, read_section  # noqa: E402


@dataclass(frozen=True)
class _Inner:
    name: Literal["a", "b"] = "a"
    share: float = field(default=0.5, metadata=between(0, 1, low_open=True))


@dataclass(frozen=True)
class _Section:
    stage: str
    tasks: tuple[str, ...] = ("cir",)
    steps: int | None = field(default=None, metadata=at_least(1))
    lr: float = field(default=1e-4, metadata=greater_than(0))
    betas: tuple[float, float] = (0.9, 0.999)
    flag: bool = False
    inner: _Inner = field(default_factory=_Inner)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.stage == "never":
            raise SectionError("stage", "is never allowed")


def test_read_section_reads_types_without_coercion():
    section = read_section(_Section, {"stage": "s", "tasks": ["cir", "ctr"], "steps": 3, "lr": 1,
                                      "betas": [0.8, 0.9], "flag": True, "inner": {"name": "b"}, "extra": {"k": [1]}},
                           "r.yaml", "train")
    assert section == _Section("s", ("cir", "ctr"), 3, 1.0, (0.8, 0.9), True, _Inner("b"), {"k": [1]})
    assert isinstance(section.lr, float)  # an integer is a number
    assert read_section(_Section, {"stage": "s", "steps": None}, "r.yaml", "train").steps is None


@pytest.mark.parametrize("values, message", [
    ({"stage": "s", "lr": "fast"}, r"r.yaml: train.lr: must be a number, got 'fast' \(a string\)"),
    ({"stage": "s", "steps": "64"}, r"train.steps: must be an integer or null, got '64' \(a string\)"),
    ({"stage": "s", "steps": 2.0}, "train.steps: must be an integer or null, got 2.0"),
    ({"stage": "s", "steps": True}, "train.steps: must be an integer or null, got True"),
    ({"stage": "s", "tasks": "cir"}, "train.tasks: must be a list of strings, got 'cir'"),
    ({"stage": "s", "tasks": ["cir", 3]}, r"train.tasks\[1\]: must be a string, got 3"),
    ({"stage": "s", "flag": "yes"}, "train.flag: must be true or false"),
    ({"stage": "s", "betas": [0.9]}, "train.betas: must be a list of 2 items"),
    ({"stage": "s", "steps": 0}, "train.steps: must be at least 1, got 0"),
    ({"stage": "s", "lr": 0}, "train.lr: must be greater than 0, got 0"),
    ({"stage": "s", "lr": float("nan")}, "train.lr: must be a finite number, got nan"),
    ({"stage": "s", "lr": float("inf")}, "train.lr: must be a finite number, got inf"),
    ({"stage": "s", "inner": {"share": 1.5}}, "train.inner.share: must be at most 1, got 1.5"),
    ({"stage": "s", "inner": {"share": 0}}, "train.inner.share: must be greater than 0"),
    ({"stage": "s", "inner": {"name": "c"}}, "train.inner.name: must be one of 'a', 'b', got 'c'"),
    ({"stage": "s", "inner": "a"}, "train.inner: must be a mapping"),
    ({"stage": "s", "stpes": 3}, r"train.stpes: unknown key \(did you mean steps\?\); known: betas, "),
    ({"steps": 3}, "train.stage: missing"),
    ({"stage": "never"}, "train.stage: is never allowed"),
])
def test_read_section_refuses_with_the_file_and_the_dotted_key(values, message):
    with pytest.raises(DataError, match=message):
        read_section(_Section, values, "r.yaml", "train")


def test_read_section_refuses_a_section_that_is_not_a_mapping():
    with pytest.raises(DataError, match="r.yaml: train: must be a mapping of keys, got \\[1\\] \\(a list\\)"):
        read_section(_Section, [1], "r.yaml", "train")
    with pytest.raises(DataError, match="train.stage: missing"):
        read_section(_Section, None, "r.yaml", "train")


# ---- named recipes ---------------------------------------------------------------------------


def test_a_shipped_recipe_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    from cirbench.config import resolve_recipe, shipped_recipe_names, shipped_recipes

    monkeypatch.chdir(tmp_path)  # not the checkout: recipes/ is not beside us
    expected = (shipped_recipes() / "fashionblip2" / "stage1_facap_tiny.yaml").resolve()
    for name in ("fashionblip2/stage1_facap_tiny", "fashionblip2/stage1_facap_tiny.yaml",
                 "recipes/fashionblip2/stage1_facap_tiny.yaml"):
        assert resolve_recipe(name) == expected
    assert load_recipe("fashionblip2/stage1_facap_tiny")["train"]["stage"] == "pretrain"  # includes resolved too
    assert "sprc/fashioniq_vitg" in shipped_recipe_names() and "base/cpu_tiny" in shipped_recipe_names()
    (tmp_path / "fashionblip2").mkdir()
    own = write(tmp_path / "fashionblip2" / "stage1_facap_tiny.yaml", "train: {stage: mine}\n")
    assert resolve_recipe("fashionblip2/stage1_facap_tiny.yaml") == own.resolve()  # a file wins over a name
    with pytest.raises(DataError, match="no shipped recipe named 'sprc/fashioniq_tin'; did you mean sprc/fashioniq_tiny"):
        resolve_recipe("sprc/fashioniq_tin")
