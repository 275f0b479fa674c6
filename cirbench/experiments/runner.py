"""What the demo and the ablations share: the data (the synthetic world's built sets, or a real
layout), trainings from recipes, and every trained model evaluated on FashionIQ and enhFashionIQ
into ``<out>/results``.

Everything is reused when already done, so a rerun or an interrupted run loses nothing: a
training whose final model was made from the same resolved recipe is not trained again (one made
from another recipe is refused, not silently reused), and finished evaluations are skipped.
Trainings and evaluations can run several at once (``jobs``), each in its own process.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cirbench.errors import DataError
from cirbench.files import check_writable_folder
from cirbench.experiments.evaluate_all import (
    BenchmarkEntry,
    ModelEntry,
    ModelOutcome,
    evaluate_model,
    finished_evaluations,
    write_errors,
    write_outcome,
)
from cirbench.experiments.plan import Training
from cirbench.tasks import Task, run_tasks

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
    jobs: int = 1,
    device: str = "cpu",
    progress: bool = True,
    log: Log = print,
    precision: str = "fp32",
) -> Run:
    """Prepare the data, train each of ``trainings`` (or reuse it) and evaluate them and the
    ``zero_shot`` (label, spec) models on both benchmarks into ``<out>/results``; training and
    evaluation on ``device``, evaluation at ``precision``.

    ``threads``: torch CPU threads per process. One is the default: the tiny models are too small
    for two threads to pay off, and two threads collapse (15x slower, measured) when anything else
    competes for one of two cores. ``jobs``: trainings and evaluations run at once, each in its own
    process (``cirbench.tasks``); their output goes to ``<out>/logs/``, and one line
    per task start and end is logged here. Per-task seconds land in ``<out>/timings.json``."""
    import torch

    torch.set_num_threads(threads)
    out = check_writable_folder(out, "--out")  # a file there (or above) would end the run at its first write
    check_recipes(trainings, out, batch_size)  # every recipe, and the real data, before anything is written
    real = real_data(data_root) if data_root is not None else None
    out.mkdir(parents=True, exist_ok=True)
    (out / "command.txt").write_text(" ".join(["cirbench", *sys.argv[1:]]) + "\n")
    started = time.time()
    data = real or synthetic_data(world, out, progress, log, jobs)
    finals = {t.key: out / "train" / t.key / "final" for t in trainings}
    models = [ModelEntry(label, spec) for label, spec in zero_shot]
    models += [ModelEntry(t.label or t.key, t.model, finals[t.key]) for t in trainings if t.evaluate]
    benchmarks = [BenchmarkEntry(name, data[name]) for name in BENCHMARKS]
    quiet = jobs > 1  # bars and lines of several processes would interleave: each task logs to a file
    tasks = [task for t in trainings if (task := _training_task(t, data, out, batch_size, progress and not quiet,
                                                                quiet, log, device)) is not None]
    keys = {task.key for task in tasks}  # a reused model needs no waiting for
    tasks = [replace(task, needs=tuple(need for need in task.needs if need in keys)) for task in tasks]
    training_of = {finals[task.args[0].key]: task.key for task in tasks}  # a model folder -> the task making it
    done = finished_evaluations(out / "results")
    evaluation = dict(cache_dir=out / "cache", device=device, seed=seed, batch_size=128, progress=progress and not quiet,
                      precision=precision)
    tasks += [Task(f"eval:{index}", _evaluation_task, (entry, benchmarks, done, evaluation, _log_file(out, entry.label, quiet)),
                   needs=(training_of[entry.checkpoint],) if entry.checkpoint in training_of else ())
              for index, entry in enumerate(models)]
    report = _TaskReport(out, trainings, models, quiet, log, {"data": round(time.time() - started, 1)})
    run_tasks(tasks, jobs, on_start=report.start, on_done=report.done, initializer=_init_worker, initargs=(threads,))
    return Run(out, data, finals, report.finish())


class _TaskReport:
    """What the caller sees of the tasks: a line as each starts (several processes) and ends, each
    model's evaluations written in the plan's order whatever order they finish in (the results
    files read the same for any number of jobs; a stopped run keeps what is written), and the
    seconds of every task in ``<out>/timings.json``."""

    def __init__(self, out: Path, trainings: Sequence[Training], models: list[ModelEntry], quiet: bool, log: Log,
                 timings: dict[str, float]):
        self.out, self.quiet, self.log, self.timings = out, quiet, log, timings
        self.starts = {f"train:{t.key}": _training_line(t) for t in trainings}
        self.starts.update({f"eval:{index}": f"evaluating {entry.label}" for index, entry in enumerate(models)})
        self.order = [f"eval:{index}" for index in range(len(models))]
        self.waiting: dict[str, ModelOutcome] = {}
        self.errors: list[dict] = []

    def start(self, task: Task) -> None:
        if self.quiet:
            self.log(f"{self.starts[task.key]} (log: {task.args[-1]})")

    def done(self, task: Task, result, seconds: float) -> None:
        self.timings[task.key] = round(seconds, 1)
        if not task.key.startswith("eval:"):
            self.log(f"trained {task.key[len('train:'):]} in {seconds:.0f} s{f': {result}' if result else ''}")
            return
        self.waiting[task.key] = result
        while self.order and self.order[0] in self.waiting:
            self.errors += write_outcome(self.out / "results", self.waiting.pop(self.order.pop(0)), self.log)

    def finish(self) -> list[dict]:
        """Writes the error rows and the timings; returns the error rows."""
        write_errors(self.out / "results", self.errors)
        (self.out / "timings.json").write_text(json.dumps(self.timings, indent=1) + "\n")
        return self.errors


def _log_file(out: Path, name: str, quiet: bool) -> Path | None:
    """Where a task of a several-process run writes its output (None: to this process's)."""
    if not quiet:
        return None
    (out / "logs").mkdir(parents=True, exist_ok=True)
    return out / "logs" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") + ".log")


def _training_task(training: Training, data: dict[str, Path], out: Path, batch_size: int | None, progress: bool,
                   quiet: bool, log: Log, device: str) -> Task | None:
    """The task that trains ``training``; None when its finished model is reused (checked here)."""
    if (out / "train" / training.key / "final" / "config.json").is_file():
        train_one(training, data, out, batch_size, progress, log, device)  # checks the recipe, logs "reused"
        return None
    needs = (f"train:{training.init_from}",) if training.init_from else ()
    return Task(f"train:{training.key}", _train_task, (training, data, out, batch_size, progress, device,
                                                       None if quiet else log,
                                                       _log_file(out, f"train-{training.key}", quiet)), needs)


def _training_line(training: Training, resumed: bool = False) -> str:
    steps = f"{training.steps} steps" if training.steps is not None else "the recipe's length"
    return f"training {training.key}: {training.recipe} ({steps}{', resumed' if resumed else ''})"


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _train_task(training: Training, data: dict[str, Path], out: Path, batch_size: int | None, progress: bool,
                device: str, log: Log | None, log_file: Path | None) -> str:
    """Train (in a worker process when ``log_file`` is set: its output goes there); returns the last epoch line."""
    with _output_to(log_file):
        final = train_one(training, data, out, batch_size, progress, log or print, device)
    return _last_epoch(final.parent / "log.jsonl") if log_file else ""


def _evaluation_task(entry: ModelEntry, benchmarks: list[BenchmarkEntry], done: set, evaluation: dict,
                     log_file: Path | None) -> ModelOutcome:
    with _output_to(log_file):
        return evaluate_model(entry, benchmarks, done, **evaluation)


@contextmanager
def _output_to(log_file: Path | None):
    if log_file is None:
        yield
        return
    with open(log_file, "a", encoding="utf-8") as handle, redirect_stdout(handle), redirect_stderr(handle):
        yield


def _last_epoch(log_jsonl: Path) -> str:
    """The losses and speed of a training's last logged epoch, in a few words."""
    lines = log_jsonl.read_text().splitlines() if log_jsonl.is_file() else []
    if not lines:
        return ""
    last = json.loads(lines[-1])
    losses = " ".join(f"{name} {value:.3f}" for name, value in (last.get("loss") or {}).items())
    return f"{losses}, {last.get('samples_per_s', 0):.0f} samples/s"


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


def synthetic_data(world: Path | None, out: Path, progress: bool, log: Log, jobs: int = 1) -> dict[str, Path]:
    """The world (default: the cached default world) with its tiny backbones (pre-trained ``jobs``
    at once where the shipped ones do not fit), and the FACap-style and enhFashionIQ-style sets
    built from it under ``<out>/data``."""
    from cirbench.synth.default_world import ensure_world
    from cirbench.synth.tiny_backbones import backbones_ready, ensure_backbones, pretraining_minutes

    world = ensure_world(world, progress)
    if not (world / "fashioniq").is_dir():
        raise DataError(world, "--world", "not a synthetic world folder (no fashioniq/; make one with `cirbench synth`)")
    log(f"world: {world}")
    if not backbones_ready(world, keep_existing=True):
        log(f"its shop images are not the default world's, so the shipped tiny backbones do not fit them: "
            f"pre-training a tiny CLIP and a tiny BLIP-2 on them first, about {pretraining_minutes(jobs=jobs):.0f} "
            f"minutes on {min(jobs, 2)} free core(s) (once per world; `cirbench synth-backbones --world {world}` "
            "does it alone)")
    # the world's own backbones, however `synth-backbones` made them: never pre-trained over
    ensure_backbones(world, keep_existing=True, jobs=min(jobs, 2))
    return _build_datasets(world, out, log)


# enhFashionIQ pairs each val image with one of its 20 nearest neighbours. Paired by the world's
# tiny CLIP, every target sits in the top 21 of the zero-shot "CLIP image only" baseline that uses
# that same CLIP (R@50 = 100 by construction, measured), as if the paper had paired with the model
# it evaluates. The paper pairs with a CLIP that none of its CIR models is; here the pairing
# similarity is the colour thumbnail, which none of the demo's models uses either. The captions
# still read each image's attributes with the tiny CLIP (the offline captioner's zero-shot reader).
ENHFIQ_PAIRING = "thumbnail"


def _build_datasets(world: Path, out: Path, log: Log) -> dict[str, Path]:
    from cirbench.facap.backends import BackendOptions, build_captioner_for
    from cirbench.facap.build import FacapBuildConfig, build_facap, world_sources
    from cirbench.facap.embedding import make_embedder
    from cirbench.facap.enhfiq import EnhFiqBuildConfig, build_enhfiq
    from cirbench.synth.default_world import world_embedder

    embedder, note = world_embedder(None, world)
    if note:
        log(note)
    facap, enhfiq = out / "data" / "facap", out / "data" / "enhfashioniq"
    build_facap(FacapBuildConfig(out=facap, sources=world_sources(world)), embedder=embedder)
    log(f"FACap-style set: {facap}")
    build_enhfiq(EnhFiqBuildConfig(fashioniq=world / "fashioniq", out=enhfiq, clip_model=ENHFIQ_PAIRING),
                 embedder=make_embedder(ENHFIQ_PAIRING), captioner=build_captioner_for("offline", BackendOptions(), embedder))
    log(f"enhFashionIQ-style set: {enhfiq} (paired by {ENHFIQ_PAIRING})")
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
    log(_training_line(training, resume))
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

