"""The training loop's parts: schedules, the batch plan, the in-batch loss, checkpoints, and the
resume guarantee (N steps straight == N/2 steps, interruption, N/2 more after --resume)."""

from __future__ import annotations

import json
import math
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from cirbench.errors import DataError
from cirbench.data.schema import TrainTriplet
from cirbench.train.checkpoint import latest_checkpoint, load_training_checkpoint, save_training_checkpoint
from cirbench.train.data import BatchPlan, TripletDataset, collate, epoch_order, step_loader
from cirbench.losses import duplicate_target_mask, in_batch_contrastive, scaled_cosine
from cirbench.train.loop import TrainSettings, make_optimizer, train
from cirbench.train.recipe import Schedule
from cirbench.train.schedule import make_scheduler, warmup_factor


# ---- schedules ---------------------------------------------------------------------------------


def _naive_onecycle(step: int, total: int, pct_start: float, div_factor: float, final_div_factor: float = 1e4) -> float:
    """Leslie Smith's one cycle with cosine annealing, written out: the lr factor at ``step``."""
    def cosine(start, end, fraction):
        return end + (start - end) / 2 * (1 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))

    start, peak_step = 1 / div_factor, pct_start * total - 1
    if step <= peak_step:
        return cosine(start, 1.0, step / peak_step if peak_step > 0 else 1.0)
    return cosine(1.0, start / final_div_factor, (step - peak_step) / (total - 1 - peak_step))


def _lrs(schedule: Schedule, total: int, lr: float = 2e-5) -> list[float]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(optimizer, schedule, total)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("total, pct_start, div_factor", [(100, 0.05, 100.0), (37, 0.3, 25.0), (10, 0.15, 100.0),
                                                          (10, 0.1, 100.0), (1, 0.3, 25.0)])
def test_onecycle_is_torchs_and_matches_the_written_out_cycle(total, pct_start, div_factor):
    """(10, 0.1): a rise of exactly one step, where torch's OneCycleLR alone divides by zero."""
    schedule = Schedule("onecycle", pct_start=pct_start, div_factor=div_factor)
    lrs = _lrs(schedule, total)
    assert lrs == pytest.approx([2e-5 * _naive_onecycle(step, total, pct_start, div_factor) for step in range(total)],
                                rel=1e-9)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-5, betas=(0.9, 0.98))
    assert isinstance(make_scheduler(optimizer, schedule, total), torch.optim.lr_scheduler.OneCycleLR)
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.98)  # the momentum is left alone


def test_cosine_warms_up_then_decays_to_min_ratio():
    schedule = Schedule("cosine", warmup_steps=4, min_ratio=0.1)
    factors = [lr / 2e-5 for lr in _lrs(schedule, 20)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0], rel=1e-12)
    assert factors[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))
    assert warmup_factor(schedule, 20, 20) == pytest.approx(0.1)
    assert [lr / 2e-5 for lr in _lrs(Schedule("constant", warmup_steps=2), 5)] == pytest.approx([0.5, 1, 1, 1, 1])


def test_unknown_schedule_and_train_keys_are_refused():
    with pytest.raises(DataError, match="train.schedule.name: must be one of 'constant', 'cosine', 'onecycle'"):
        TrainSettings.from_dict({"stage": "x", "steps": 1, "schedule": {"name": "linear"}}, "r.yaml")
    with pytest.raises(DataError, match="train.learning_rate"):
        TrainSettings.from_dict({"stage": "x", "steps": 1, "learning_rate": 1.0}, "r.yaml")
    with pytest.raises(DataError, match="exactly one of epochs and steps"):
        TrainSettings.from_dict({"stage": "x", "steps": 1, "epochs": 2}, "r.yaml")


# ---- data --------------------------------------------------------------------------------------


def test_batch_plan_splits_each_global_batch_over_micro_steps_and_ranks():
    plans = [BatchPlan(50, 12, grad_accum=2, world_size=3, rank=r, seed=7) for r in range(3)]
    assert plans[0].steps_per_epoch == 4 and plans[0].micro_batch_size == 2
    for step in (0, 5):  # step 5 is in the second epoch
        epoch, position = divmod(step, 4)
        keys = [key for plan in plans for micro in plan.micro_batches(step) for key in micro]
        assert {e for e, _ in keys} == {epoch}
        expected = epoch_order(50, 7, epoch)[position * 12:(position + 1) * 12]
        assert sorted(i for _, i in keys) == sorted(expected)
    assert epoch_order(50, 7, 0) != epoch_order(50, 7, 1)
    with pytest.raises(ValueError, match="divide evenly"):
        BatchPlan(50, 10, grad_accum=3, world_size=1, rank=0, seed=0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        BatchPlan(5, 8, grad_accum=1, world_size=1, rank=0, seed=0)


def _triplets(folder, n, texts=("is red", "has long sleeves")):
    triplets = []
    for i in range(n):
        for name in (f"r{i}", f"t{i}"):
            path = folder / f"{name}.png"
            if not path.exists():
                shade = (37 * i + (0 if name[0] == "r" else 120)) % 256
                Image.new("RGB", (20, 28), (shade, 255 - shade, (7 * i) % 256)).save(path)
        triplets.append(TrainTriplet(folder / f"r{i}.png", folder / f"t{i}.png", texts, "dress",
                                     reference_id=f"r{i}", target_id=f"t{i}"))
    return triplets


def test_randomised_text_is_one_of_four_and_fixed_per_seed_epoch_index(tmp_path):
    dataset = TripletDataset(_triplets(tmp_path, 2), lambda image: torch.zeros(1), text="randomised", seed=3)
    seen = {dataset[(epoch, 0)].text for epoch in range(40)}
    assert seen == {"is red and has long sleeves", "has long sleeves and is red", "is red", "has long sleeves"}
    assert [dataset[(5, 1)].text for _ in range(3)] == [dataset[(5, 1)].text] * 3


def test_single_text_mode_needs_one_text_per_triplet(tmp_path):
    with pytest.raises(DataError, match="exactly one"):
        TripletDataset(_triplets(tmp_path, 1), lambda image: torch.zeros(1), text="single")
    one_text = _triplets(tmp_path, 2, texts=("make it blue",))
    dataset = TripletDataset(one_text, lambda image: torch.zeros(1), text="single")
    batch = collate([dataset[(0, 0)], dataset[(0, 1)]])
    assert batch.texts == ["make it blue", "make it blue"] and batch.target_ids == ["t0", "t1"]
    assert batch.target_captions is None


def test_a_broken_image_in_a_loader_worker_is_a_data_error_naming_the_file(tmp_path):
    triplets = _triplets(tmp_path, 4)
    (tmp_path / "t2.png").write_bytes(b"not a png")
    dataset = TripletDataset(triplets, lambda image: torch.zeros(1), text="randomised")
    plan = BatchPlan(n_triplets=4, batch_size=4, grad_accum=1, world_size=1, rank=0, seed=0)
    with pytest.raises(DataError) as caught:
        list(step_loader(dataset, plan, range(1), num_workers=1))
    assert caught.value.file == str(tmp_path / "t2.png") and caught.value.entry == "image"
    assert "cannot be read as an image" in caught.value.problem


def test_a_data_error_survives_pickling():
    error = pickle.loads(pickle.dumps(DataError("captions/cap.dress.val.json", "entry 3", "has no target")))
    assert (error.file, error.entry, error.problem) == ("captions/cap.dress.val.json", "entry 3", "has no target")


# ---- loss --------------------------------------------------------------------------------------


def test_in_batch_contrastive_masks_duplicate_targets():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    targets = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, 0.1]])
    mask = duplicate_target_mask(["a", "b", "a"], ["a", "b", "a"], offset=0)
    assert mask.tolist() == [[False, False, True], [False, False, False], [True, False, False]]
    loss = in_batch_contrastive(queries, targets, scaled_cosine(10.0), ["a", "b", "a"])
    logits = scaled_cosine(10.0)(queries, targets).masked_fill(mask, float("-inf"))
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.arange(3)).item())
    assert loss < in_batch_contrastive(queries, targets, scaled_cosine(10.0))


# ---- checkpoints and resume --------------------------------------------------------------------


class _TinyTrainable(torch.nn.Module):
    """A minimal TrainableCIRModel for the loop: a linear encoder with dropout."""

    stages = ("only",)
    tasks = ("cir",)

    def __init__(self, dropout: float = 0.3):
        super().__init__()
        from cirbench.interface import ModelMeta

        self.meta = ModelMeta("tiny_trainable", "test_tiny", "cosine", (8,), (8,), image_size=4)
        self.encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(dropout), torch.nn.Linear(48, 8))
        self.text = torch.nn.Embedding(64, 8)

    def preprocess(self, image):
        return torch.from_numpy(np.asarray(image.resize((4, 4)), dtype=np.float32) / 255).permute(2, 0, 1)

    def set_trainable(self, stage):
        self.requires_grad_(True)

    def training_losses(self, batch, tasks=("cir",)):
        # created on the device of the parameters that use them, wherever the loop put the model
        words = torch.tensor([sum(map(ord, text)) % 64 for text in batch.texts], device=self.text.weight.device)
        query = self.encoder(batch.ref_images) + self.text(words)
        targets = self.encoder(batch.target_images)
        return {"cir": in_batch_contrastive(query, targets, scaled_cosine(5.0), batch.target_ids)}

    def save_pretrained(self, directory):
        from cirbench.model_folder import write_model_folder

        write_model_folder(self, directory)


def _settings(**changes):
    values = {"stage": "only", "steps": 6, "batch_size": 8, "grad_accum": 2, "lr": 0.05, "checkpoint_every": 2,
              "schedule": {"name": "cosine", "warmup_steps": 2}}
    return TrainSettings.from_dict({**values, **changes})


def _fresh_model(dropout: float = 0.3):
    torch.manual_seed(0)
    return _TinyTrainable(dropout)


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("schedule, without_scheduler_state", [
    ({"name": "cosine", "warmup_steps": 2}, False),
    ({"name": "onecycle", "pct_start": 0.4, "div_factor": 10.0}, False),
    ({"name": "onecycle", "pct_start": 0.4, "div_factor": 10.0}, True),  # a checkpoint from before it was stored
])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, schedule, without_scheduler_state):
    dataset = TripletDataset(_triplets(tmp_path, 20), _fresh_model().preprocess, text="randomised", seed=1)
    straight = _fresh_model()
    train(straight, dataset, _settings(schedule=schedule), tmp_path / "straight", progress=False)

    def interrupt_after_step_3(step, losses):
        if step == 3:
            raise _Interrupt

    interrupted = _fresh_model()
    with pytest.raises(_Interrupt):
        train(interrupted, dataset, _settings(schedule=schedule), tmp_path / "resumed", on_step=interrupt_after_step_3,
              progress=False)
    assert latest_checkpoint(tmp_path / "resumed").name == "step-00000002"
    if without_scheduler_state:
        trainer_file = latest_checkpoint(tmp_path / "resumed") / "trainer.json"
        trainer_file.write_text(json.dumps({k: v for k, v in json.loads(trainer_file.read_text()).items() if k != "scheduler"}))
    resumed = _fresh_model()
    result = train(resumed, dataset, _settings(schedule=schedule), tmp_path / "resumed", resume=True, progress=False)

    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    assert not torch.equal(straight.state_dict()["encoder.2.weight"], _fresh_model().state_dict()["encoder.2.weight"])
    assert (result.final_dir / "model.safetensors").is_file()
    assert json.loads((result.final_dir / "config.json").read_text())["config_hash"]
    trainer = json.loads((tmp_path / "resumed" / "checkpoints" / "step-00000006" / "trainer.json").read_text())
    assert trainer["step"] == 6 and isinstance(trainer["rng"]["python"], list)


def test_a_finished_run_is_not_overwritten_and_resume_checks_the_recipe(tmp_path):
    dataset = TripletDataset(_triplets(tmp_path, 16), _fresh_model().preprocess, seed=0)
    train(_fresh_model(), dataset, _settings(steps=2), tmp_path / "run", progress=False)
    with pytest.raises(DataError, match="pass --resume"):
        train(_fresh_model(), dataset, _settings(steps=2), tmp_path / "run", progress=False)
    with pytest.raises(DataError, match="differs in: train.lr"):
        train(_fresh_model(), dataset, _settings(steps=2, lr=0.1), tmp_path / "run", resume=True, progress=False)
    with pytest.raises(DataError, match="no checkpoint"):
        train(_fresh_model(), dataset, _settings(steps=2), tmp_path / "empty", resume=True, progress=False)


def test_optimizer_state_round_trips_through_safetensors(tmp_path):
    model = _fresh_model()
    optimizer = make_optimizer(model, _settings())
    for _ in range(2):
        model.encoder[2].weight.sum().backward()
        optimizer.step()
    save_training_checkpoint(tmp_path, model, optimizer, {"step": 2}, keep=1)
    restored_model = _fresh_model()
    restored = make_optimizer(restored_model, _settings())
    trainer = load_training_checkpoint(latest_checkpoint(tmp_path), restored_model, restored)
    assert trainer["step"] == 2
    for before, after in zip(optimizer.state_dict()["state"].values(), restored.state_dict()["state"].values()):
        assert before.keys() == after.keys()
        assert all(torch.equal(before[key], after[key]) for key in before)
    assert not list(tmp_path.glob("checkpoints/*.tmp"))


def test_weight_decay_spares_biases():
    model = _fresh_model()
    decayed, plain = make_optimizer(model, _settings(weight_decay=0.1)).param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.ndim >= 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.ndim == 1 for p in plain["params"])


_DDP_SCRIPT = """
import sys, torch
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_train_loop import TripletDataset, _fresh_model, _settings, _triplets, train
from cirbench import distributed
folder = Path(sys.argv[2])
model = _fresh_model(dropout=0.0)
dataset = TripletDataset(_triplets(folder, 16), model.preprocess, seed=1)
train(model, dataset, _settings(steps=3, grad_accum=1), folder / "ddp", progress=False)
distributed.teardown()
"""


def test_two_ranks_with_gathered_negatives_train_like_one_process(tmp_path):
    """torchrun with 2 CPU ranks (gloo), 4 triplets each, in-batch negatives gathered across ranks,
    gradients averaged by DDP: the same update as one process on the 8 triplets."""
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    single = _fresh_model(dropout=0.0)
    dataset = TripletDataset(_triplets(tmp_path, 16), single.preprocess, seed=1)
    train(single, dataset, _settings(steps=3, grad_accum=1), tmp_path / "single", progress=False)
    script = tmp_path / "ddp_train.py"
    script.write_text(_DDP_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(script), str(Path(__file__).parent), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    ddp = load_file(tmp_path / "ddp" / "final" / "model.safetensors")
    for name, tensor in single.state_dict().items():
        assert torch.allclose(tensor, ddp[name], atol=1e-6), name
