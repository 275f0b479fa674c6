"""A training recipe's sections as dataclasses, checked in full before anything is written.

A resolved recipe (``cirbench.config.load_recipe`` + ``--set`` overrides) has four sections and no
others (recipes/README.md documents every key):

    model:  ModelSection     which model, from which folder, with which build options
    data:   DataSection      the training triplets
    train:  TrainSettings    the loop's settings (``schedule:`` a ``Schedule``)
    eval:   EvalSection      optional per-epoch validation

``read_recipe`` reads them all with the one section validator (``cirbench.config.read_section``)
and checks ``model.overrides`` against the model's own options dataclass (the registry names
it), so a typo, a wrong type or a value out of range stops the command with one line naming the
file and the key. This module imports no torch: the commands validate before loading any model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cirbench.config import SectionError, at_least, between, greater_than, read_section
from cirbench.registry import Registry, RegistryError

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Schedule:
    """``train.schedule``: the learning rate over the optimizer steps (``cirbench.train.schedule``).

    - ``constant``: linear warm-up over ``warmup_steps``, then 1.
    - ``cosine``: linear warm-up over ``warmup_steps``, then a cosine from 1 down to ``min_ratio``.
    - ``onecycle``: torch's ``OneCycleLR`` (cosine annealing, no momentum cycling): from
      lr/``div_factor`` up to lr over the first ``pct_start`` of the steps, then down to
      lr/(``div_factor`` x ``final_div_factor``). SPRC trains with it.
    """

    name: Literal["constant", "cosine", "onecycle"] = "cosine"
    warmup_steps: int = field(default=0, metadata=at_least(0))
    min_ratio: float = field(default=0.0, metadata=between(0, 1))  # cosine: final lr / base lr
    pct_start: float = field(default=0.3, metadata=between(0, 1, low_open=True))  # onecycle: share of steps rising
    div_factor: float = field(default=25.0, metadata=greater_than(0))  # onecycle: base lr / initial lr
    final_div_factor: float = field(default=1e4, metadata=greater_than(0))  # onecycle: initial lr / final lr


@dataclass(frozen=True)
class TrainSettings:
    """The ``train:`` section of a recipe."""

    stage: str
    tasks: tuple[str, ...] = ("cir",)
    epochs: int | None = field(default=None, metadata=at_least(1))
    steps: int | None = field(default=None, metadata=at_least(1))  # optimizer steps; epochs or steps, not both
    batch_size: int = field(default=32, metadata=at_least(1))  # global: triplets per optimizer step
    grad_accum: int = field(default=1, metadata=at_least(1))
    lr: float = field(default=1e-4, metadata=greater_than(0))
    weight_decay: float = field(default=0.05, metadata=at_least(0))
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = field(default=1e-8, metadata=greater_than(0))
    max_grad_norm: float | None = field(default=None, metadata=greater_than(0))
    schedule: Schedule = field(default_factory=Schedule)
    precision: Literal["fp32", "bf16"] = "fp32"
    grad_checkpointing: bool = False
    seed: int = field(default=0, metadata=at_least(0))
    num_workers: int = field(default=0, metadata=at_least(0))
    checkpoint_every: int | None = field(default=None, metadata=at_least(1))  # a checkpoint also ends every epoch
    keep_checkpoints: int = field(default=2, metadata=at_least(1))

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise SectionError("epochs/steps", "give exactly one of epochs and steps")
        if not self.tasks:
            raise SectionError("tasks", "name at least one task, e.g. [cir]")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise SectionError("betas", f"both must be in [0, 1), got {list(self.betas)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path = "recipe") -> "TrainSettings":
        """The ``train:`` mapping of the recipe ``source``, validated (``read_section``)."""
        return read_section(cls, data, source, "train")

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch


@dataclass(frozen=True)
class ModelSection:
    """``model:``: the registry name (must match the command's), the variant, a starting folder
    and the model's build options (checked against its options dataclass by ``read_recipe``)."""

    name: str | None = None
    variant: str | None = None
    init_from: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSection:
    """``data:``: the training triplets (a reader of ``cirbench.data.benchmarks.TRAIN_READERS``)."""

    kind: str
    root: str
    categories: tuple[str, ...] | None = None
    text: Literal["randomised", "single"] | None = None  # default: randomised for fashioniq, else single
    missing: Literal["error", "skip"] = "error"
    image_root: str | None = None  # facap only: where the official release's image paths start
    fraction: float | None = field(default=None, metadata=between(0, 1, low_open=True))
    batch_groups: Literal["reference"] | None = None  # cirbench.train.data.BATCH_GROUPS: what shares a batch

    def __post_init__(self) -> None:
        from cirbench.data.benchmarks import TRAIN_READERS

        _check_name(TRAIN_READERS, self.kind, "kind")
        if self.image_root is not None and self.kind != "facap":
            raise SectionError("image_root", "only for kind facap (the official release's image paths)")

    @property
    def text_mode(self) -> str:
        return self.text or ("randomised" if self.kind == "fashioniq" else "single")


@dataclass(frozen=True)
class EvalSection:
    """``eval:``: per-epoch validation on a registered benchmark, as ``cirbench eval`` computes it."""

    dataset: str
    root: str
    split: str = "val"
    categories: tuple[str, ...] | None = None
    missing: Literal["error", "skip"] = "error"
    protocol: str = "fashioniq/v1"
    every: int = field(default=1, metadata=at_least(1))  # epochs
    batch_size: int = field(default=64, metadata=at_least(1))

    def __post_init__(self) -> None:
        from cirbench.data.benchmarks import DATASETS
        from cirbench.eval.protocols import PROTOCOLS

        _check_name(DATASETS, self.dataset, "dataset")
        _check_name(PROTOCOLS, self.protocol, "protocol")


@dataclass(frozen=True)
class RecipeSections:
    """Every section a recipe may have (``include:`` is resolved before this)."""

    train: TrainSettings
    data: DataSection
    model: ModelSection = field(default_factory=ModelSection)
    eval: EvalSection | None = None


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: its sections, the model spec it trains and the model's build options."""

    spec: str  # "name:variant"
    sections: RecipeSections
    options: Any  # the model's options dataclass with model.overrides applied over its defaults

    @property
    def train(self) -> TrainSettings:
        return self.sections.train

    @property
    def data(self) -> DataSection:
        return self.sections.data

    @property
    def model(self) -> ModelSection:
        return self.sections.model

    @property
    def eval(self) -> EvalSection | None:
        return self.sections.eval


def read_recipe(config: dict[str, Any], source: str | Path, model: str | None = None) -> Recipe:
    """Validate a resolved recipe in full; nothing is built, read or written.

    Args:
        config: the resolved recipe (includes merged, overrides applied).
        source: the recipe file, named in every error.
        model: the command's ``name[:variant]``; its variant wins over ``model.variant``, and its
            name must be the recipe's ``model.name`` (when the recipe names one). None: the recipe's.

    Raises ``DataError`` (one line: file, dotted key, problem) or ``RegistryError`` (an unknown
    model or variant, with close matches).
    """
    from cirbench.errors import DataError
    from cirbench.baselines.zoo import model_options_class, resolve_spec
    from cirbench.interface import ModelSpec

    sections = read_section(RecipeSections, config, source, "")
    asked = ModelSpec.parse(model) if model else ModelSpec(sections.model.name or "", None)
    if not asked.name:
        raise DataError(source, "model.name", "missing (the registry name of the model to train)")
    if sections.model.name and sections.model.name != asked.name:
        raise DataError(source, "model.name", f"the recipe trains {sections.model.name!r}, not {asked.name!r}")
    spec = resolve_spec(ModelSpec(asked.name, asked.variant or sections.model.variant))
    options = read_section(model_options_class(spec.name), sections.model.overrides, source, "model.overrides")
    return Recipe(str(spec), sections, options)


def _check_name(registry: Registry, name: str, key: str) -> None:
    try:
        registry.entry(name)
    except RegistryError as exc:
        raise SectionError(key, str(exc)) from None
