"""Evaluation protocols as named, versioned data.

A protocol fixes everything that changes a number besides the model: how the annotation texts
become one query text, what the gallery is, whether the reference is removed, which cut-offs are
reported and how the headline is formed. Results carry the protocol's id; tables compare only
results of the same protocol.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cirbench.registry import Registry


def _strip(text: str) -> str:
    # Exactly what the published FashionIQ code strips; an empty caption stays empty (the real
    # val split has 3), giving e.g. " and longer", as the published numbers were computed.
    return text.strip(".?, ")


def join_c1_and_c2(captions: tuple[str, ...] | list[str]) -> str:
    """FashionIQ eval text as the published code forms it: "C1 and c2"."""
    if len(captions) == 1:
        return _strip(captions[0]).capitalize()
    c1, c2 = captions[0], captions[1]
    return f"{_strip(c1).capitalize()} and {_strip(c2)}"


def randomised_training_text(captions: tuple[str, ...] | list[str], rng: random.Random) -> str:
    """FashionIQ training text: one of "c1 and c2", "c2 and c1", "c1", "c2" (uniformly)."""
    if len(captions) == 1:
        return _strip(captions[0])
    c1, c2 = _strip(captions[0]), _strip(captions[1])
    return rng.choice([f"{c1} and {c2}", f"{c2} and {c1}", c1, c2])


TEXT_JOINS = {"c1_and_c2": join_c1_and_c2}


@dataclass(frozen=True)
class EvalProtocol:
    name: str
    version: str
    text_join: str  # a key of TEXT_JOINS
    remove_reference: bool  # drop the reference image from its own ranking
    ks: tuple[int, ...]
    headline_ks: tuple[int, ...]  # headline = mean over these of the category-averaged R@K
    description: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}/{self.version}"

    def query_text(self, captions: tuple[str, ...] | list[str]) -> str:
        return TEXT_JOINS[self.text_join](captions)


PROTOCOLS: Registry[EvalProtocol] = Registry("protocol")

FASHIONIQ_V1 = EvalProtocol(
    name="fashioniq",
    version="v1",
    text_join="c1_and_c2",
    remove_reference=False,
    ks=(1, 5, 10, 50),
    headline_ks=(10, 50),
    description=(
        "As the published FashionIQ code evaluates: per-category val gallery (all images of the "
        "category's val split), reference image kept in the gallery, query text 'C1 and c2', "
        "Recall@K as hit rate; headline = (mean R@10 + mean R@50) / 2 over dress, shirt, toptee."
    ),
)
PROTOCOLS.register(FASHIONIQ_V1.id, FASHIONIQ_V1, description=FASHIONIQ_V1.description)


def get_protocol(protocol_id: str) -> EvalProtocol:
    return PROTOCOLS.get(protocol_id)
