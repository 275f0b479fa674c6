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
``pretrained/`` with ``provenance.json`` naming the world fingerprint, the recipe and the command
that made them (``cirbench synth-backbones --world W --ship``). They are installed (as float32)
only into a world with that exact fingerprint; any other world or recipe is pre-trained afresh.
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


def ensure_backbones(
    world: Path, recipe: BackboneRecipe = BackboneRecipe(), on_step: Callable[[str, int, int], None] | None = None,
    keep_existing: bool = False,
) -> dict[str, Path]:
    """Pre-train both backbones unless the world already has them for this recipe (with
    ``keep_existing``: for any recipe, as `synth-backbones` made them); then activate."""
    from cirbench.synth.pretrain import pretrain_blip2_backbone, pretrain_clip_backbone
    from cirbench.synth.vocabulary import world_vocabulary
    from cirbench.synth.world import image_caption_pairs

    dirs = backbone_dirs(world)
    record = Path(world) / "backbones" / RECORD
    wanted = {**asdict(recipe), "world": world_fingerprint(world)}
    made = json.loads(record.read_text()) if record.is_file() and all(d.is_dir() for d in dirs.values()) else None
    if made == wanted or (keep_existing and made and made.get("world") == wanted["world"]):
        return _install(world)
    if _shipped_matches(wanted):
        _install_shipped(dirs)
        record.write_text(json.dumps(wanted, indent=2) + "\n")
        return _install(world)
    pairs = image_caption_pairs(Path(world))[: recipe.max_pairs]
    builders = {"clip": pretrain_clip_backbone, "blip2": pretrain_blip2_backbone}
    # CLIP keeps open_clip's real BPE tokenizer; the tiny BLIP-2 one is built from the world's words.
    extra = {"clip": {"lr": recipe.lr}, "blip2": {"lr": recipe.blip2_lr, "words": world_vocabulary(world),
                                                                 "matching": recipe.blip2_matching}}
    for name, pretrain in builders.items():
        partial = dirs[name].with_name(dirs[name].name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        report = (lambda step, loss, name=name: on_step(name, step + 1, recipe.steps)) if on_step else None
        pretrain(pairs, partial, steps=recipe.steps, batch_size=recipe.batch_size, seed=recipe.seed,
                 image_size=recipe.image_size, on_step=report, **extra[name])
        shutil.rmtree(dirs[name], ignore_errors=True)
        partial.rename(dirs[name])  # a killed build never leaves a half backbone under the real name
    record.write_text(json.dumps(wanted, indent=2) + "\n")
    return _install(world)


def _install(world: Path) -> dict[str, Path]:
    """Record the world's backbones as the installed pair (``synth_tiny`` finds them from now on,
    in any process, without a variable) and activate them in this one."""
    from cirbench.backbones.folders import record_installed

    record_installed(world, backbone_dirs(world))
    return activate(world)


def world_fingerprint(world: Path) -> str:
    """Hash of the world's generator settings (preset, seed, knobs, format): same hash, same images."""
    from cirbench.synth.world import read_manifest

    settings = read_manifest(Path(world))["settings"]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


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
