"""The one model-folder format (cirbench.model_folder): folders written before it still load with
the same weights and hash, a folder of another model, variant or an unknown format is refused
with one line naming its config.json, and options are checked by the one section validator."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cirbench.errors import DataError
from cirbench.baselines.zoo import build_model
from cirbench.model_folder import folder_config_hash, folder_spec, read_model_folder, stamp_config_hash


def _rewrite(folder, change) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A FashionBLIP-2 and a CLIP4CIR folder, each trained on 'facap' (recorded in the folder)."""
    root = tmp_path_factory.mktemp("folders")
    models = {}
    for spec, options in (("fashionblip2:test_tiny", {"num_heads": 4}), ("clip4cir:test_tiny", {"dropout": 0.25})):
        model = build_model(spec, **options)
        model.meta = dataclasses.replace(model.meta, trained_on=("facap",))
        model.save_pretrained(root / spec.split(":")[0])
        models[spec] = model.checkpoint_hash()
    return root, models


def test_folders_of_before_the_one_format_still_load(saved, tmp_path):
    import shutil

    root, hashes = saved
    old_blip2 = tmp_path / "blip2"
    shutil.copytree(root / "fashionblip2", old_blip2)
    _rewrite(old_blip2, lambda c: {"format": "cirbench-model/1", "model": c["name"], "variant": c["variant"],
                                   "options": c["options"], "trained_on": c["trained_on"]})
    reloaded = build_model("fashionblip2:test_tiny", checkpoint=old_blip2)
    assert reloaded.checkpoint_hash() == hashes["fashionblip2:test_tiny"]
    assert reloaded.options.num_heads == 4 and reloaded.meta.trained_on == ("facap",)

    old_clip = tmp_path / "clip"
    shutil.copytree(root / "clip4cir", old_clip)
    _rewrite(old_clip, lambda c: {"name": c["name"], "variant": c["variant"], "config_hash": "abc",
                                  "options": {"trained_on": c["trained_on"], "pad_ratio": 1.25, "dropout": 0.25}})
    reloaded = build_model("clip4cir:test_tiny", checkpoint=old_clip)
    assert reloaded.checkpoint_hash() == hashes["clip4cir:test_tiny"]
    assert reloaded.options.dropout == 0.25 and reloaded.meta.trained_on == ("facap",)
    assert folder_spec(old_clip) == "clip4cir:test_tiny" and folder_config_hash(old_clip) == "abc"


def test_a_foreign_folder_is_refused_naming_its_config(saved, tmp_path):
    import shutil

    root, _ = saved
    with pytest.raises(DataError, match="a model folder of 'clip4cir', not 'sprc'"):
        build_model("sprc:test_tiny", checkpoint=root / "clip4cir")
    with pytest.raises(DataError, match="holds fashionblip2:test_tiny; evaluate or train it as fashionblip2:test_tiny"):
        build_model("fashionblip2:synth_tiny", checkpoint=root / "fashionblip2")
    future = tmp_path / "future"
    shutil.copytree(root / "clip4cir", future)
    _rewrite(future, lambda c: {**c, "format": "cirbench-model/9"})
    with pytest.raises(DataError, match="unknown model-folder format 'cirbench-model/9'.*Upgrade cirbench") as error:
        read_model_folder(future)
    assert error.value.file == str(future / "config.json")
    with pytest.raises(DataError, match="no config.json: not a model folder"):
        build_model("clip4cir:test_tiny", checkpoint=tmp_path)


def test_options_are_checked_over_the_folders_own(saved, tmp_path):
    import shutil

    root, _ = saved
    with pytest.raises(DataError, match="model.overrides.dropout: must be at most 1"):
        build_model("clip4cir:test_tiny", checkpoint=root / "clip4cir", dropout=3)
    assert build_model("clip4cir:test_tiny", checkpoint=root / "clip4cir", pad_ratio=None).options.pad_ratio is None
    broken = tmp_path / "broken"
    shutil.copytree(root / "fashionblip2", broken)
    _rewrite(broken, lambda c: {**c, "options": {**c["options"], "matching": "local"}})
    with pytest.raises(DataError, match="options.matching: must be one of 'multihead', 'global'") as error:
        build_model("fashionblip2:test_tiny", checkpoint=broken)
    assert error.value.file == str(broken / "config.json")


def test_training_stamps_the_recipe_hash(saved, tmp_path):
    import shutil

    root, _ = saved
    folder = tmp_path / "stamped"
    shutil.copytree(root / "clip4cir", folder)
    assert folder_config_hash(folder) is None and folder_config_hash(None) is None
    stamp_config_hash(folder, "0123456789abcdef")
    assert folder_config_hash(folder) == "0123456789abcdef"
    assert build_model("clip4cir:test_tiny", checkpoint=folder).checkpoint_hash() == saved[1]["clip4cir:test_tiny"]
