"""Does a CIR model follow the words of a modification text? Measured on a world's ground truth.

Recall@K says how often a model finds the target; it does not say whether the text was read. Here
every image of a FashionIQ-like split becomes a reference (up to ``references`` per category), and
for each value in use of each attribute, one short instruction in the annotators' words ("is red",
"has long sleeves") is composed with every reference that lacks the value. The model retrieves
among the category's images of the split, the reference itself left out. Reported per attribute:

- ``followed``: how often the top image has the asked value;
- ``control``: how often it has that value when the instruction asked for another value of the
  same attribute, from the same references: what the images alone give.

A model that reads the words is far above its control; a text-blind one equals it; the oracle is 100.

The ranker is any ``(category, reference ids, text) -> top image id per reference`` function, so
the measure is checked with an oracle and a text-blind ranker in the tests; ``model_ranker`` wraps
any registered CIR model through the CIR interface only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cirbench.synth.attributes import ATTRIBUTES
from cirbench.synth.probe import ProbeImages
from cirbench.synth.text import instruction

if TYPE_CHECKING:
    from cirbench.interface import CIRModel

Ranker = Callable[[str, Sequence[str], str], list[str]]


@dataclass
class FollowProbe:
    model: str
    split: str
    references: int  # per category
    followed: dict[str, float]  # attribute -> percent of instructions whose top image has the asked value
    control: dict[str, float]  # attribute -> percent when another value of the attribute was asked
    queries: dict[str, int]  # attribute -> instructions composed with a reference lacking the value


def follow_probe(groups: Sequence[ProbeImages], ranker: Ranker, model: str, split: str = "val",
                 references: int = 60) -> FollowProbe:
    """Per attribute: followed and control percentages (module docstring) of ``ranker`` on the
    split's images (``probe.probe_images``)."""
    counts = {a: [0.0, 0.0, 0] for a in ATTRIBUTES}  # followed hits, control hits, instructions
    for group in groups:
        truth = {path.stem: garment for path, garment in zip(group.paths, group.garments)}
        refs = list(truth)[:references]
        for attribute in ATTRIBUTES:
            values = sorted({getattr(g, attribute) for g in group.garments} - {None})
            if len(values) < 2:
                continue
            tops = {v: ranker(group.category, refs, instruction(attribute, v)) for v in values}
            for value in values:
                lacking = [i for i, ref in enumerate(refs) if getattr(truth[ref], attribute) != value]
                has_value = {asked: sum(getattr(truth[top[i]], attribute) == value for i in lacking)
                             for asked, top in tops.items()}
                counts[attribute][0] += has_value.pop(value)
                counts[attribute][1] += sum(has_value.values()) / len(has_value)  # mean over the other asks
                counts[attribute][2] += len(lacking)
    measured = {a: c for a, c in counts.items() if c[2]}
    return FollowProbe(
        model=model,
        split=split,
        references=references,
        followed={a: 100.0 * c[0] / c[2] for a, c in measured.items()},
        control={a: 100.0 * c[1] / c[2] for a, c in measured.items()},
        queries={a: c[2] for a, c in measured.items()},
    )


def model_ranker(model: "CIRModel", groups: Sequence[ProbeImages], batch_size: int = 128) -> Ranker:
    """Top image per (reference, text) among the category's images of the split, reference left out."""
    import torch
    from PIL import Image

    paths = {g.category: {p.stem: p for p in g.paths} for g in groups}
    gallery: dict[str, tuple[dict[str, int], list[str], torch.Tensor]] = {}

    def images(category: str, ids: Sequence[str]) -> torch.Tensor:
        return torch.stack([model.preprocess(Image.open(paths[category][i])) for i in ids])

    def candidates(category: str) -> tuple[dict[str, int], list[str], torch.Tensor]:
        if category not in gallery:  # encoded once per category, reused by every instruction
            ids = list(paths[category])
            with torch.no_grad():
                features = torch.cat([model.encode_candidates(images(category, ids[i : i + batch_size]))
                                      for i in range(0, len(ids), batch_size)])
            gallery[category] = ({image_id: column for column, image_id in enumerate(ids)}, ids, features)
        return gallery[category]

    def rank(category: str, refs: Sequence[str], text: str) -> list[str]:
        columns, ids, features = candidates(category)
        with torch.no_grad():
            scores = model.similarity(model.encode_query(images(category, refs), [text] * len(refs)), features)
        scores[torch.arange(len(refs)), torch.tensor([columns[r] for r in refs])] = float("-inf")
        return [ids[j] for j in scores.argmax(dim=1).tolist()]

    return rank
