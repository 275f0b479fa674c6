"""CLIP4Cir checkpoints -> cirbench's CLIP4CIR on open_clip.

CLIP4Cir saves ``{"epoch": e, "CLIP": state_dict}`` (the fine-tuned OpenAI CLIP, ``tuned_clip_*.pt``)
and ``{"epoch": e, "Combiner": state_dict}`` (``combiner*.pt``). OpenAI's key names are open_clip's,
so the CLIP maps one to one (``keymaps.CLIP``); the architecture is read from the shapes the way
OpenAI's ``build_model`` reads it (heads = width / 64, QuickGELU), and the values are the ones
OpenAI's loader gives CLIP4Cir's evaluation on a GPU (``keymaps.CLIP_FP16_ROUNDED``). With a
Combiner file the model uses the Combiner (stage 2); with the CLIP file alone it uses the stage-1
sum and its Combiner is drawn from the seed, untrained.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from cirbench.errors import DataError
from cirbench.importers import keymaps
from cirbench.importers.mapping import MappedState, map_state
from cirbench.importers.reading import UpstreamState, read_state_dict

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def import_clip4cir(files: Sequence[str | Path], *, seed: int = 0,
                    variant: str | None = None) -> tuple["torch.nn.Module", MappedState]:
    """CLIP4Cir's fine-tuned CLIP (+ Combiner) -> our ``CLIP4CIR`` (eval mode) and what the mapping did.

    Args:
        files: the CLIP file and optionally the Combiner file, in any order.
        seed: draws the Combiner when no Combiner file is given.
        variant: recorded in the model folder; default the clip4cir variant whose open_clip
            architecture the checkpoint has (rn50x4, vit_l14), else an error naming the architecture.
    """
    from cirbench.backbones.clip import load_clip, local_dir
    from cirbench.baselines.clip4cir.model import CLIP4CIR

    clip_state, combiner_state = _split_files(files)
    model_cfg = openai_clip_config(clip_state.tensors, clip_state.file_of("text_projection"))
    variant = variant or _variant_of(model_cfg)
    with tempfile.TemporaryDirectory() as folder:
        _write_open_clip_config(Path(folder), model_cfg)
        backbone = load_clip(local_dir(folder), load_weights=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # as build_clip_model draws a fresh model's own parts
        model = CLIP4CIR(backbone, variant)
    expected = model.state_dict()
    mapped = map_state(clip_state, {k: v for k, v in expected.items() if k.startswith("backbone.")},
                       keymaps.CLIP, keymaps.CLIP_DROPPED, model="clip4cir's CLIP")
    if combiner_state is not None:
        combiner = map_state(combiner_state, {k: v for k, v in expected.items() if k.startswith("combiner.")},
                             keymaps.COMBINER, model="clip4cir's Combiner")
        mapped.tensors.update(combiner.tensors)
    missing, _ = model.load_state_dict(mapped.tensors, strict=False)
    model.combiner_active.fill_(combiner_state is not None)  # the switch: set by which files were given
    mapped.new = sorted(key for key in missing if key != "combiner_active")
    return model.eval(), mapped


def openai_clip_config(state: dict[str, torch.Tensor], file: Path | str = "CLIP checkpoint") -> dict:
    """open_clip's model config of an OpenAI CLIP state dict, read from its shapes as OpenAI's build_model does."""
    try:
        embed_dim = state["text_projection"].shape[1]
        width = state["ln_final.weight"].shape[0]
        text_cfg = {
            "context_length": state["positional_embedding"].shape[0],
            "vocab_size": state["token_embedding.weight"].shape[0],
            "width": width,
            "heads": width // 64,
            "layers": len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")}),
        }
        if "visual.proj" in state:  # ViT image tower
            vision_width = state["visual.conv1.weight"].shape[0]
            patch = state["visual.conv1.weight"].shape[-1]
            grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
            vision_cfg = {
                "image_size": patch * grid,
                "layers": len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")}),
                "width": vision_width,
                "patch_size": patch,
            }
        else:  # ModifiedResNet image tower
            grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
            vision_cfg = {
                "image_size": grid * 32,
                "layers": [len({k.split(".")[2] for k in state if k.startswith(f"visual.layer{b}.")}) for b in (1, 2, 3, 4)],
                "width": state["visual.layer1.0.conv1.weight"].shape[0],
                "patch_size": None,
            }
    except KeyError as exc:
        raise DataError(file, exc.args[0], "missing: an OpenAI CLIP state dict has it (is this CLIP4Cir's CLIP file?)") from None
    return {"embed_dim": int(embed_dim), "quick_gelu": True, "vision_cfg": _ints(vision_cfg), "text_cfg": _ints(text_cfg)}


def _ints(cfg: dict) -> dict:
    return {k: (int(v) if isinstance(v, int) else [int(x) for x in v] if isinstance(v, list) else v) for k, v in cfg.items()}


def _split_files(files: Sequence[str | Path]) -> tuple[UpstreamState, UpstreamState | None]:
    """(the CLIP state, the Combiner state or None), recognised by their keys."""
    clip, combiner = UpstreamState(), None
    for file in files:
        state = read_state_dict(file)
        if any(key.startswith("dynamic_scalar.") for key in state):
            if combiner is not None:
                raise DataError(file, "Combiner", "a second Combiner file: give one CLIP file and at most one Combiner")
            combiner = UpstreamState()
            combiner.add(state, Path(file))
        else:
            clip.add(state, Path(file))
    if not clip.tensors:
        raise DataError(", ".join(map(str, files)), "CLIP", "no CLIP file among them (only a Combiner)")
    return clip, combiner


def _variant_of(model_cfg: dict) -> str:
    """The clip4cir variant with this architecture, else an error naming the architecture."""
    import open_clip

    from cirbench.baselines.clip4cir.model import REAL_VARIANTS

    for variant, (name, _) in REAL_VARIANTS.items():
        known = open_clip.get_model_config(name)
        if _architecture(known) == _architecture(model_cfg):
            return variant
    raise DataError(
        "CLIP checkpoint", "architecture",
        f"{model_cfg} is none of clip4cir's variants ({', '.join(REAL_VARIANTS)}); pass a variant explicitly",
    )


def _architecture(cfg: dict) -> tuple:
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    layers = vision["layers"]
    return (cfg["embed_dim"], vision["image_size"], tuple(layers) if isinstance(layers, (list, tuple)) else layers,
            vision["width"], vision.get("patch_size"), text["context_length"], text["vocab_size"], text["width"],
            text["heads"], text["layers"])


def _write_open_clip_config(folder: Path, model_cfg: dict) -> None:
    """open_clip's local-dir config (no weights): how CLIP4CIR checkpoints rebuild their backbone."""
    from cirbench.backbones.clip import OPEN_CLIP_CONFIG

    preprocess = {"size": model_cfg["vision_cfg"]["image_size"], "mode": "RGB", "mean": list(OPENAI_MEAN),
                  "std": list(OPENAI_STD), "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}
    (folder / OPEN_CLIP_CONFIG).write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}, indent=2))

