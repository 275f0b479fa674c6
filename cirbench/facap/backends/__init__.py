"""Pluggable annotation backends for the two stages of the FACap pipeline.

Stage 1, a *captioner*, writes a detailed caption per image; stage 2, a *modifier*, writes the
modification text from the reference's and the target's captions. Each stage has three kinds,
selected by name: ``offline`` (no model; from metadata / attribute comparison), ``transformers``
(a local model) and ``openai`` (any OpenAI-compatible chat-completions server).

A backend takes a batch of requests and returns, in order, either the text or a ``Failure``: a
failure is recorded by the build and retried by the next run, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol, Sequence, Union

from cirbench.registry import Registry


@dataclass(frozen=True)
class CaptionRequest:
    key: str  # image id
    image_path: Path
    category: str
    description: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModificationRequest:
    key: str  # reference image id
    category: str
    reference_caption: str
    target_caption: str


@dataclass(frozen=True)
class Failure:
    error: str
    attempts: int = 1


Result = Union[str, Failure]


@dataclass(frozen=True)
class BackendOptions:
    """Everything a backend may need; each kind reads the fields it uses."""

    model: str | None = None  # transformers model id / folder, or the served model's name
    base_url: str | None = None  # OpenAI-compatible server, e.g. http://localhost:8000/v1
    api_key_env: str = "CIRBENCH_OPENAI_API_KEY"  # the key is read from here, never stored
    prompt: str | None = None  # prompt file stem; None: the stage's current prompt
    max_new_tokens: int = 128
    device: str = "cpu"
    batch_size: int = 8
    concurrency: int = 4
    timeout_s: float = 60.0
    max_attempts: int = 5
    backoff_s: float = 1.0


class Captioner(Protocol):
    description: dict  # recorded in the manifest: backend, model, prompt name and hash

    def caption(self, requests: Sequence[CaptionRequest]) -> list[Result]: ...


class Modifier(Protocol):
    description: dict

    def modify(self, requests: Sequence[ModificationRequest]) -> list[Result]: ...


CAPTIONERS: Registry = Registry("captioner backend")
MODIFIERS: Registry = Registry("modifier backend")
DEFAULT_PROMPTS = {"captioner": "caption_v1", "modifier": "modification_v1"}

for _name, _module in (("offline", "offline"), ("transformers", "transformers_backend"), ("openai", "openai_http")):
    CAPTIONERS.register(_name, f"cirbench.facap.backends.{_module}:build_captioner")
    MODIFIERS.register(_name, f"cirbench.facap.backends.{_module}:build_modifier")


def build_captioner(kind: str, options: BackendOptions = BackendOptions()) -> Captioner:
    return CAPTIONERS.get(kind)(options)


def build_captioner_for(kind: str, options: BackendOptions, embedder) -> Captioner:
    """The captioner of a build: the offline one reads the attributes of images that come without
    metadata (FashionIQ images in build-enhfiq) with the pairing CLIP, when the pairing uses one."""
    from cirbench.facap.backends.offline import OfflineCaptioner
    from cirbench.facap.embedding import ClipEmbedder
    from cirbench.facap.zero_shot import ZeroShotAttributes

    if kind == "offline" and isinstance(embedder, ClipEmbedder):
        return OfflineCaptioner(ZeroShotAttributes(embedder))
    return build_captioner(kind, options)


def build_modifier(kind: str, options: BackendOptions = BackendOptions()) -> Modifier:
    return MODIFIERS.get(kind)(options)


def make_annotators(config, embedder=None, captioner: Captioner | None = None, modifier: Modifier | None = None) -> tuple:
    """(pairing encoder, captioner, modifier) of a build config (FACap or enhFashionIQ: fields
    ``clip_model``, ``device``, ``captioner``, ``modifier`` and their options): those given, the
    others made from the config."""
    from cirbench.facap.embedding import make_embedder

    embedder = embedder or make_embedder(config.clip_model, config.device)
    captioner = captioner or build_captioner_for(config.captioner, config.captioner_options, embedder)
    modifier = modifier or build_modifier(config.modifier, config.modifier_options)
    return embedder, captioner, modifier


def stage_prompt(stage: str, options: BackendOptions):
    from cirbench.facap.prompts import load_prompt

    return load_prompt(options.prompt or DEFAULT_PROMPTS[stage])


def format_attributes(attributes: Mapping[str, str]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in sorted(attributes.items())) or "none given"


def caption_prompt(prompt, request: CaptionRequest) -> str:
    """The captioner's prompt text for one image (model backends)."""
    return prompt.render(category=request.category, description=request.description or "(none)",
                         attributes=format_attributes(request.attributes))


def modification_prompt(prompt, request: ModificationRequest) -> str:
    """The modifier's prompt text for one pair (model backends)."""
    return prompt.render(category=request.category, reference_caption=request.reference_caption,
                         target_caption=request.target_caption)
