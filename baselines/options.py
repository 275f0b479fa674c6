"""The build options of every model of the zoo, one dataclass per model family. No torch here.

These are the keys a recipe's ``model.overrides`` may set and the ``options`` a model folder's
config.json records (``cirbench.model_folder``); ``build_model(spec, **overrides)`` and
``cirbench train`` check them with the one section validator (``cirbench.config.read_section``):
unknown keys, wrong types and values out of range are refused with the key's name. The registry
(``baselines/zoo.py``) names each model's class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cirbench.config import at_least, between, greater_than

# CLIP4Cir's targetpad ratio (cirbench.backbones.targetpad.TARGETPAD_RATIO; a test keeps them equal)
TARGETPAD_RATIO = 1.25


@dataclass
class FashionBlip2Options:
    """FashionBLIP-2 (baselines/fashionblip2/model.py)."""

    use_adapters: bool = True
    adapter_reduction: int = field(default=16, metadata=at_least(1))
    matching: Literal["multihead", "global"] = "multihead"
    num_heads: int = field(default=12, metadata=at_least(1))
    head_dim: int = field(default=256, metadata=at_least(1))
    max_text_len: int = field(default=128, metadata=at_least(1))
    init_temperature: float = field(default=0.07, metadata=greater_than(0))
    backbone_dir: str | None = None  # vitg: a local copy of the weights; synth_tiny: the tiny backbone
    cache_image_features: bool = False  # frozen image tower: encode each image once (Blip2CIRModel.image_embeds)
    seed: int = 0  # initialises the new heads (and test_tiny's backbone)


@dataclass
class SprcOptions:
    """SPRC (baselines/sprc/model.py)."""

    max_text_len: int = field(default=32, metadata=at_least(1))  # SPRC's max_txt_len
    learnable_prompt_weight: float = field(default=1.0, metadata=at_least(0))
    align_weight: float = field(default=1.0, metadata=at_least(0))
    init_temperature: float = field(default=0.07, metadata=greater_than(0))
    image_preprocess: Literal["targetpad", "resize"] = "targetpad"  # SPRC's FashionIQ transform; resize: BLIP-2's
    text_processor: Literal["blip_caption", "none"] = "blip_caption"  # LAVIS's caption cleaning; none: raw text
    backbone_dir: str | None = None  # vitg: a local copy of the weights; synth_tiny: the tiny backbone
    cache_image_features: bool = False  # frozen image tower: encode each image once (Blip2CIRModel.image_embeds)
    seed: int = 0  # initialises the learnable prompt (and test_tiny's backbone)


@dataclass
class ClipOptions:
    """The zero-shot CLIP baselines (baselines/zero_shot/clip_baselines.py)."""

    pad_ratio: float | None = field(default=None, metadata=at_least(1))  # targetpad ratio; None: open_clip's transform
    backbone_dir: str | None = None  # synth_tiny: the tiny CLIP ($CIRBENCH_SYNTH_CLIP); real: a local copy
    seed: int = 0  # initialises what is not pre-trained


@dataclass
class Clip4CirOptions(ClipOptions):
    """CLIP4CIR (baselines/clip4cir/model.py): the Combiner's sizes, its dropout and the logit scale."""

    pad_ratio: float | None = field(default=TARGETPAD_RATIO, metadata=at_least(1))
    projection_factor: int = field(default=4, metadata=at_least(1))
    hidden_factor: int = field(default=8, metadata=at_least(1))
    dropout: float = field(default=0.5, metadata=between(0, 1))
    logit_scale: float = field(default=100.0, metadata=greater_than(0))
