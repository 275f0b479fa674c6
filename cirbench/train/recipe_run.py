"""One training run from a resolved recipe (``cirbench train`` and the experiment runners).

Everything is checked before the run folder is made: the recipe in full (``read_recipe``), the
model's stage and tasks, the training data and the validation data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cirbench.errors import DataError
from cirbench.train.recipe import DataSection, Recipe, read_recipe


def train_from_recipe(
    spec: str, config: dict[str, Any], recipe: Path, run_dir: Path, *, resume: bool = False, progress: bool = True,
    device: str = "cpu", backend: str | None = None,
):
    """Train the model a resolved recipe names; the model lands in ``run_dir/final``.

    Args:
        spec: the command's ``name[:variant]`` (its variant wins over the recipe's).
        config: the resolved recipe (includes merged, ``--set`` applied); validated here first.
        recipe: the recipe's file, named in errors.
        run_dir: the run folder (made only once everything is checked).
        resume: continue from the run folder's latest checkpoint.
        progress: show the progress bar.
        device: where to train (``cpu``, ``cuda``, ``cuda:N``).
        backend: the process group's backend under torchrun (see ``distributed.setup``).
    """
    from cirbench.baselines.zoo import build_model
    from cirbench.interface import check_training
    from cirbench import distributed
    from cirbench.train.loop import train as train_model
    from cirbench.train.validation import make_validator

    checked = read_recipe(config, recipe, spec)
    settings = checked.train
    device = distributed.setup(device, backend)
    try:
        model = build_model(checked.spec, checkpoint=checked.model.init_from, **checked.model.overrides)
        check_training(model, settings.stage, settings.tasks, recipe)
        dataset = _training_data(checked.data, recipe, model, checked)
        # bf16 training on CUDA validates under bf16 autocast too (as the loop's own autocast: CUDA only)
        precision = settings.precision if device.type == "cuda" else "fp32"
        validate = make_validator(checked.eval, str(device), precision) if checked.eval else None
        if distributed.is_main_process():
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "recipe.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        every = checked.eval.every if checked.eval else 1
        return train_model(model, dataset, settings, run_dir, config=config, resume=resume, validate=validate,
                           validate_every=every, progress=progress, dataset_name=checked.data.kind,
                           device=device, backend=backend)
    finally:
        distributed.teardown()


def _training_data(data: DataSection, recipe: Path, model, checked: Recipe):
    """The recipe's ``data:`` section -> the TripletDataset."""
    from cirbench.data.benchmarks import TRAIN_READERS
    from cirbench.train.data import TripletDataset

    root = Path(data.root)
    reader = TRAIN_READERS.get(data.kind)
    extra = {"image_root": data.image_root} if data.image_root is not None else {}
    categories = list(data.categories) if data.categories is not None else None
    triplets = reader(root, categories, missing=data.missing, **extra)
    if data.fraction is not None:
        triplets = nested_subset(triplets, data.fraction, checked.train.seed)
    dataset = TripletDataset(triplets, model.preprocess, text=data.text_mode, seed=checked.train.seed, source=root,
                             batch_groups=data.batch_groups)
    if "ctr" in checked.train.tasks and not dataset.has_target_captions():
        raise DataError(root, "target captions", "task ctr needs a caption for every target image (FACap layout)")
    return dataset


def nested_subset(items: list, fraction: float, seed: int) -> list:
    """The first ``fraction`` (in (0, 1]) of one seeded permutation: smaller fractions are subsets of
    larger ones (the data-size ablation, paper Figure 5), and the kept items stay in their original order."""
    import random

    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    keep = sorted(order[: max(1, round(fraction * len(items)))])
    return [items[i] for i in keep]
