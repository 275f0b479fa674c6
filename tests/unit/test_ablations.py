"""The ablation plans as data: each Table-5 row trains what its settings say, each comparison
differs in the one thing it asks about, shared trainings resolve to the demo's recipes (so one run
folder serves all), and the recipe table names files that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from cirbench.config import shipped_recipes
from cirbench.experiments import ablations
from cirbench.experiments.ablations import DEFAULT_STEPS, RECIPE_SETS, Scale
from cirbench.experiments.plan import FULL
from cirbench.experiments.runner import resolved_recipe

TINY = Scale("tiny", *DEFAULT_STEPS["tiny"])  # the demo's lengths
DATA = {name: Path(f"/data/{name}") for name in ("facap", "fashioniq", "enhfashioniq")}


def recipe_of(ablation, key: str) -> dict:
    training = next(t for t in ablation.trainings if t.key == key)
    return resolved_recipe(training, DATA, Path("/out"), 64)


def trained_settings(config: dict) -> tuple[str, str, str]:
    """(tasks, adapter, matching) as Table 5 prints them, read off a resolved recipe."""
    options = config["model"].get("overrides") or {}
    tasks = "+".join(task.upper() for task in config["train"]["tasks"])
    return tasks, "yes" if options.get("use_adapters", True) else "no", options.get("matching", "multihead")


def test_each_table5_row_trains_the_components_it_names_and_fine_tunes_from_its_own_stage1():
    ablation = ablations.components(TINY)
    keys = {t.label: t.key for t in ablation.trainings}
    for row in ablation.rows:
        stage1, stage2 = recipe_of(ablation, keys[row.labels["no_ft_fiq"]]), recipe_of(ablation, keys[row.labels["ft_fiq"]])
        assert trained_settings(stage1) == row.settings
        assert stage1["data"]["root"] == "/data/facap" and stage1["train"]["steps"] == TINY.s1_steps
        assert stage2["data"]["root"] == "/data/fashioniq" and stage2["train"]["tasks"] == ["cir"]
        assert stage2["model"]["init_from"] == f"/out/train/{keys[row.labels['no_ft_fiq']]}/final"


def test_each_comparison_differs_in_exactly_the_component_it_asks_about():
    ablation = ablations.components(TINY)
    differs = {ablations.MATCHING_QUESTION: 2, ablations.ADAPTERS_QUESTION: 1, ablations.TASKS_QUESTION: 0}
    for question in ablation.questions:
        a = trained_settings(recipe_of(ablation, question.a.replace("_s2", "_s1")))
        b = trained_settings(recipe_of(ablation, question.b.replace("_s2", "_s1")))
        assert [i for i in range(3) if a[i] != b[i]] == [differs[question.title]]
    assert len(ablation.questions) == 6  # three questions, no FT and FT


def test_without_fine_tuning_only_stage1_trains_and_the_ft_columns_are_not_run():
    ablation = ablations.components(TINY, fine_tune=False)
    assert all(t.data == "facap" for t in ablation.trainings) and len(ablation.trainings) == 4
    assert all(set(row.labels) == {"no_ft_fiq", "no_ft_enhfiq"} for row in ablation.rows)


def test_data_size_subsets_are_nested_fractions_of_one_seed():
    ablation = ablations.data_size([1.0, 0.1, 0.5], Scale("tiny", 40, 60, seed=3))
    fractions = [recipe_of(ablation, t.key)["data"].get("fraction", 1.0) for t in ablation.trainings]
    assert fractions == [0.1, 0.5, 1.0]
    # the same epochs on every fraction: a fraction gets its share of the full set's steps
    assert [recipe_of(ablation, t.key)["train"]["steps"] for t in ablation.trainings] == [4, 20, 40]
    assert {recipe_of(ablation, t.key)["train"]["seed"] for t in ablation.trainings} == {3}
    assert [row.settings for row in ablation.rows] == [("10%",), ("50%",), ("100%",)]
    (question,) = ablation.questions
    assert (question.a, question.b) == ("fblip2_s1", "fblip2_s1_f10")


def test_pretraining_compares_the_same_fine_tuning_with_and_without_a_facap_start():
    ablation = ablations.pretraining(TINY)
    for question in ablation.questions:
        with_facap, without = recipe_of(ablation, question.a), recipe_of(ablation, question.b)
        assert with_facap["model"]["init_from"].endswith("/final") and without["model"].get("init_from") is None
        for config in (with_facap, without):
            config["model"].pop("init_from", None)
        assert with_facap == without
    assert [row.settings[:2] for row in ablation.rows] == [
        ("FashionBLIP-2", "no"), ("FashionBLIP-2", "yes"), ("SPRC", "no"), ("SPRC", "yes")]


def test_trainings_shared_with_the_demo_resolve_to_the_demos_recipe_and_label():
    demo = {t.key: t for t in FULL.trainings}
    shared = [t for a in (ablations.data_size([0.25, 1.0], TINY), ablations.components(TINY), ablations.pretraining(TINY))
              for t in a.trainings if t.key in demo]
    assert {t.key for t in shared} >= {"fblip2_s1", "fblip2_s2", "fblip2_s2_nopre", "fblip2_s1_f25", "sprc"}
    for training in shared:
        assert training.label == demo[training.key].label
        assert resolved_recipe(training, DATA, Path("/out"), 64) == resolved_recipe(demo[training.key], DATA, Path("/out"), 64)


def test_paper_size_uses_the_vitg_recipes_and_their_own_length():
    ablation = ablations.pretraining(Scale("vitg", None, None), ["fashionblip2"])
    assert {t.model for t in ablation.trainings} == {"fashionblip2:vitg"}
    config = recipe_of(ablation, "fblip2_s2")
    assert config["train"]["epochs"] == 30 and "steps" not in config["train"]
    sprc = ablations.pretraining(Scale("vitg", None, None), ["sprc"])
    pretrain, finetune = recipe_of(sprc, "sprc_facap"), recipe_of(sprc, "sprc_facap_fiq")
    assert pretrain["model"]["variant"] == finetune["model"]["variant"] == "vitg"
    assert pretrain["data"]["kind"] == "facap" and finetune["data"]["kind"] == "fashioniq"
    assert pretrain["train"]["epochs"] == 10 and finetune["train"]["epochs"] == 30
    assert pretrain["train"]["lr"] == finetune["train"]["lr"] == 2e-5  # the delta keeps SPRC's optimiser


@pytest.mark.parametrize("size", sorted(RECIPE_SETS))
def test_every_recipe_in_the_recipe_table_exists(size):
    recipes = RECIPE_SETS[size]
    paths = [recipes.fblip2_stage1, recipes.fblip2_cir_only, recipes.fblip2_stage2, recipes.sprc_fashioniq,
             recipes.sprc_facap]
    assert all((shipped_recipes() / p).is_file() for p in paths)
