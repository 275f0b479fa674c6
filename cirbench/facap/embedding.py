"""Image embedders for the pairing stage: ``embedder(paths) -> float32 [N, D]`` with unit rows.

``make_embedder`` reads a ``--clip-model`` spec:

- ``NAME/TAG``: an open_clip model with published weights, e.g. ``ViT-L-14/openai`` (the paper's
  pairing encoder; weights downloaded beforehand);
- ``synth_tiny``: the tiny CLIP pre-trained on the synthetic world (``cirbench.backbones.clip``),
  recorded as the ``local-dir:FOLDER`` it was loaded from;
- ``local-dir:FOLDER``: any CLIP saved in open_clip's local-dir format;
- ``thumbnail``: no model, a colour thumbnail (smoke tests; pairs images that look alike).

The build embeds fixed chunks of images and stores each chunk, so a resumed build reuses exactly
the vectors it had and computes the rest with the same chunking.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from cirbench.data.images import open_rgb

DEFAULT_CLIP = "ViT-L-14/openai"  # the paper's pairing encoder, for real data


class Embedder(Protocol):
    name: str  # recorded in the manifest

    def __call__(self, paths: Sequence[Path]) -> np.ndarray: ...


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class ThumbnailEmbedder:
    """Pixels of a ``size`` x ``size`` colour thumbnail, centred on mid-grey, unit length."""

    def __init__(self, size: int = 8):
        self.size = size
        self.name = f"thumbnail-{size}"

    def __call__(self, paths: Sequence[Path]) -> np.ndarray:
        rows = [np.asarray(open_rgb(p).resize((self.size, self.size)), dtype=np.float32).ravel() for p in paths]
        return unit_rows(np.stack(rows) / 255.0 - 0.5)


class ClipEmbedder:
    """A CLIP image tower (open_clip, via ``cirbench.backbones.clip``); images decoded in threads."""

    def __init__(self, name: str, backbone, device: str = "cpu"):
        self.name = name
        self.backbone = backbone.to(device).eval()
        self.transform = backbone.image_transform()
        self.device = device

    def __call__(self, paths: Sequence[Path]) -> np.ndarray:
        import torch

        with ThreadPoolExecutor(max_workers=4) as pool:
            pixels = torch.stack(list(pool.map(lambda p: self.transform(open_rgb(p)), paths)))
        with torch.inference_mode():
            features = self.backbone.encode_image(pixels.to(self.device))
        return unit_rows(features.float().cpu().numpy())


def load_clip_spec(spec: str, synth_clip_dir: Path | None = None):
    """(loadable name, ClipBackbone) for a CLIP ``--clip-model`` spec (not ``thumbnail``)."""
    from cirbench.backbones import clip

    if spec == "synth_tiny":
        spec = clip.local_dir(clip.resolve_synth_clip_dir(synth_clip_dir))
    if spec.startswith("local-dir:"):
        return spec, clip.load_clip(spec)
    name, _, tag = spec.partition("/")
    if not tag:
        raise ValueError(f"--clip-model {spec!r}: expected NAME/PRETRAINED (e.g. ViT-L-14/openai), synth_tiny, local-dir:FOLDER or thumbnail")
    return spec, clip.load_clip(name, tag)


def make_embedder(spec: str, device: str = "cpu", synth_clip_dir: Path | None = None) -> Embedder:
    if spec == "thumbnail" or spec.startswith("thumbnail-"):
        return ThumbnailEmbedder(int(spec.partition("-")[2] or 8))
    return ClipEmbedder(*load_clip_spec(spec, synth_clip_dir), device)
