"""The one place for library APIs whose names changed inside the declared version ranges.

pyproject.toml's lower bounds are tested (``constraints/lowest.txt``, run by ``.ci/run``); where a
name moved between those bounds and the newest release, the code calls the shim here instead of
either name, so it neither breaks on the old release nor warns on the new one:

- activation (gradient) checkpointing: transformers 5.23 renamed ``gradient_checkpointing_enable``
  / ``_disable`` to ``activation_checkpointing_enable`` / ``_disable`` and deprecated the old names;
- ``no_init_weights``: ``transformers.modeling_utils`` up to 4.x, ``transformers.initialization`` in 5.x;
- the ``from_pretrained`` dtype argument: ``torch_dtype`` before transformers 4.56, ``dtype`` after
  (the old name is deprecated there).

Importing this module is cheap: transformers loads inside the functions.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any


def transformers_version() -> tuple[int, ...]:
    """transformers' release as a tuple of ints, e.g. (5, 17, 0)."""
    import transformers

    return _release(transformers.__version__)


def _release(version: str) -> tuple[int, ...]:
    """'5.17.0' -> (5, 17, 0); '4.57.0.dev0' -> (4, 57, 0)."""
    import re

    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def enable_activation_checkpointing(model: Any, checkpoint_kwargs: dict[str, Any] | None = None) -> None:
    """Recompute ``model``'s layer activations in the backward pass (a transformers PreTrainedModel).

    ``checkpoint_kwargs`` go to ``torch.utils.checkpoint.checkpoint`` (e.g. ``{"use_reentrant": False}``).
    """
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.23
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpoint_kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpoint_kwargs)


def disable_activation_checkpointing(model: Any) -> None:
    """Undo ``enable_activation_checkpointing``."""
    if hasattr(model, "activation_checkpointing_disable"):  # transformers >= 5.23
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


def no_init_weights() -> AbstractContextManager:
    """transformers' context that skips weight initialisation (for weights about to be loaded)."""
    try:
        from transformers.initialization import no_init_weights as context  # transformers 5
    except ImportError:
        from transformers.modeling_utils import no_init_weights as context  # transformers 4
    return context()


def dtype_kwargs(dtype: Any) -> dict[str, Any]:
    """``from_pretrained``'s keyword for the weights' dtype: ``dtype`` from 4.56, ``torch_dtype`` before."""
    return {"dtype": dtype} if transformers_version() >= (4, 56) else {"torch_dtype": dtype}


def attention_implementations(model: Any) -> dict[str, str]:
    """The attention kernel each part of a transformers model runs ("sdpa", "eager", ...).

    transformers picks SDPA wherever the installed release supports it for that part (BLIP-2: the
    vision tower from 4.53, the Q-Former from 5.x; everything eager on 4.50-4.52)."""
    found = {}
    for name in ("vision_model", "qformer"):
        part = getattr(model, name, None)
        if part is not None:
            found[name] = str(getattr(part.config, "_attn_implementation", None) or "eager")
    return found


def chat_template_processor_kwargs(processor: Any, **kwargs: Any) -> dict[str, Any]:
    """Keywords for the processor call inside ``processor.apply_chat_template`` (e.g. ``padding``):
    a ``processor_kwargs`` dict where the release has that argument (transformers 5; flat keywords
    warn there), flat keywords before."""
    import inspect

    if "processor_kwargs" in inspect.signature(processor.apply_chat_template).parameters:
        return {"processor_kwargs": kwargs}
    return kwargs
