"""The model zoo's registry: every model by name with its variants, and how specs are built.

``"name:variant"`` selects a model, the bare name its default variant; ``build_model(spec,
checkpoint=folder, **overrides)`` builds it (a fresh model, or one read back from a model folder,
``cirbench.model_folder``). Entries are strings (``"module:function"``), so importing this module
imports no torch; a model's module loads when it is first built.

Variants: the real-size ones load the published weights through the real loading code (they need
the weights downloaded beforehand); ``synth_tiny`` builds on the synthetic world's pretrained tiny
backbones; ``test_tiny`` builds instantly with random weights (contract tests, CI).

This is the zoo layer: the interface (``cirbench.interface``) is below it and knows nothing of it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cirbench.interface import CIRModel, ModelSpec
from cirbench.registry import Registry, RegistryError, import_string

MODELS: Registry[Any] = Registry("model")


def register_model(
    name: str,
    factory: Any,
    *,
    options: str | None = None,
    variants: dict[str, str],
    default_variant: str,
    description: str = "",
) -> None:
    """Register a model factory ``build(variant: str, checkpoint: str | None, **overrides)``.

    ``options`` is the ``"module:Class"`` of the dataclass of its build options (the keys a
    recipe's ``model.overrides`` may set; a torch-free module), None for a model without any.
    ``variants`` maps variant name -> one-line description; every model has ``test_tiny``.
    """
    if default_variant not in variants:
        raise ValueError(f"default variant {default_variant!r} of {name!r} is not in its variants")
    MODELS.register(
        name, factory, description=description, variants=variants, default_variant=default_variant,
        options=options,
    )


def model_options_class(name: str) -> type:
    """The dataclass of a registered model's build options (``model.overrides`` in recipes)."""
    target = MODELS.entry(name).metadata["options"]
    return NoOptions if target is None else import_string(target)


@dataclass(frozen=True)
class NoOptions:
    """The build options of a model that takes none."""


def resolve_spec(spec: str | ModelSpec) -> ModelSpec:
    """Validate a model spec against the registry; fill in the default variant."""
    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    entry = MODELS.entry(spec.name)
    variants = entry.metadata["variants"]
    variant = spec.variant or entry.metadata["default_variant"]
    if variant not in variants:
        close = difflib.get_close_matches(variant, list(variants), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise RegistryError(
            f"model {spec.name!r} has no variant {variant!r}.{hint} Variants: {', '.join(variants)}"
        )
    return ModelSpec(spec.name, variant)


def build_model(spec: str | ModelSpec, checkpoint: str | Path | None = None, **overrides: Any) -> CIRModel:
    """Build a registered model.

    Args:
        spec: ``name[:variant]`` (the default variant when none is given).
        checkpoint: a model folder (``save_pretrained`` or training wrote it; ``cirbench.model_folder``)
            to read the model back from; None: a fresh model of the variant.
        overrides: build options (fields of the model's options dataclass, ``baselines/options.py``),
            over the folder's recorded ones; checked by the one section validator.

    Raises ``RegistryError`` for an unknown name or variant (with close matches) and ``DataError``
    for a bad option or folder.
    """
    spec = resolve_spec(spec)
    factory = MODELS.get(spec.name)
    return factory(variant=spec.variant, checkpoint=str(checkpoint) if checkpoint else None, **overrides)


def list_model_specs() -> list[tuple[str, str, str]]:
    """(name, variant, description) for every registered variant."""
    rows = []
    for entry in MODELS.entries():
        for variant, description in entry.metadata["variants"].items():
            rows.append((entry.name, variant, description))
    return rows


# ---- the zoo ---------------------------------------------------------------------------------

_OPTIONS = "cirbench.baselines.options"  # every model's build options (torch-free)
_TINY = {
    "test_tiny": "tiny config, random weights (tests)",
    "synth_tiny": "tiny backbone pre-trained on the synthetic world (demo)",
}

for _mode, _what in [
    ("image_only", "reference image alone (ignores the text)"),
    ("text_only", "modification text alone (ignores the image)"),
    ("sum", "normalised image + text embedding sum"),
]:
    register_model(
        f"clip_{_mode}",
        f"cirbench.baselines.zero_shot.clip_baselines:build_{_mode}",
        options=f"{_OPTIONS}:ClipOptions",
        variants={
            "vit_l14_openai": "open_clip ViT-L-14, OpenAI weights",
            "vit_b32_openai": "open_clip ViT-B-32, OpenAI weights",
            "rn50x4_openai": "open_clip RN50x4, OpenAI weights",
            **_TINY,
        },
        default_variant="vit_l14_openai",
        description=f"zero-shot CLIP baseline: {_what}",
    )

register_model(
    "clip4cir",
    "cirbench.baselines.clip4cir.model:build",
    options=f"{_OPTIONS}:Clip4CirOptions",
    variants={
        "rn50x4": "open_clip RN50x4 (OpenAI) + Combiner, as in the CLIP4Cir paper",
        "vit_l14": "open_clip ViT-L-14 (OpenAI) + Combiner",
        **_TINY,
    },
    default_variant="rn50x4",
    description="CLIP4CIR: fine-tuned CLIP + gated Combiner, cosine scoring",
)

register_model(
    "fashionblip2",
    "cirbench.baselines.fashionblip2.model:build",
    options=f"{_OPTIONS}:FashionBlip2Options",
    variants={
        "vitg": "BLIP-2 ViT-g retrieval (Salesforce/blip2-itm-vit-g) + adapters + multi-head matcher",
        **_TINY,
    },
    default_variant="vitg",
    description="FashionBLIP-2 (FACap paper): adapters in the frozen ViT, Q-Former fusion, multi-head matching",
)

register_model(
    "sprc",
    "cirbench.baselines.sprc.model:build",
    options=f"{_OPTIONS}:SprcOptions",
    variants={
        "vitg": "BLIP-2 ViT-g retrieval (Salesforce/blip2-itm-vit-g) Q-Former, SPRC prompts",
        **_TINY,
    },
    default_variant="vitg",
    description="SPRC: sentence-level prompts from the Q-Former, max-over-tokens scoring",
)
