"""Offline backends: no model, no network; deterministic.

The captioner writes a caption from the source's metadata: the labelled attributes first, then
for the dimensions the labels lack, the first attribute words of the source's description (on
DeepFashion-MultiModal, whose captions describe the whole outfit, such a word can belong to
another garment), followed by the description itself. The modifier finds the fashion attributes
named in both captions and writes the ones that differ as a concise change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

from cirbench.facap.attribute_phrases import DIMENSION_WORDS, DIMENSIONS, canonical_value, parse_attributes
from cirbench.facap.backends import BackendOptions, CaptionRequest, ModificationRequest, Result

# Bumped whenever the generated text changes: builds record it like a prompt hash.
OFFLINE_VERSION = "offline_v1"

_SENTENCES = {
    "pattern": "The pattern is {}.",
    "sleeve": "It has {}.",
    "neckline": "The neckline is a {}.",
    "length": "The length is {}.",
    "fit": "The fit is {}.",
    "material": "The fabric is {}.",
}
_NO_SLEEVES = {"sleeveless", "strapless"}


def caption_attributes(description: str, attributes: Mapping[str, str]) -> dict[str, str]:
    found = {**parse_attributes(description), **{d: canonical_value(d, v) for d, v in attributes.items() if d in DIMENSIONS}}
    return {dim: found[dim] for dim in DIMENSIONS if dim in found}


def write_caption(category: str, description: str, attributes: Mapping[str, str]) -> str:
    found = caption_attributes(description, attributes)
    head = " ".join(filter(None, [found.get("colour"), category]))
    sentences = [f"A {head}."]
    for dim, template in _SENTENCES.items():
        if dim in found:
            value = found[dim]
            sentences.append(f"It is {value}." if dim == "sleeve" and value in _NO_SLEEVES else template.format(value))
    if description.strip():
        sentences.append(f'Source description: "{description.strip()}"')
    return " ".join(sentences)


def write_modification(category: str, reference_caption: str, target_caption: str) -> str:
    reference, target = parse_attributes(reference_caption), parse_attributes(target_caption)
    changes = []
    for dim in DIMENSIONS:
        new, old = target.get(dim), reference.get(dim)
        if new and new != old:
            change = f"the {DIMENSION_WORDS[dim]} to {new}"
            changes.append(f"{change} instead of {old}" if old else change)
    if not changes:
        return f"Keep the same {category} with only subtle differences."
    listed = changes[0] if len(changes) == 1 else ", ".join(changes[:-1]) + " and " + changes[-1]
    return f"Change {listed}."


class OfflineCaptioner:
    """Captions from metadata; images with no metadata at all get the attributes ``recognise``
    reads off them (``cirbench.facap.zero_shot``), when one is given."""

    def __init__(self, recognise: Callable[[list[Path], list[str]], list[dict[str, str]]] | None = None):
        self.recognise = recognise
        self.description = {"backend": "offline", "version": OFFLINE_VERSION}
        if recognise is not None:
            self.description["attributes_of_images_without_metadata"] = recognise.name

    def caption(self, requests: Sequence[CaptionRequest]) -> list[Result]:
        seen = self._recognised([r for r in requests if not r.description and not r.attributes])
        return [write_caption(r.category, r.description, seen.get(r.key, r.attributes)) for r in requests]

    def _recognised(self, blind: list[CaptionRequest]) -> dict[str, dict[str, str]]:
        if not blind or self.recognise is None:
            return {}
        found = self.recognise([r.image_path for r in blind], [r.category for r in blind])
        return {r.key: attributes for r, attributes in zip(blind, found)}


class OfflineModifier:
    description = {"backend": "offline", "version": OFFLINE_VERSION}

    def modify(self, requests: Sequence[ModificationRequest]) -> list[Result]:
        return [write_modification(r.category, r.reference_caption, r.target_caption) for r in requests]


def build_captioner(options: BackendOptions) -> OfflineCaptioner:
    return OfflineCaptioner()


def build_modifier(options: BackendOptions) -> OfflineModifier:
    return OfflineModifier()
