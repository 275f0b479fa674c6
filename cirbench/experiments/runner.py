"""What the demo and the ablations share: the data (the synthetic world's built sets, or a real
layout), trainings from recipes, and every trained model evaluated on FashionIQ and enhFashionIQ
into ``<out>/results``.

Everything is reused when already done, so a rerun or an interrupted run loses nothing: a
training whose final model was made from the same resolved recipe is not trained again (one made
from another recipe is refused, not silently reused), and ``evaluate_all`` skips finished
evaluations.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cirbench.errors import DataError
from cirbench.experiments.evaluate_all import BenchmarkEntry, ModelEntry, evaluate_all
from cirbench.experiments.plan import Training

Log = Callable[[str], None]
# --data-root layout: one folder per dataset, as `cirbench eval --all --data-root` expects
DATA_FOLDERS = {"facap": "facap", "fashioniq": "fashioniq", "enhfashioniq": "enhfashioniq"}
BENCHMARKS = ("fashioniq", "enhfashioniq")


@dataclass(frozen=True)
class Run:
    out: Path
    data: dict[str, Path]  # "facap" | "fashioniq" | "enhfashioniq" -> folder
    finals: dict[str, Path]  # training key -> final model folder
    errors: list[dict]  # this run's failed evaluations

    @property
    def results(self) -> Path:
        return self.out / "results"


def run_trainings(
    trainings: Sequence[Training],
    out: Path,
    *,
    zero_shot: Sequence[tuple[str, str]] = (),
    world: Path | None = None,
    data_root: Path | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    threads: int = 1,
    device: str = "cpu",
    progress: bool = True,
    log: Log = print,
    precision: str = "fp32",
) -> Run:
    """Prepare the data, train each of ``trainings`` (or reuse it) and evaluate them and the
    ``zero_shot`` (label, spec) models on both benchmarks into ``<out>/results``; training and
    evaluation on ``device``, evaluation at ``precision``.

    ``threads``: torch CPU threads. One is the default: the tiny models are too small for two
    threads to pay off, and two threads collapse (15x slower, measured) when anything else
    competes for one of two cores."""
    import torch

    torch.set_num_threads(threads)
    out = Path(out)
    check_recipes(trainings, out, batch_size)  # every recipe, and the real data, before anything is written
    real = real_data(data_root) if data_root is not None else None
    out.mkdir(parents=True, exist_ok=True)
    (out / "command.txt").write_text(" ".join(["cirbench", *sys.argv[1:]]) + "\n")
    data = real or synthetic_data(world, out, progress, log)
    finals = {t.key: train_one(t, data, out, batch_size, progress, log, device) for t in trainings}
    models = [ModelEntry(label, spec) for label, spec in zero_shot]
    models += [ModelEntry(t.label or t.key, t.model, finals[t.key]) for t in trainings]
    benchmarks = [BenchmarkEntry(name, data[name]) for name in BENCHMARKS]
    errors = evaluate_all(models, benchmarks, out / "results", cache_dir=out / "cache", device=device, seed=seed,
                          batch_size=128, progress=progress, log=log, precision=precision)
    return Run(out, data, finals, errors)


def check_recipes(trainings: Sequence[Training], out: Path, batch_size: int | None) -> None:
    """Validate every training's resolved recipe (``read_recipe``) with its plan's delta applied."""
    from cirbench.train.recipe import read_recipe

    placeholders = {name: Path(folder) for name, folder in DATA_FOLDERS.items()}  # folders are made later
    for training in trainings:
        read_recipe(resolved_recipe(training, placeholders, out, batch_size), training.recipe, training.model)


def real_data(data_root: Path) -> dict[str, Path]:
    """``<data_root>/{facap,fashioniq,enhfashioniq}``: FACap (release layout or build-facap output),
    FashionIQ and enhFashionIQ (build-enhfiq output)."""
    data = {name: Path(data_root) / folder for name, folder in DATA_FOLDERS.items()}
    missing = [name for name, folder in data.items() if not folder.is_dir()]
    if missing:
        raise DataError(data_root, "--data-root", f"no {', '.join(f'{m}/' for m in missing)} folder; expected "
                        "facap/ (FACap or `cirbench build-facap`), fashioniq/ and enhfashioniq/ (`cirbench build-enhfiq`)")
    return data


def synthetic_data(world: Path | None, out: Path, progress: bool, log: Log) -> dict[str, Path]:
    """The world (default: the cached default world) with its tiny backbones, and the FACap-style
    and enhFashionIQ-style sets built from it under ``<out>/data``."""
    from cirbench.synth.default_world import ensure_world
    from cirbench.synth.tiny_backbones import ensure_backbones

    world = ensure_world(world, progress)
    if not (world / "fashioniq").is_dir():
        raise DataError(world, "--world", "not a synthetic world folder (no fashioniq/; make one with `cirbench synth`)")
    log(f"world: {world}")
    # the world's own backbones, however `synth-backbones` made them: never pre-trained over
    ensure_backbones(world, keep_existing=True)
    return _build_datasets(world, out, log)


def _build_datasets(world: Path, out: Path, log: Log) -> dict[str, Path]:
    from cirbench.facap.build import FacapBuildConfig, build_facap, world_sources
    from cirbench.facap.enhfiq import EnhFiqBuildConfig, build_enhfiq
    from cirbench.synth.default_world import world_embedder

    embedder, note = world_embedder(None, world)
    if note:
        log(note)
    facap, enhfiq = out / "data" / "facap", out / "data" / "enhfashioniq"
    build_facap(FacapBuildConfig(out=facap, sources=world_sources(world)), embedder=embedder)
    log(f"FACap-style set: {facap}")
    build_enhfiq(EnhFiqBuildConfig(fashioniq=world / "fashioniq", out=enhfiq), embedder=embedder)
    log(f"enhFashionIQ-style set: {enhfiq}")
    fashioniq = out / "data" / "fashioniq"  # beside enhfashioniq/, so `eval --all --data-root <out>/data` finds both
    if not fashioniq.exists():
        fashioniq.symlink_to((world / "fashioniq").resolve(), target_is_directory=True)
    return {"facap": facap, "fashioniq": fashioniq, "enhfashioniq": enhfiq}


def train_one(
    training: Training, data: dict[str, Path], out: Path, batch_size: int | None, progress: bool, log: Log,
    device: str = "cpu",
) -> Path:
    """Train one plan entry on ``device`` (or reuse its finished model); returns its final model folder."""
    from cirbench.train.recipe_run import train_from_recipe

    run_dir = out / "train" / training.key
    final = run_dir / "final"
    config = resolved_recipe(training, data, out, batch_size)
    if (final / "config.json").is_file():
        _check_same_recipe(run_dir, config)
        log(f"reused: {training.key}")
        return final
    resume = (run_dir / "checkpoints").is_dir()
    steps = f"{training.steps} steps" if training.steps is not None else "the recipe's length"
    log(f"training {training.key}: {training.recipe} ({steps}{', resumed' if resume else ''})")
    train_from_recipe(training.model, config, Path(training.recipe), run_dir, resume=resume, progress=progress,
                      device=device)
    return final


def resolved_recipe(training: Training, data: dict[str, Path], out: Path, batch_size: int | None) -> dict[str, Any]:
    """The training's recipe with its data, length, batch size, starting model and delta applied;
    validation is left to the evaluation that follows."""
    from cirbench.config import apply_overrides, load_recipe

    overrides = [f"data.root={data[training.data]}", "eval=null"]
    if training.steps is not None:
        overrides += ["train.epochs=null", f"train.steps={training.steps}"]
    if batch_size is not None:
        overrides.append(f"train.batch_size={batch_size}")
    if training.init_from:
        overrides.append(f"model.init_from={out / 'train' / training.init_from / 'final'}")
    return apply_overrides(load_recipe(training.recipe), overrides + list(training.overrides), training.recipe)


def _check_same_recipe(run_dir: Path, config: dict[str, Any]) -> None:
    """A finished model is reused only if the same resolved recipe made it (e.g. not after --steps changed)."""
    from cirbench.config import changed_keys, config_hash

    made_by = json.loads((run_dir / "final" / "config.json").read_text()).get("config_hash")
    if made_by == config_hash(config):
        return
    recipe_file = run_dir / "recipe.json"
    old = json.loads(recipe_file.read_text()) if recipe_file.is_file() else {}
    changed = ", ".join(changed_keys(old, json.loads(json.dumps(config, default=str)))) or "unknown keys"
    raise DataError(run_dir, "final", f"was trained from another recipe (differs in: {changed}); "
                    "use another --out, or delete this folder to train it again")

