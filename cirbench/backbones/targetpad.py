"""CLIP4Cir's "targetpad" image preprocessing, which SPRC also evaluates FashionIQ with.

An image whose long side exceeds ``ratio`` x its short side is padded with black to exactly that
ratio (so a long dress is not cropped to its middle), then the short side is resized (bicubic) to
the model's resolution, the centre is cropped square and the pixels are normalised. Both upstream
codebases (``data_utils.targetpad_transform``) use ratio 1.25 and CLIP's mean and std; CLIP4Cir at
the CLIP model's resolution (RN50x4: 288 px), SPRC at 224 px. Only torchvision: the BLIP-2 and
CLIP backbones both use it.
"""

from __future__ import annotations

from typing import Sequence

import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

TARGETPAD_RATIO = 1.25


class TargetPad:
    """Pad an image whose long side exceeds ``ratio`` x its short side to exactly that ratio (black)."""

    def __init__(self, ratio: float = TARGETPAD_RATIO):
        self.ratio = ratio

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if max(width, height) <= self.ratio * min(width, height):
            return image
        padded_short = max(width, height) / self.ratio
        pad_x = max(int((padded_short - width) / 2), 0)
        pad_y = max(int((padded_short - height) / 2), 0)
        return TF.pad(image, [pad_x, pad_y, pad_x, pad_y], fill=0)


def targetpad_transform(size: int, mean: Sequence[float], std: Sequence[float], ratio: float = TARGETPAD_RATIO):
    """PIL image -> [3, size, size] tensor: RGB, pad to ``ratio``, bicubic resize, centre crop, normalise.

    Upstream converts to RGB after the crop; cirbench's image loaders hand over RGB images already
    (README, "Parity with the upstream code"), so for them the order makes no difference.

    Args:
        size: output resolution (the short side is resized to it, then the centre square is kept).
        mean, std: per-channel normalisation.
        ratio: the largest aspect ratio left unpadded.
    """
    return T.Compose([
        lambda image: image.convert("RGB"),
        TargetPad(ratio),
        T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])
