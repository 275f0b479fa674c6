"""The one evaluator: any CIRModel on any list of EvalSplit under an EvalProtocol -> target ranks.

Per split it encodes the gallery once with ``encode_candidates`` (cached on disk per model spec,
checkpoint hash and the ordered gallery's image files, see ``retrieval.gallery_key``),
encodes every query with ``encode_query`` (reference image + the protocol's query text), and ranks
each query's target with the model's ``similarity``, in query chunks (``retrieval.GalleryScores``:
a model whose similarity is its scorer's gets its gallery prepared once; tie rule in
``cirbench.eval.retrieval``: ties count against the target). It keeps the rank of every query:
metrics, intervals and paired tests are computed from these arrays afterwards.

It talks to the model only through the interface (``preprocess``, ``encode_query``,
``encode_candidates``, ``similarity``, ``checkpoint_hash``, ``meta``). The caller places the model on ``device``;
the evaluator puts its inputs there and, for a torch module, switches it to eval mode for the run
(restoring the previous mode afterwards).

Precision: ``bf16`` encodes under bf16 autocast on the device (CUDA, or CPU where it is slow but
works); embeddings are ranked in fp32 either way. A model built only to be evaluated can also hold
its big frozen towers in bf16 (``hold_in_bf16``; the eval commands do), which saves the casts of
fp32 weights that autocast would repeat at every batch.

Throughput: images are decoded by ``num_workers`` loader processes into pinned memory on CUDA and
copied without blocking; embeddings stay on the device until a split is encoded, and their check
for NaN runs once per split, so nothing waits on the GPU between batches.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from cirbench.errors import DataError
from cirbench.data.schema import EvalSplit
from cirbench.eval.protocols import EvalProtocol
from cirbench.eval.retrieval import FeatureCache, GalleryScores, gallery_key, rank_targets
from cirbench.progress import progress_bar

if TYPE_CHECKING:
    import numpy as np
    import torch
    from rich.progress import Progress

    from cirbench.interface import CIRModel


PRECISIONS = ("fp32", "bf16")


@dataclass
class SplitRanks:
    """The target rank of every evaluated query of one split (0-based, int64)."""

    dataset: str
    category: str
    split: str
    query_ids: list[str]
    ranks: "np.ndarray"
    n_gallery: int
    n_queries_total: int  # in the annotation file, before queries with missing images were dropped

    @property
    def n_queries(self) -> int:
        return len(self.query_ids)


@dataclass
class EvalResult:
    model: str  # spec "name:variant"
    checkpoint_hash: str
    protocol: str  # protocol id, e.g. "fashioniq/v1"
    device: str
    splits: list[SplitRanks]
    precision: str = "fp32"  # "bf16": encoded under bf16 autocast


@dataclass
class _Run:
    """What every split of one evaluate() call shares."""

    model: "CIRModel"
    checkpoint_hash: str  # asked once: hashing weights may be slow
    protocol: EvalProtocol
    cache: FeatureCache | None
    batch_size: int
    chunk_size: int
    device: str
    num_workers: int
    progress: "Progress"
    precision: str


def evaluate(
    model: "CIRModel",
    splits: Sequence[EvalSplit],
    protocol: EvalProtocol,
    *,
    batch_size: int = 64,
    chunk_size: int = 1024,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    num_workers: int = 0,
    progress: bool = True,
    precision: str = "fp32",
) -> EvalResult:
    """Rank every query's target in its split's gallery with the model's ``similarity``.

    Args:
        model: any ``CIRModel`` (placed on ``device`` by the caller).
        splits: the evaluation splits (one per category), from a ``DATASETS`` reader.
        protocol: how captions become query texts and whether the reference is removed.
        batch_size: images per encoder batch.
        chunk_size: queries scored at once (fewer when the gallery is wide, see ``retrieval``).
        cache_dir: the gallery feature cache folder; None: no cache.
        device: where the inputs go.
        num_workers: image-decoding processes (0: in this process).
        progress: show progress bars.
        precision: "fp32", or "bf16" for bf16 autocast while encoding (see the module docstring).

    Returns the rank of every query's target per split, with the model spec, checkpoint hash,
    protocol, device and precision. Bad data (a target missing from the gallery, a duplicate
    gallery id, a missing image) stops with a ``DataError`` before anything is encoded.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    columns = [_gallery_columns(split) for split in splits]  # bad data stops before any encoding
    targets = [_target_columns(split, cols) for split, cols in zip(splits, columns)]
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    checkpoint = model.checkpoint_hash()
    with eval_mode(model), progress_bar(progress) as bar:
        run = _Run(model, checkpoint, protocol, cache, batch_size, chunk_size, str(device), num_workers, bar, precision)
        ranked = [_evaluate_split(run, *planned) for planned in zip(splits, columns, targets)]
    return EvalResult(model.meta.spec, checkpoint, protocol.id, str(device), ranked, precision)


def _evaluate_split(run: _Run, split: EvalSplit, columns: dict[str, int], targets: "torch.Tensor") -> SplitRanks:
    import numpy as np

    if split.queries:
        candidates = _gallery_features(run, split).to(run.device)
        queries = _query_features(run, split).to(run.device)
        excluded = _reference_columns(split, columns) if run.protocol.remove_reference else None
        gallery = GalleryScores.of_model(run.model, candidates)
        ranks = rank_targets(gallery, queries, targets, excluded, chunk_size=run.chunk_size)
    else:
        ranks = np.zeros(0, dtype=np.int64)
    query_ids = [q.query_id for q in split.queries]
    return SplitRanks(split.dataset, split.category, split.split, query_ids, ranks, len(split.gallery), split.n_queries_total)


def _gallery_columns(split: EvalSplit) -> dict[str, int]:
    columns: dict[str, int] = {}
    for column, image_id in enumerate(split.gallery):
        if image_id in columns:
            raise DataError(split.source, image_id, f"gallery of {split.category}/{split.split} lists this image twice")
        columns[image_id] = column
    return columns


def _target_columns(split: EvalSplit, columns: dict[str, int]) -> "torch.Tensor":
    import torch

    targets = []
    for query in split.queries:
        if query.target_id is None:
            raise DataError(split.source, query.query_id, "query has no target (a test split cannot be evaluated)")
        if query.target_id not in columns:
            raise DataError(split.source, query.query_id, f"target {query.target_id!r} is not in the gallery")
        targets.append(columns[query.target_id])
    return torch.tensor(targets, dtype=torch.long)


def _reference_columns(split: EvalSplit, columns: dict[str, int]) -> "torch.Tensor":
    """Gallery column of each query's reference image, -1 where it is not in the gallery."""
    import torch

    return torch.tensor([columns.get(q.reference_id, -1) for q in split.queries], dtype=torch.long)


def _gallery_features(run: _Run, split: EvalSplit) -> "torch.Tensor":
    """The gallery's candidate embeddings, from the cache when this gallery was encoded before."""
    model = run.model
    paths = _image_paths(split, split.gallery)
    key = gallery_key(model.meta.spec, run.checkpoint_hash, split.gallery, split.image_paths, run.precision)
    cached = run.cache.load(key, len(split.gallery)) if run.cache else None
    if cached is not None:
        return cached
    features = _encode(run, f"{split.category}: gallery", paths, model.encode_candidates, model.meta.candidate_shape)
    if run.cache:
        metadata = {"model": model.meta.spec, "checkpoint_hash": run.checkpoint_hash, "dataset": split.dataset,
                    "category": split.category, "split": split.split, "n_gallery": str(len(split.gallery)),
                    "precision": run.precision}
        run.cache.save(key, features, metadata)
    return features


def _query_features(run: _Run, split: EvalSplit) -> "torch.Tensor":
    texts = [run.protocol.query_text(q.captions) for q in split.queries]
    paths = _image_paths(split, [q.reference_id for q in split.queries])

    def encode(images: "torch.Tensor", start: int) -> "torch.Tensor":
        return run.model.encode_query(images, texts[start : start + len(images)])

    return _encode(run, f"{split.category}: queries", paths, encode, run.model.meta.query_shape, with_offset=True)


def _image_paths(split: EvalSplit, image_ids: Sequence[str]) -> list[Path]:
    missing = [i for i in image_ids if i not in split.image_paths]
    if missing:
        raise DataError(split.source, missing[0], f"no image file for {len(missing)} image(s) of {split.category}/{split.split}")
    return [split.image_paths[i] for i in image_ids]


def _encode(
    run: _Run, label: str, paths: list[Path], encode: Callable, expected_shape: tuple[int, ...], with_offset: bool = False
) -> "torch.Tensor":
    """Load images in batches with the model's preprocess, encode, check shapes; fp32 on the device."""
    import torch

    task = run.progress.add_task(label, total=len(paths))
    device = torch.device(run.device)
    outputs, start = [], 0
    for images in _image_batches(paths, run):
        images = images.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.precision == "bf16"):
            out = encode(images, start) if with_offset else encode(images)
        if tuple(out.shape) != (len(images), *expected_shape):
            raise ValueError(
                f"{run.model.meta.spec}: {label} embeddings have shape {tuple(out.shape)}, "
                f"expected {(len(images), *expected_shape)} from the model's meta"
            )
        outputs.append(out.float())
        start += len(images)
        run.progress.advance(task, len(images))
    features = torch.cat(outputs) if outputs else torch.zeros(0, *expected_shape, device=device)
    if not torch.isfinite(features).all():  # once per split: a check per batch would wait on the GPU
        raise ValueError(f"{run.model.meta.spec}: {label} embeddings hold NaN or infinite values")
    return features


@dataclass(frozen=True)
class _Unreadable:
    """An image that failed to load, passed back from a loader worker as data: an exception
    raised inside a worker would reach the user as a traceback, not as one DataError."""

    path: Path
    problem: str


class _ImageFiles:
    """Map-style dataset: index -> preprocessed RGB image (a DataLoader batches it)."""

    def __init__(self, paths: list[Path], preprocess: Callable):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> "torch.Tensor | _Unreadable":
        from cirbench.data.images import open_rgb

        path = self.paths[index]
        try:
            return self.preprocess(open_rgb(path))
        except DataError as exc:
            return _Unreadable(path, exc.problem or str(exc))


def _stack_images(items: list) -> "torch.Tensor | _Unreadable":
    import torch

    failed = [item for item in items if isinstance(item, _Unreadable)]
    return failed[0] if failed else torch.stack(items)


def _image_batches(paths: list[Path], run: _Run) -> Iterator["torch.Tensor"]:
    from torch.utils.data import DataLoader

    files = _ImageFiles(paths, run.model.preprocess)
    loader = DataLoader(files, batch_size=run.batch_size, num_workers=run.num_workers, collate_fn=_stack_images,
                        pin_memory=run.device.startswith("cuda"),
                        prefetch_factor=4 if run.num_workers else None)
    for batch in loader:
        if isinstance(batch, _Unreadable):
            raise DataError(batch.path, batch.path.stem, batch.problem)
        yield batch


@contextmanager
def eval_mode(model: "CIRModel") -> Iterator[None]:
    """Eval mode and no autograd for a torch module, restoring its training flag afterwards."""
    import torch

    is_module = isinstance(model, torch.nn.Module)
    was_training = is_module and model.training
    if is_module:
        model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_training:
            model.train()


def hold_in_bf16(model: "CIRModel") -> bool:
    """For a model built only to be evaluated at bf16: let it hold its big frozen towers in bf16
    (``model.hold_in_bf16()``, e.g. BLIP-2's ViT), so autocast has no fp32 weights to cast at every
    batch. Irreversible: never on a model still being trained. Returns whether the model has it."""
    if not hasattr(model, "hold_in_bf16"):
        return False
    model.hold_in_bf16()
    return True


def default_num_workers(device: str) -> int:
    """Image-decoding processes for ``device``: none on CPU (the model needs the cores), up to 8 on CUDA."""
    import os

    if not str(device).startswith("cuda"):
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))
