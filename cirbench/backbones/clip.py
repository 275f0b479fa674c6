"""CLIP backbones from open_clip, for the zero-shot baselines and CLIP4CIR.

Every CLIP here is made by open_clip's own loading code, ``create_model_and_transforms``:

- a real name with a pretrained tag (``"RN50x4"``, ``"openai"``) loads the published weights,
  downloaded beforehand: they are looked up in the hub cache and loaded as a file, never fetched
  (``local_pretrained_file``; missing weights are one error naming what to download);
- ``cirbench-tiny-clip`` is an architecture config shipped with this package (random weights);
- a folder in open_clip's ``local-dir`` format (``open_clip_config.json`` + weights) loads as
  ``"local-dir:<folder>"``: the synthetic world's pre-trained tiny CLIP is one, and every CIR
  checkpoint of the CLIP family carries its ``open_clip_config.json`` so it rebuilds offline.

The tokenizer ships with open_clip and works offline. ``targetpad`` is CLIP4Cir's preprocessing:
images wider or taller than 1.25:1 are padded to 1.25:1 before the resize and centre crop, so a
long dress is not cropped to its middle.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from cirbench.backbones.folders import not_on_this_machine, synth_backbone_dir
from cirbench.backbones.targetpad import targetpad_transform

TINY_CLIP = "cirbench-tiny-clip"
_TINY_CONFIG_FILE = Path(__file__).with_name(f"{TINY_CLIP}.json")

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"

SYNTH_CLIP_ENV = "CIRBENCH_SYNTH_CLIP"


class ClipBackbone(nn.Module):
    """An open_clip model with its tokenizer and preprocessing config; encodes strings and images."""

    def __init__(self, clip: nn.Module, tokenizer: Callable, model_cfg: dict, preprocess_cfg: dict):
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer
        self.model_cfg = model_cfg  # open_clip architecture config, written with every checkpoint
        self.preprocess_cfg = preprocess_cfg

    @property
    def embed_dim(self) -> int:
        return int(self.model_cfg["embed_dim"])

    @property
    def image_size(self) -> int:
        size = self.preprocess_cfg["size"]
        return int(size if isinstance(size, int) else size[0])

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, D], not normalised (CLIP4Cir combines raw features)."""
        return self.clip.encode_image(images)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """B strings -> [B, D], not normalised; texts longer than the context are truncated."""
        return self.clip.encode_text(self.tokenizer(list(texts)).to(self.device))

    def image_transform(self, pad_ratio: float | None = None) -> Callable[[Image.Image], torch.Tensor]:
        """open_clip's eval transform, or with ``pad_ratio`` CLIP4Cir's targetpad transform."""
        cfg = PreprocessCfg(**self.preprocess_cfg)
        if pad_ratio is None:
            return image_transform_v2(cfg, is_train=False)
        return targetpad_transform(self.image_size, cfg.mean, cfg.std, pad_ratio)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.clip.set_grad_checkpointing(enable)

    def save_open_clip(self, directory: str | Path, *, weights: bool = True) -> Path:
        """Write the folder open_clip loads as ``local-dir:<directory>`` (config, optionally weights)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"model_cfg": self.model_cfg, "preprocess_cfg": _jsonable(self.preprocess_cfg)}
        (directory / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        if weights:
            state = {key: value.detach().cpu().contiguous() for key, value in self.clip.state_dict().items()}
            save_file(state, str(directory / OPEN_CLIP_WEIGHTS))
        return directory


def load_clip(
    model_name: str, pretrained: str | None = None, *, load_weights: bool = True, device: str | torch.device = "cpu"
) -> ClipBackbone:
    """Build a CLIP through open_clip: a built-in name (+ tag), ``TINY_CLIP`` or ``local-dir:<folder>``.

    Args:
        model_name: open_clip model name (``"RN50x4"``), ``TINY_CLIP`` or ``local_dir(folder)``.
        pretrained: open_clip pretrained tag (``"openai"``) of a built-in name; it also decides
            QuickGELU and the preprocessing, with or without weights.
        load_weights: False builds the architecture only (random init), e.g. to load a CIR
            checkpoint or to count parameters. Nothing is downloaded or looked up on disk then.
        device: where open_clip puts the model; ``"meta"`` (inside ``torch.device("meta")``)
            builds a full-size structure without allocating it.
    """
    _register_tiny_config()
    builtin = not model_name.startswith(("local-dir:", "hf-hub:"))
    quick_gelu = _tag_uses_quick_gelu(model_name, pretrained)
    random_init = not load_weights or (pretrained is None and builtin)
    # open_clip 3.3 resolves (downloads) a tag before it looks at load_weights: no tag without weights.
    # With weights, the tag's file is found in the local caches and passed as a file: nothing is fetched.
    tag_to_load = local_pretrained_file(model_name, pretrained) if load_weights and builtin and pretrained else None
    try:
        with _silence_random_init_warning(random_init):
            clip, _, _ = open_clip.create_model_and_transforms(
                model_name, pretrained=tag_to_load, load_weights=load_weights, force_quick_gelu=quick_gelu,
                device=device,
            )
    except RuntimeError as exc:
        raise RuntimeError(
            f"open_clip could not load {model_name!r} with pretrained={pretrained!r}: {exc}. "
            "Real weights must be downloaded beforehand (run once with network access, or point "
            "HF_HOME at a cache that holds them)."
        ) from exc
    model_cfg = open_clip.get_model_config(model_name)
    if quick_gelu:
        model_cfg["quick_gelu"] = True
    preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(clip))
    if pretrained and builtin:
        # The tag's own preprocessing (mean, std, interpolation), as loading it by its tag would set it.
        preprocess_cfg = merge_preprocess_dict(preprocess_cfg, open_clip.get_pretrained_cfg(model_name, pretrained))
    return ClipBackbone(clip, open_clip.get_tokenizer(model_name), model_cfg, preprocess_cfg)


def local_pretrained_file(model_name: str, pretrained: str) -> str:
    """The file of open_clip's published weights ``model_name``/``pretrained`` on this machine, found
    where open_clip would download it (the Hugging Face hub cache, ``$HF_HOME``; ``~/.cache/clip`` for
    URL-only weights), never fetched: weights not there are one FileNotFoundError naming what to
    download and where it goes. A tag open_clip does not know is returned as is (its own error)."""
    import os

    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        return pretrained
    if cfg.get("file"):
        return cfg["file"]
    repo, filename = os.path.split(cfg.get("hf_hub", ""))
    if repo:
        from huggingface_hub import try_to_load_from_cache

        # open_clip's own order: a safetensors copy first, then the named (or default) file
        name = filename or "open_clip_pytorch_model.bin"
        safe = "open_clip_model.safetensors" if name == "open_clip_pytorch_model.bin" else str(Path(name).with_suffix(".safetensors"))
        for name in dict.fromkeys([safe, name]):
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str):
                return found
        raise not_on_this_machine(f"the open_clip weights {model_name}/{pretrained}:", repo)
    url = cfg.get("url", "")
    cached = Path("~/.cache/clip").expanduser() / os.path.basename(url)
    if cached.is_file():
        return str(cached)
    raise FileNotFoundError(
        f"the open_clip weights {model_name}/{pretrained} are not on this machine and cirbench downloads nothing: "
        f"download {url} once where there is network and put it at {cached}, or give a local folder"
    )


def local_dir(directory: str | Path) -> str:
    """The open_clip model name of a folder in local-dir format."""
    return f"local-dir:{Path(directory).resolve()}"


def tiny_clip(seed: int = 0) -> ClipBackbone:
    """The tiny CLIP with reproducible random weights (tests, and the start of pre-training)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return load_clip(TINY_CLIP)


def resolve_synth_clip_dir(override: str | Path | None = None) -> Path:
    """The synthetic world's pre-trained tiny CLIP: ``override``, else ``$CIRBENCH_SYNTH_CLIP``, else
    the one ``synth-backbones`` installed last (``cirbench.backbones.folders``)."""
    return synth_backbone_dir(override, SYNTH_CLIP_ENV, (OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS), "pre-trained CLIP", kind="clip")


def backbone_for_variant(
    variant: str, real_variants: dict[str, tuple[str, str]], backbone_dir: str | Path | None = None
) -> ClipBackbone:
    """``test_tiny`` (random tiny), ``synth_tiny`` (pre-trained tiny) or a real (name, tag).

    For a real variant, ``backbone_dir`` names a local copy of its weights in open_clip's folder
    layout (e.g. the hub repo ``timm/vit_large_patch14_clip_224.openai`` downloaded elsewhere).
    """
    if variant == "test_tiny":
        return tiny_clip()
    if variant == "synth_tiny":
        return load_clip(local_dir(resolve_synth_clip_dir(backbone_dir)))
    if variant not in real_variants:
        known = ", ".join(["test_tiny", "synth_tiny", *real_variants])
        raise ValueError(f"unknown CLIP variant {variant!r}; known: {known}")
    if backbone_dir:
        return load_clip(local_dir(backbone_dir))
    name, tag = real_variants[variant]
    return load_clip(name, tag)


@contextmanager
def _silence_random_init_warning(active: bool) -> Iterator[None]:
    """open_clip warns "initialized randomly" even where that is the point (tiny models, or an
    architecture about to receive a checkpoint's weights)."""
    previous = logging.root.manager.disable
    if active:
        logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _register_tiny_config() -> None:
    if TINY_CLIP not in open_clip.list_models():
        open_clip.add_model_config(_TINY_CONFIG_FILE)


def _tag_uses_quick_gelu(model_name: str, pretrained: str | None) -> bool:
    """OpenAI's weights were trained with QuickGELU; open_clip's base configs use GELU."""
    if not pretrained or model_name.startswith(("local-dir:", "hf-hub:")):
        return False
    return bool(open_clip.get_pretrained_cfg(model_name, pretrained).get("quick_gelu", False))


def _jsonable(cfg: dict) -> dict:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in cfg.items()}
