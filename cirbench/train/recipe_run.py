"""One training run from a resolved recipe (``cirbench train`` and the experiment runners)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cirbench.data.schema import DataError


def train_from_recipe(
    spec: str, config: dict[str, Any], recipe: Path, run_dir: Path, *, resume: bool = False, progress: bool = True,
    device: str = "cpu", backend: str | None = None,
):
    """Build the model a resolved recipe names, read its data, train on ``device`` (``backend``: the
    process group's under torchrun, see ``distributed.setup``); the model lands in run_dir/final."""
    from cirbench.interface import build_model
    from cirbench.train import distributed
    from cirbench.train.loop import TrainSettings, train as train_model
    from cirbench.train.validation import make_validator

    settings = TrainSettings.from_dict(config.get("train") or {}, recipe)
    model_cfg = config.get("model") or {}
    device = distributed.setup(device, backend)
    try:
        model = build_model(spec, checkpoint=model_cfg.get("init_from"), **(model_cfg.get("overrides") or {}))
        _check_stage_and_tasks(model, settings, recipe)
        dataset, dataset_name = _training_data(config.get("data") or {}, recipe, model, settings)
        eval_cfg = config.get("eval")
        # bf16 training on CUDA validates under bf16 autocast too (as the loop's own autocast: CUDA only)
        precision = settings.precision if device.type == "cuda" else "fp32"
        validate = make_validator(eval_cfg, recipe, str(device), precision) if eval_cfg else None
        if distributed.is_main_process():
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "recipe.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return train_model(model, dataset, settings, run_dir, config=config, resume=resume, validate=validate,
                           validate_every=int((eval_cfg or {}).get("every", 1)), progress=progress,
                           dataset_name=dataset_name, device=device, backend=backend)
    finally:
        distributed.teardown()


def _check_stage_and_tasks(model, settings, recipe: Path) -> None:
    if settings.stage not in model.stages:
        stages = ", ".join(model.stages) or "none: it is not trainable"
        raise DataError(recipe, "train.stage", f"{model.meta.spec} has no stage {settings.stage!r} (stages: {stages})")
    unknown = sorted(set(settings.tasks) - set(model.tasks))
    if unknown:
        raise DataError(recipe, "train.tasks", f"{model.meta.spec} does not train {unknown} (tasks: {', '.join(model.tasks)})")


def _training_data(data_cfg: dict[str, Any], recipe: Path, model, settings):
    """The recipe's ``data:`` section -> (TripletDataset, dataset name for meta.trained_on)."""
    from cirbench.train.data import TRAIN_READERS, TripletDataset

    for key in ("kind", "root"):
        if key not in data_cfg:
            raise DataError(recipe, f"data.{key}", "missing")
    known = {"kind", "root", "categories", "text", "missing", "image_root", "fraction"}
    unknown = sorted(set(data_cfg) - known)
    if unknown:
        raise DataError(recipe, f"data.{unknown[0]}", f"unknown key; known: {', '.join(sorted(known))}")
    root = Path(data_cfg["root"])
    reader = TRAIN_READERS.get(data_cfg["kind"])
    # image_root: where the official FACap release's image paths start (facap only)
    extra = {"image_root": data_cfg["image_root"]} if "image_root" in data_cfg else {}
    triplets = reader(root, data_cfg.get("categories"), missing=data_cfg.get("missing", "error"), **extra)
    if "fraction" in data_cfg:
        triplets = nested_subset(triplets, float(data_cfg["fraction"]), settings.seed, recipe)
    text = data_cfg.get("text", "randomised" if data_cfg["kind"] == "fashioniq" else "single")
    dataset = TripletDataset(triplets, model.preprocess, text=text, seed=settings.seed, source=root)
    if "ctr" in settings.tasks and not dataset.has_target_captions():
        raise DataError(root, "target captions", "task ctr needs a caption for every target image (FACap layout)")
    return dataset, data_cfg["kind"]


def nested_subset(items: list, fraction: float, seed: int, source: Path | str = "recipe") -> list:
    """The first ``fraction`` of one seeded permutation: smaller fractions are subsets of larger ones
    (the data-size ablation, paper Figure 5), and the kept items stay in their original order."""
    import random

    if not 0 < fraction <= 1:
        raise DataError(source, "data.fraction", f"must be in (0, 1], got {fraction}")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    keep = sorted(order[: max(1, round(fraction * len(items)))])
    return [items[i] for i in keep]
