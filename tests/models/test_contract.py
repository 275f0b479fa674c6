"""The contract every registered model keeps, on its ``test_tiny`` variant, on CPU: it builds,
encodes to its declared shapes, scores finite [B, N] matrices, trains one step of every stage and
task without NaN through the real training step, saves a folder in the one format, reloads with
identical scores, and the evaluator ranks with its ``similarity``.

A registered model that cannot build fails here: the registry is the list of what must work.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from cirbench.eval.evaluator import evaluate
from cirbench.eval.protocols import FASHIONIQ_V1
from cirbench.baselines.zoo import build_model, list_model_specs, model_options_class
from cirbench.interface import TrainableCIRModel
from cirbench.model_folder import FORMAT, state_dict_sha256
from cirbench.train.bench_throughput import synthetic_batch
from cirbench.train.loop import Stepper, TrainSettings, make_optimizer, prepare_model
from fake_cir import make_split, naive_ranks

MODEL_NAMES = sorted({name for name, _, _ in list_model_specs()})
TEXTS = ["is red with long sleeves", "is darker and shorter", "has stripes", "has a round neckline"]


def _images(model, n: int) -> torch.Tensor:
    pictures = [Image.new("RGB", (24 + 8 * i, 48), ((50 * i) % 256, 120, (200 - 30 * i) % 256)) for i in range(n)]
    return torch.stack([model.preprocess(picture) for picture in pictures])


def _scores(model, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.similarity(model.encode_query(images[:4], TEXTS), model.encode_candidates(images))


def test_every_model_has_a_test_tiny_variant():
    variants = {(name, variant) for name, variant, _ in list_model_specs()}
    assert all((name, "test_tiny") in variants for name in MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_contract(name, tmp_path):
    model = build_model(f"{name}:test_tiny").eval()
    assert model.meta.spec == f"{name}:test_tiny"
    images = _images(model, 6)
    assert images.shape == (6, 3, model.meta.image_size, model.meta.image_size)

    with torch.no_grad():
        queries = model.encode_query(images[:4], TEXTS)
        candidates = model.encode_candidates(images)
    assert queries.shape == (4, *model.meta.query_shape)
    assert candidates.shape == (6, *model.meta.candidate_shape)
    scores = _scores(model, images)
    assert scores.shape == (4, 6) and torch.isfinite(scores).all()

    if model.stages:
        assert isinstance(model, TrainableCIRModel)
        for stage in model.stages:
            for tasks in [(task,) for task in model.tasks]:
                _train_one_step(model, stage, tasks)
        model.eval()
        scores = _scores(model, images)

    model.save_pretrained(tmp_path / "saved")
    _check_model_folder(tmp_path / "saved", model)
    reloaded = build_model(f"{name}:test_tiny", checkpoint=tmp_path / "saved").eval()
    assert torch.equal(_scores(reloaded, images), scores)
    assert reloaded.checkpoint_hash() == model.checkpoint_hash() == state_dict_sha256(model)


def _check_model_folder(folder, model) -> None:
    """The one model-folder format: every model writes the same config.json, its options as its
    registered options dataclass, and the weights whose hash is the one hash."""
    config = json.loads((folder / "config.json").read_text())
    assert set(config) == {"format", "name", "variant", "options", "trained_on"} and config["format"] == FORMAT
    assert (config["name"], config["variant"]) == (model.meta.name, model.meta.variant)
    options_cls = model_options_class(model.meta.name)
    assert set(config["options"]) == {f.name for f in dataclasses.fields(options_cls)}
    weights = load_file(str(folder / "model.safetensors"))
    assert set(weights) <= set(model.state_dict()) and weights


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_evaluator_ranks_with_the_models_similarity(name, tmp_path):
    """The scoring contract: the evaluator's ranks are those of ``model.similarity`` on the same
    embeddings (a full [Q, N] matrix, fully sorted), scored in chunks, with exact ties. (One
    encoder batch each: the embeddings are then the reference's bit for bit.)"""
    model = build_model(f"{name}:test_tiny").eval()
    split = make_split(tmp_path, n_gallery=12, n_queries=9, duplicates=3)
    result = evaluate(model, [split], FASHIONIQ_V1, batch_size=64, chunk_size=4, progress=False)
    np.testing.assert_array_equal(result.splits[0].ranks, _similarity_ranks(model, split))


class _Reversed:
    """A model whose own ``similarity`` reverses its scorer's: it must be scored with that."""

    def __init__(self, model):
        self.model, self.meta = model, model.meta

    def __getattr__(self, name):
        return getattr(self.model, name)

    def similarity(self, q, c):
        return -self.model.similarity(q, c)


def test_a_model_that_overrides_similarity_is_scored_with_it(tmp_path):
    model = build_model("fashionblip2:test_tiny").eval()
    split = make_split(tmp_path, n_gallery=12, n_queries=9, duplicates=3)
    plain = evaluate(model, [split], FASHIONIQ_V1, chunk_size=4, progress=False).splits[0].ranks
    reversed_model = _Reversed(model)
    reversed_ranks = evaluate(reversed_model, [split], FASHIONIQ_V1, chunk_size=4, progress=False).splits[0].ranks
    np.testing.assert_array_equal(reversed_ranks, _similarity_ranks(reversed_model, split))
    assert not np.array_equal(plain, reversed_ranks)


def _similarity_ranks(model, split) -> np.ndarray:
    with torch.no_grad():
        def load(ids):
            return torch.stack([model.preprocess(Image.open(split.image_paths[i]).convert("RGB")) for i in ids])

        texts = [FASHIONIQ_V1.query_text(q.captions) for q in split.queries]
        queries = model.encode_query(load([q.reference_id for q in split.queries]), texts)
        scores = model.similarity(queries, model.encode_candidates(load(split.gallery))).numpy()
    return naive_ranks(scores, [split.gallery.index(q.target_id) for q in split.queries])


def _train_one_step(model, stage: str, tasks: tuple[str, ...]) -> None:
    settings = TrainSettings(stage=stage, tasks=tasks, steps=1, batch_size=4, lr=1e-3)
    prepare_model(model, settings, torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert before, f"stage {stage} trains nothing"
    stepper = Stepper(model, make_optimizer(model, settings), settings, total_steps=1, device=torch.device("cpu"))
    model.train()
    losses = stepper.step(0, [synthetic_batch(model, 4)])
    assert set(losses) and all(torch.isfinite(torch.tensor(v)) for v in losses.values()), (stage, tasks, losses)
    after = dict(model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before), f"{stage}/{tasks} changed no weight"
    assert all(torch.isfinite(after[n]).all() for n in before)


TRAINABLE_NAMES = [name for name in MODEL_NAMES if build_model(f"{name}:test_tiny").stages]


@pytest.mark.parametrize("name", TRAINABLE_NAMES)
def test_gradient_checkpointing_gives_the_same_gradients(name):
    """The interface's ``set_grad_checkpointing``: same loss and gradients, activations recomputed."""
    model = build_model(f"{name}:test_tiny")
    settings = TrainSettings(stage=model.stages[0], tasks=("cir",), steps=1, batch_size=4)
    prepare_model(model, settings, torch.device("cpu"))
    model.train()  # transformers checkpoints only in training mode
    batch = synthetic_batch(model, 4)

    def loss_and_grads():
        torch.manual_seed(0)  # the same dropout masks in both passes (recomputation restores the RNG)
        model.zero_grad(set_to_none=True)
        loss = sum(model.training_losses(batch, ("cir",)).values())
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain_loss, plain_grads = loss_and_grads()
    model.set_grad_checkpointing(True)
    checkpointed_loss, checkpointed_grads = loss_and_grads()
    assert torch.allclose(plain_loss, checkpointed_loss, atol=1e-6)
    assert plain_grads.keys() == checkpointed_grads.keys() and plain_grads
    for n, grad in plain_grads.items():
        assert torch.allclose(grad, checkpointed_grads[n], atol=1e-5), n
