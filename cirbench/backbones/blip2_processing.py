"""BLIP-2's input processing: the image processor (square bicubic resize, CLIP's normalisation)
and LAVIS's ``blip_caption`` text processor."""

from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image

# BLIP-2's image processor: bicubic resize to a square, then CLIP's normalisation.
BLIP2_MEAN = (0.48145466, 0.4578275, 0.40821073)
BLIP2_STD = (0.26862954, 0.26130258, 0.27577711)


def preprocess_image(image: Image.Image, size: int) -> torch.Tensor:
    """One PIL image -> [3, size, size] float tensor, BLIP-2's resize and normalisation."""
    pixels = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    tensor = torch.from_numpy(pixels / 255.0).permute(2, 0, 1)
    mean = torch.tensor(BLIP2_MEAN).view(3, 1, 1)
    std = torch.tensor(BLIP2_STD).view(3, 1, 1)
    return (tensor - mean) / std


def blip_caption(text: str, max_words: int = 50) -> str:
    """LAVIS's ``blip_caption`` text processor, which SPRC applies to every modification text (training
    and evaluation): lower case, ``.!"()*#:;~`` become spaces, runs of spaces collapse, at most
    ``max_words`` words. (Commas, ``?`` and apostrophes stay.)"""
    text = re.sub(r"\s{2,}", " ", re.sub(r'([.!"()*#:;~])', " ", text.lower()))
    words = text.rstrip("\n").strip(" ").split(" ")
    return " ".join(words[:max_words])
