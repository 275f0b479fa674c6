"""What every reader returns: evaluation splits of CIR queries over a gallery, and training triplets.

Readers (FashionIQ, enhFashionIQ, FACap, the synthetic world's files) turn files into these
objects and nothing else; the evaluator and the training loop only see these objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class CIRQuery:
    query_id: str  # stable within a split, e.g. "dress/val/17" (index in the caption file)
    category: str
    reference_id: str
    target_id: str | None  # None on test splits (no public targets)
    captions: tuple[str, ...]  # raw annotation texts; the protocol joins them


@dataclass
class EvalSplit:
    """One category of one split of one benchmark: the queries and the gallery they rank."""

    dataset: str  # registry name, e.g. "fashioniq"
    category: str
    split: str
    queries: list[CIRQuery]
    gallery: list[str]  # image ids, in file order; the ranking is over these
    image_paths: dict[str, Path]  # image id -> file, for every gallery and reference image found
    source: Path  # the caption file the queries came from
    n_queries_total: int = 0  # before dropping queries with missing images
    missing_images: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.n_queries_total = self.n_queries_total or len(self.queries)


@dataclass(frozen=True)
class TrainTriplet:
    reference_path: Path
    target_path: Path
    texts: tuple[str, ...]  # FashionIQ: the two annotator texts; FACap: one modification text
    category: str = ""
    target_caption: str | None = None  # the long caption of the target (FACap CTR task)
    reference_id: str = ""
    target_id: str = ""
