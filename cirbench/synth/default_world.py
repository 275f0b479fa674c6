"""The synthetic world as the FACap builders' default input: the cached default world, written on
first use (as ``cirbench synth --preset default --seed 0`` would), and the world's pre-trained
tiny CLIP as the pairing encoder when one has been built.

It lives with the world because the dependency goes one way: ``synth`` uses ``facap`` (the
world's tokenizer vocabulary holds what the offline FACap backends write; the builders read the
world's sources), and ``facap`` never imports ``synth``."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PRESET, DEFAULT_SEED = "default", 0


def default_world_dir() -> Path:
    """``worlds/default-seed0-format<N>`` under the cache root (``$CIRBENCH_CACHE``, else
    ``~/.cache/cirbench``): the folder names the world format, so a newer generator writes a new
    folder instead of refusing the old one."""
    from cirbench.files import cache_root
    from cirbench.synth.world import WORLD_FORMAT

    return cache_root() / "worlds" / f"{DEFAULT_PRESET}-seed{DEFAULT_SEED}-format{WORLD_FORMAT}"


def ensure_world(world: Path | None, progress: bool = True) -> Path:
    """``world`` as given, or the default world (written now if the cache lacks it)."""
    if world is not None:
        return Path(world)
    from cirbench.progress import stage_progress
    from cirbench.synth.presets import resolve_knobs
    from cirbench.synth.world import check_target, plan_world, write_plan

    folder = default_world_dir()
    plan = plan_world(DEFAULT_PRESET, DEFAULT_SEED, resolve_knobs(DEFAULT_PRESET))
    if not check_target(folder, plan.settings()):
        with stage_progress("writing the synthetic world", len(plan.images()), progress) as advance:
            write_plan(folder, plan, on_image=lambda done, total: advance(1))
    return folder


def synth_clip_dir(world: Path) -> Path | None:
    """The tiny CLIP pre-trained on this world: ``$CIRBENCH_SYNTH_CLIP``, else ``<world>/backbones/clip``."""
    from cirbench.backbones.clip import OPEN_CLIP_CONFIG, SYNTH_CLIP_ENV

    for candidate in (os.environ.get(SYNTH_CLIP_ENV), Path(world) / "backbones" / "clip"):
        if candidate and (Path(candidate) / OPEN_CLIP_CONFIG).is_file():
            return Path(candidate)
    return None


def world_embedder(clip_model: str | None, world: Path, device: str = "cpu"):
    """``--clip-model`` on the world; by default the world's tiny CLIP, or without one the
    thumbnail embedder (the returned note says so)."""
    from cirbench.facap.embedding import make_embedder

    folder = synth_clip_dir(world)
    if clip_model is None and folder is None:
        note = (f"no tiny CLIP pre-trained on {world} (build one with `cirbench synth-backbones --world {world}`); "
                "pairing with colour thumbnails instead")
        return make_embedder("thumbnail"), note
    return make_embedder(clip_model or "synth_tiny", device, folder), None
