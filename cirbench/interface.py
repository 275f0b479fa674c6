"""The CIR model interface every model in the zoo implements.

The evaluator talks to a model only through this interface: it never looks inside. A model owns
its preprocessing (PIL image -> tensor), its text handling (raw strings in) and its similarity
(``similarity``; the zoo's models implement it with a scorer, ``cirbench.scorers``).

The registry of models (``build_model``, ``resolve_spec``, ...) lives with the zoo, one layer up:
``cirbench.baselines.zoo``. This module imports nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable


if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass(frozen=True)
class ModelMeta:
    name: str  # registry name, e.g. "fashionblip2"
    variant: str  # e.g. "vitg", "test_tiny"
    scorer: str  # a name in cirbench.scorers.SCORERS
    query_shape: tuple[int, ...]  # per-query embedding shape, e.g. (12, 256)
    candidate_shape: tuple[int, ...]  # per-candidate embedding shape, e.g. (32, 256)
    image_size: int = 224
    trained_on: tuple[str, ...] = ()  # datasets seen in training, e.g. ("facap", "fashioniq")

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.variant}"


@dataclass
class CIRBatch:
    """A training batch of triplets. Images are already preprocessed by the model's ``preprocess``."""

    ref_images: "torch.Tensor"  # [B, 3, H, W]
    texts: list[str]  # modification texts, already randomised/joined by the dataset
    target_images: "torch.Tensor"  # [B, 3, H, W]
    target_captions: list[str] | None = None  # long captions of the targets (FACap CTR task)
    target_ids: list[str] = field(default_factory=list)  # to mask duplicate targets in-batch


@runtime_checkable
class CIRModel(Protocol):
    meta: ModelMeta

    def preprocess(self, image: "Image.Image") -> "torch.Tensor":
        """One PIL image -> [3, H, W] tensor, the model's own transform."""

    def encode_query(self, ref_images: "torch.Tensor", texts: Sequence[str]) -> "torch.Tensor":
        """[B, 3, H, W] images and B texts -> [B, *meta.query_shape]."""

    def encode_candidates(self, images: "torch.Tensor") -> "torch.Tensor":
        """[N, 3, H, W] -> [N, *meta.candidate_shape]."""

    def similarity(self, q: "torch.Tensor", c: "torch.Tensor") -> "torch.Tensor":
        """[B, *q] x [N, *c] -> [B, N], higher is better."""

    def checkpoint_hash(self) -> str:
        """Identifies the weights: features cached under one hash are valid for the same weights."""


@runtime_checkable
class TrainableCIRModel(CIRModel, Protocol):
    """What the training loop needs on top of the evaluation interface (models are nn.Modules)."""

    stages: tuple[str, ...]  # e.g. ("pretrain", "finetune") or ("clip_finetune", "combiner")
    tasks: tuple[str, ...]  # supported loss tasks, e.g. ("cir", "ctr")

    def set_trainable(self, stage: str) -> None:
        """Freeze / unfreeze parameters for a training stage (one of ``stages``)."""

    def training_losses(self, batch: CIRBatch, tasks: Sequence[str] = ("cir",)) -> dict[str, "torch.Tensor"]:
        """Named scalar losses for one batch; the loop minimises their sum. Unknown task -> ValueError."""

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json (spec + resolved build options) and model.safetensors to ``directory``;
        ``build_model(spec, checkpoint=directory)`` restores the same model."""

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the big encoder's activations in the backward pass (open_clip's and timm's name)."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    variant: str | None = None  # None: the registry entry's default variant

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        name, _, variant = text.partition(":")
        return cls(name.strip(), variant.strip() or None)

    def __str__(self) -> str:
        return f"{self.name}:{self.variant}" if self.variant else self.name


def check_training(model: Any, stage: str | None = None, tasks: Sequence[str] | None = None,
                   source: str | Path | None = None) -> None:
    """The one check of a training stage and loss tasks against a model (recipes, the loop, the models).

    Args:
        model: a ``TrainableCIRModel`` (its ``stages``, ``tasks`` and ``meta.spec``).
        stage: a stage to check, or None.
        tasks: tasks to check (at least one), or None.
        source: the recipe file named in the error (default: the model's spec).

    Raises ``DataError(source, "train.stage" | "train.tasks", problem)``.
    """
    from cirbench.errors import DataError

    spec = model.meta.spec
    where = source if source is not None else spec
    if stage is not None and stage not in model.stages:
        stages = ", ".join(model.stages) or "none: it is not trainable"
        raise DataError(where, "train.stage", f"{spec} has no stage {stage!r} (stages: {stages})")
    if tasks is not None:
        unknown = [task for task in tasks if task not in model.tasks]
        if unknown or not tasks:
            raise DataError(where, "train.tasks", f"{spec} does not train {unknown or 'no task'} "
                            f"(tasks: {', '.join(model.tasks) or 'none'})")
