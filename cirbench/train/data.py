"""Training data: TrainTriplets -> CIRBatch, deterministic for a given (seed, epoch, index).

Items are addressed by ``(epoch, index)`` keys, so every random choice (the epoch's order, the
FashionIQ caption randomisation) is a function of the seed and the key alone: the same in every
worker process, and the same again when a run is resumed in the middle of an epoch.

A global batch (``batch_size`` triplets per optimizer step) is cut into ``grad_accum``
micro-batches, each split evenly over the ranks: the samples of a step do not depend on how many
GPUs share it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image

from cirbench.data.images import open_rgb
from cirbench.errors import DataError
from cirbench.data.schema import TrainTriplet
from cirbench.eval.protocols import randomised_training_text
from cirbench.interface import CIRBatch

TEXT_MODES = ("randomised", "single")
# data.batch_groups -> the key that puts triplets in the same batch. "reference": triplets that
# share a reference image, so its other targets are in-batch negatives that look like it: told
# apart by the text only (random batches are told apart by image similarity alone).
BATCH_GROUPS = {"reference": lambda triplet: triplet.reference_id or str(triplet.reference_path)}


@dataclass
class TripletItem:
    reference: torch.Tensor
    text: str
    target: torch.Tensor
    target_caption: str | None
    target_id: str


class TripletDataset(torch.utils.data.Dataset):
    """Preprocessed triplets, indexed by ``(epoch, index)``.

    ``text="randomised"``: FashionIQ's training text, one of "c1 and c2", "c2 and c1", "c1", "c2";
    ``text="single"``: the triplet's one text as is (FACap). ``batch_groups``: a ``BATCH_GROUPS``
    name; its keys (``groups``) keep each group's triplets together in the epoch's order.
    """

    def __init__(
        self,
        triplets: Sequence[TrainTriplet],
        preprocess: Callable[[Image.Image], torch.Tensor],
        *,
        text: str = "randomised",
        seed: int = 0,
        source: str | Path = "training data",
        batch_groups: str | None = None,
    ):
        if text not in TEXT_MODES:
            raise DataError(source, "data.text", f"must be one of {', '.join(TEXT_MODES)}, got {text!r}")
        if batch_groups is not None and batch_groups not in BATCH_GROUPS:
            raise DataError(source, "data.batch_groups", f"must be one of {', '.join(BATCH_GROUPS)}, got {batch_groups!r}")
        if text == "single":
            for number, triplet in enumerate(triplets):
                if len(triplet.texts) != 1:
                    raise DataError(source, f"triplet {number} ({triplet.reference_id} -> {triplet.target_id})",
                                    f"has {len(triplet.texts)} texts; data.text=single needs exactly one")
        self.triplets = list(triplets)
        self.preprocess = preprocess
        self.text = text
        self.seed = seed
        self.source = source
        key = BATCH_GROUPS.get(batch_groups or "")
        self.groups = tuple(key(t) for t in self.triplets) if key else None

    def __len__(self) -> int:
        return len(self.triplets)

    def has_target_captions(self) -> bool:
        return all(t.target_caption for t in self.triplets)

    def __getitem__(self, key: tuple[int, int]) -> TripletItem:
        epoch, index = key
        triplet = self.triplets[index]
        if self.text == "randomised":
            text = randomised_training_text(triplet.texts, random.Random(f"text/{self.seed}/{epoch}/{index}"))
        else:
            text = triplet.texts[0]
        return TripletItem(
            reference=self.preprocess(open_rgb(triplet.reference_path)),
            text=text,
            target=self.preprocess(open_rgb(triplet.target_path)),
            target_caption=triplet.target_caption,
            target_id=triplet.target_id or str(triplet.target_path),
        )


def collate(items: list[TripletItem]) -> CIRBatch:
    captions = [item.target_caption for item in items]
    return CIRBatch(
        ref_images=torch.stack([item.reference for item in items]),
        texts=[item.text for item in items],
        target_images=torch.stack([item.target for item in items]),
        target_captions=captions if all(captions) else None,
        target_ids=[item.target_id for item in items],
    )


@lru_cache(maxsize=2)
def epoch_order(n: int, seed: int, epoch: int, groups: tuple[str, ...] | None = None) -> tuple[int, ...]:
    """The epoch's permutation of ``range(n)``: a function of (seed, epoch, groups) only.

    ``groups`` (one key per item): the groups come in random order, each group's items together
    in random order, so consecutive items (a batch) share groups."""
    rng = random.Random(f"order/{seed}/{epoch}")
    if groups is None:
        return tuple(rng.sample(range(n), n))
    members: dict[str, list[int]] = {}
    for index, key in enumerate(groups):
        members.setdefault(key, []).append(index)
    return tuple(i for key in rng.sample(list(members), len(members)) for i in rng.sample(members[key], len(members[key])))


@dataclass(frozen=True)
class BatchPlan:
    """Which triplets each rank sees at each micro-step (``drop_last``: full batches only)."""

    n_triplets: int
    batch_size: int  # global, per optimizer step
    grad_accum: int
    world_size: int
    rank: int
    seed: int

    def __post_init__(self) -> None:
        shards = self.grad_accum * self.world_size
        if self.batch_size % shards:
            raise ValueError(
                f"batch_size {self.batch_size} must divide evenly into grad_accum ({self.grad_accum}) "
                f"x GPUs ({self.world_size}) micro-batches"
            )
        if self.steps_per_epoch == 0:  # a DataError: one line for the user, not a traceback
            raise DataError("train.batch_size", str(self.batch_size),
                            f"the data holds {self.n_triplets} triplets, fewer than one batch: lower it "
                            "(--set train.batch_size=N) or train on more data")

    @property
    def steps_per_epoch(self) -> int:
        return self.n_triplets // self.batch_size

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // (self.grad_accum * self.world_size)

    def micro_batches(self, step: int, groups: tuple[str, ...] | None = None) -> list[list[tuple[int, int]]]:
        """This rank's ``grad_accum`` micro-batches of optimizer step ``step``, as (epoch, index) keys;
        ``groups``: the dataset's batch groups (``epoch_order``)."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = epoch_order(self.n_triplets, self.seed, epoch, groups)
        batch = order[position * self.batch_size:(position + 1) * self.batch_size]
        size = self.micro_batch_size
        shards = [batch[start:start + size] for start in range(0, len(batch), size)]
        return [[(epoch, i) for i in shards[m * self.world_size + self.rank]] for m in range(self.grad_accum)]


def step_loader(dataset: TripletDataset, plan: BatchPlan, steps: range, num_workers: int, pin_memory: bool = False):
    """A DataLoader over the micro-batches of ``steps`` (``grad_accum`` consecutive ones per step);
    ``pin_memory`` (for a CUDA device) lets the copies to the GPU run asynchronously."""
    micro = [keys for step in steps for keys in plan.micro_batches(step, dataset.groups)]
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=micro, collate_fn=collate, num_workers=num_workers,
        persistent_workers=False, pin_memory=pin_memory,
    )
