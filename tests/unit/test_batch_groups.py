"""Batches grouped by reference (``data.batch_groups: reference``): the other targets of a batch's
references are in-batch negatives that look like them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cirbench.data.schema import TrainTriplet
from cirbench.errors import DataError
from cirbench.train.data import BatchPlan, TripletDataset, epoch_order, step_loader


def _family_triplets(families: int, size: int) -> list[TrainTriplet]:
    return [TrainTriplet(Path(f"r{f}.png"), Path(f"t{f}-{k}.png"), ("is red",), "dress", reference_id=f"r{f}",
                         target_id=f"t{f}-{k}") for f in range(families) for k in range(size)]


def test_grouped_order_keeps_each_group_together_and_is_a_permutation():
    groups = tuple(f"g{i % 7}" for i in range(40))  # members of a group are not neighbours in the input
    for epoch in range(3):
        order = epoch_order(40, 5, epoch, groups)
        assert sorted(order) == list(range(40))
        runs = [groups[i] for i in order]
        assert [key for n, key in enumerate(runs) if n == 0 or runs[n - 1] != key] == list(dict.fromkeys(runs))
    assert epoch_order(40, 5, 0, groups) != epoch_order(40, 5, 1, groups)
    assert epoch_order(40, 5, 0, groups) == epoch_order(40, 5, 0, groups)  # a function of (seed, epoch, groups)


def test_a_batch_holds_whole_families_of_one_reference():
    triplets = _family_triplets(families=8, size=3)
    dataset = TripletDataset(triplets, lambda image: torch.zeros(1), text="single", batch_groups="reference")
    assert dataset.groups == tuple(t.reference_id for t in triplets)
    plan = BatchPlan(len(triplets), batch_size=6, grad_accum=1, world_size=1, rank=0, seed=0)
    for step in range(plan.steps_per_epoch):
        keys = plan.micro_batches(step, dataset.groups)[0]
        references = [triplets[index].reference_id for _, index in keys]
        assert len(set(references)) == 2  # 6 = two families of three
    ungrouped = [{triplets[i].reference_id for _, i in plan.micro_batches(s)[0]} for s in range(plan.steps_per_epoch)]
    assert max(len(refs) for refs in ungrouped) > 2  # a random order mixes them


def test_unknown_batch_groups_is_a_recipe_error():
    with pytest.raises(DataError, match="data.batch_groups"):
        TripletDataset(_family_triplets(2, 2), lambda image: None, text="single", batch_groups="colour")


def test_the_loader_follows_the_grouped_order(tmp_path):
    from PIL import Image

    triplets = []
    for f in range(4):
        for k in range(2):
            for name in (f"r{f}", f"t{f}-{k}"):
                Image.new("RGB", (8, 8), (40 * f, 20 * k, 0)).save(tmp_path / f"{name}.png")
            triplets.append(TrainTriplet(tmp_path / f"r{f}.png", tmp_path / f"t{f}-{k}.png", ("is red",), "dress",
                                         reference_id=f"r{f}", target_id=f"t{f}-{k}"))
    dataset = TripletDataset(triplets, lambda image: torch.zeros(1), text="single", batch_groups="reference")
    plan = BatchPlan(len(triplets), batch_size=4, grad_accum=1, world_size=1, rank=0, seed=1)
    for batch in step_loader(dataset, plan, range(plan.steps_per_epoch), num_workers=0):
        assert len({target.split("-")[0] for target in batch.target_ids}) == 2
