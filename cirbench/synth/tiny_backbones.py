"""The synthetic world's pre-trained tiny backbones: a tiny CLIP (open_clip) and a tiny BLIP-2
(transformers), pre-trained on the world's image-caption pairs (contrast; the BLIP-2 also with
image-text matching, as in BLIP-2's own first stage), so that "a frozen pretrained encoder +
adapters" means at small scale what it means at full scale.

They are built by recipe (the settings below) into ``<world>/backbones/{clip,blip2}`` and reused
while the settings match (``backbones.json``), and recorded as the installed pair, which the
``synth_tiny`` variants of any later process use (``cirbench.backbones.folders``); ``activate``
points this process at them through ``$CIRBENCH_SYNTH_CLIP`` / ``$CIRBENCH_SYNTH_BLIP2``.

Pre-training both takes minutes on two CPU cores, so the package ships the pair made for the
default world (preset ``default``, seed 0) by the default recipe, in float16 (13 MB), under
``pretrained/`` with ``provenance.json`` naming the sources' fingerprint, the recipe and the
command that made them (``cirbench synth-backbones --world W --ship``). They are installed (as
float32) only into a world with that exact fingerprint; any other world or recipe is pre-trained
afresh, the two backbones side by side where two cores are free. The fingerprint covers the shop
sources only (what pre-training reads): a world that differs from the default one in its
FashionIQ-like part alone gets the shipped backbones.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from cirbench.synth.vocabulary import VOCABULARY_VERSION

RECORD = "backbones.json"
SHIPPED = Path(__file__).resolve().parent / "pretrained"
PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class BackboneRecipe:
    steps: int = 300
    batch_size: int = 64
    seed: int = 0
    image_size: int = 64
    lr: float = 1e-3  # CLIP
    blip2_lr: float = 5e-4  # 1e-3 collapsed the Q-Former's contrastive loss to log(batch) (measured)
    # BLIP-2's image-text matching next to contrast: it trains the fused image + text pass that
    # FashionBLIP-2 and SPRC query with. Without it that pass barely reads the text (measured).
    blip2_matching: bool = True
    max_pairs: int = 4000  # the world's sources hold ~2.5k images at the default preset
    vocabulary: str = VOCABULARY_VERSION  # the tiny BLIP-2 tokenizer's word list (synth/vocabulary.py)


# Seconds per pre-training step at the default batch, one torch thread, measured on a two-core
# machine with a little else running (CLIP 0.27, BLIP-2 with matching 1.47): what
# ``pretraining_minutes`` announces before a world's first run.
SECONDS_PER_STEP = {"clip": 0.3, "blip2": 1.5}


def backbone_dirs(world: Path) -> dict[str, Path]:
    return {"clip": Path(world) / "backbones" / "clip", "blip2": Path(world) / "backbones" / "blip2"}


def activate(world: Path) -> dict[str, Path]:
    """Point the ``synth_tiny`` variants of this process (and its children) at the world's backbones."""
    from cirbench.backbones.blip2 import SYNTH_BACKBONE_ENV
    from cirbench.backbones.clip import SYNTH_CLIP_ENV

    dirs = backbone_dirs(world)
    os.environ[SYNTH_CLIP_ENV] = str(dirs["clip"].resolve())
    os.environ[SYNTH_BACKBONE_ENV] = str(dirs["blip2"].resolve())
    return dirs


def backbones_ready(world: Path, recipe: BackboneRecipe = BackboneRecipe(), keep_existing: bool = False) -> bool:
    """Whether ``ensure_backbones`` (same arguments) will find or install them, with no pre-training."""
    wanted = {**asdict(recipe), "sources": sources_fingerprint(world)}
    made = _made(world)
    kept = keep_existing and made is not None and made.get("sources") == wanted["sources"]
    return made == wanted or kept or _shipped_matches(wanted)


def pretraining_minutes(recipe: BackboneRecipe = BackboneRecipe(), jobs: int = 1) -> float:
    """About how long pre-training both backbones takes on quiet cores (``SECONDS_PER_STEP``):
    one after the other, or side by side with ``jobs`` >= 2."""
    seconds = [recipe.steps * recipe.batch_size / BackboneRecipe().batch_size * s for s in SECONDS_PER_STEP.values()]
    return (max(seconds) if jobs > 1 else sum(seconds)) / 60


def ensure_backbones(
    world: Path, recipe: BackboneRecipe = BackboneRecipe(), on_step: Callable[[str, int, int], None] | None = None,
    keep_existing: bool = False, jobs: int = 1,
) -> dict[str, Path]:
    """Pre-train both backbones unless the world already has them for this recipe (with
    ``keep_existing``: for any recipe, as `synth-backbones` made them); then activate.

    ``jobs=2`` pre-trains the two at once in two one-thread processes (the same weights as one after
    the other); each process prints a line as its backbone starts, ``on_step`` is not called."""
    from cirbench.synth.vocabulary import world_vocabulary
    from cirbench.synth.world import image_caption_pairs
    from cirbench.tasks import Task, run_tasks

    dirs = backbone_dirs(world)
    record = Path(world) / "backbones" / RECORD
    wanted = {**asdict(recipe), "sources": sources_fingerprint(world)}
    made = _made(world)
    if made == wanted or (keep_existing and made and made.get("sources") == wanted["sources"]):
        return _install(world)
    if _shipped_matches(wanted):
        _install_shipped(dirs)
        record.write_text(json.dumps(wanted, indent=2) + "\n")
        return _install(world)
    pairs = image_caption_pairs(Path(world))[: recipe.max_pairs]
    # CLIP keeps open_clip's real BPE tokenizer; the tiny BLIP-2 one is built from the world's words.
    extra = {"clip": {"lr": recipe.lr}, "blip2": {"lr": recipe.blip2_lr, "words": world_vocabulary(world),
                                                                 "matching": recipe.blip2_matching}}
    tasks = [Task(name, _pretrain_one, (name, pairs, dirs[name], recipe, extra[name], None if jobs > 1 else on_step))
             for name in dirs]
    run_tasks(tasks, jobs, initializer=_one_thread)
    record.write_text(json.dumps(wanted, indent=2) + "\n")
    return _install(world)


def _made(world: Path) -> dict | None:
    """The recipe record of the backbones the world holds (None: none, or an interrupted build)."""
    record = Path(world) / "backbones" / RECORD
    complete = record.is_file() and all(d.is_dir() for d in backbone_dirs(world).values())
    return json.loads(record.read_text()) if complete else None


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # two threads on two busy cores run 15x slower (measured)


def _pretrain_one(name: str, pairs: list, target: Path, recipe: BackboneRecipe, extra: dict,
                  on_step: Callable[[str, int, int], None] | None) -> None:
    """Pre-train one backbone into ``target`` (through a ``.partial`` folder: a killed build never
    leaves a half backbone under the real name). Without ``on_step`` (in a worker process): one
    progress line as it starts."""
    from cirbench.progress import progress_bar
    from cirbench.synth.pretrain import pretrain_blip2_backbone, pretrain_clip_backbone

    pretrain = {"clip": pretrain_clip_backbone, "blip2": pretrain_blip2_backbone}[name]
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if on_step is None:
        with progress_bar(False) as lines:
            lines.add_task(f"pre-training tiny {name}", total=recipe.steps)
    report = (lambda step, loss: on_step(name, step + 1, recipe.steps)) if on_step else None
    pretrain(pairs, partial, steps=recipe.steps, batch_size=recipe.batch_size, seed=recipe.seed,
             image_size=recipe.image_size, on_step=report, **extra)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def _install(world: Path) -> dict[str, Path]:
    """Record the world's backbones as the installed pair (``synth_tiny`` finds them from now on,
    in any process, without a variable) and activate them in this one."""
    from cirbench.backbones.folders import record_installed

    record_installed(world, backbone_dirs(world))
    return activate(world)


def sources_fingerprint(world: Path | dict) -> str:
    """Hash of the settings that decide a world's shop sources (seed, source knobs, format), from
    its folder or its ``settings``: same hash, same pre-training images and captions. The
    FashionIQ-like part is not in it, so changing that part keeps the backbones."""
    from cirbench.synth.world import read_manifest, source_settings

    settings = world if isinstance(world, dict) else read_manifest(Path(world))["settings"]
    return hashlib.sha256(json.dumps(source_settings(settings), sort_keys=True).encode()).hexdigest()[:16]


def _shipped_matches(wanted: dict) -> bool:
    provenance = SHIPPED / PROVENANCE
    return provenance.is_file() and json.loads(provenance.read_text())["backbones"] == wanted


def _install_shipped(dirs: dict[str, Path]) -> None:
    """Copy the shipped float16 backbones into the world as float32 (what the models load)."""
    from safetensors.torch import load_file, save_file

    for name, target in dirs.items():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(SHIPPED / name, partial)
        for weights in partial.glob("*.safetensors"):
            tensors = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(weights)).items()}
            save_file(tensors, str(weights))
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)


def ship_backbones(world: Path) -> Path:
    """Maintainers: store the world's backbones in the package as float16, with their provenance."""
    from safetensors.torch import load_file, save_file

    record = json.loads((Path(world) / "backbones" / RECORD).read_text())
    for name, source in backbone_dirs(world).items():
        target = SHIPPED / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
        for weights in target.glob("*.safetensors"):
            tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(str(weights)).items()}
            save_file(tensors, str(weights))
    provenance = {"backbones": record, "command": f"cirbench synth-backbones --world WORLD --steps {record['steps']} "
                  f"--batch-size {record['batch_size']} --seed {record['seed']} --ship",
                  "world": "cirbench synth --preset default --seed 0 --out WORLD"}
    (SHIPPED / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
    return SHIPPED
