"""The stages shared by build-facap and build-enhfiq: embed -> pair -> caption -> modification text.

Every stage keeps its results in a store under ``<out>/work/`` and skips what is already there,
so a killed run restarted with the same command continues where it stopped. Failed annotations
are stored as failures and retried by the next run. Final files are written from the stores in
sorted order, which makes them identical whether or not the run was interrupted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cirbench.errors import DataError
from cirbench.facap.backends import CaptionRequest, Captioner, Failure, ModificationRequest, Modifier, Result
from cirbench.facap.embedding import Embedder
from cirbench.facap.pairing import TOP_K, group_indices, pair_group
from cirbench.progress import stage_progress
from cirbench.facap.sources import ImageRecord
from cirbench.facap.store import JsonlStore, load_array, save_array
from cirbench.files import write_json_atomic

STORE_CHUNK = 128  # annotations per store append (what a kill can cost at most)


@dataclass
class PipelineSettings:
    seed: int = 0
    top_k: int = TOP_K
    embed_batch: int = 256
    progress: bool = True


@dataclass
class PipelineResult:
    records: dict[str, ImageRecord]
    pairs: dict[str, dict]  # reference id -> {"target", "rank", "score"}
    captions: dict[str, str]  # image id -> caption (successes only)
    modifications: dict[str, str]  # reference id -> modification text (successes only)
    failures: dict[str, int] = field(default_factory=dict)  # stage -> items still failed or blocked

    def triplets(self) -> list[tuple[ImageRecord, ImageRecord, str]]:
        """(reference, target, modification text) of every finished pair, by reference id."""
        done = []
        for key in sorted(self.modifications):
            done.append((self.records[key], self.records[self.pairs[key]["target"]], self.modifications[key]))
        return done


def run_pipeline(
    records: Sequence[ImageRecord],
    work: Path,
    embedder: Embedder,
    captioner: Captioner,
    modifier: Modifier,
    settings: PipelineSettings,
    identity: dict,
) -> PipelineResult:
    """Run (or resume) the four stages over ``records``; ``identity`` describes the inputs and
    settings and must match the one a previous run in ``work`` recorded."""
    records = sorted(records, key=lambda r: r.image_id)
    by_id = {r.image_id: r for r in records}
    if len(by_id) != len(records):
        raise DataError(work, "image ids", "two images share an id (the same source given twice?)")
    check_work_identity(work, {**identity, "image_ids_sha256": _ids_hash(by_id), "embedder": embedder.name,
                               "captioner": captioner.description, "modifier": modifier.description,
                               "seed": settings.seed, "top_k": settings.top_k, "embed_batch": settings.embed_batch})
    vectors = embed_stage(records, embedder, work / "embeddings", settings)
    pairs = pair_stage(records, vectors, JsonlStore(work / "pairs.jsonl"), settings)
    paired = {k: p for k, p in pairs.items() if p["target"] is not None}
    needed = sorted(set(paired) | {p["target"] for p in paired.values()})
    captions = caption_stage([by_id[k] for k in needed], captioner, JsonlStore(work / "captions.jsonl"), settings)
    modifications = modification_stage(by_id, paired, captions, modifier, JsonlStore(work / "modifications.jsonl"), settings)
    failures = {"captions": len(needed) - len(captions), "modifications": len(paired) - len(modifications)}
    return PipelineResult(by_id, paired, captions, modifications, failures)


def caption_stage(images: list[ImageRecord], captioner: Captioner, store: JsonlStore, settings: PipelineSettings) -> dict[str, str]:
    """image id -> caption, for the images that have one (failures stay in the store)."""
    requests = [CaptionRequest(r.image_id, r.path, r.category, r.description, dict(r.attributes)) for r in images]
    stored = annotate_stage(store, requests, captioner.caption, "captions", settings.progress)
    return {r.image_id: stored[r.image_id]["text"] for r in images if "text" in stored.get(r.image_id, {})}


def modification_stage(
    by_id: dict[str, ImageRecord], paired: dict[str, dict], captions: dict[str, str], modifier: Modifier,
    store: JsonlStore, settings: PipelineSettings,
) -> dict[str, str]:
    """reference id -> modification text, for the pairs whose two captions exist."""
    ready = [k for k in sorted(paired) if k in captions and paired[k]["target"] in captions]
    requests = [ModificationRequest(k, by_id[k].category, captions[k], captions[paired[k]["target"]]) for k in ready]
    stored = annotate_stage(store, requests, modifier.modify, "modification texts", settings.progress)
    return {k: stored[k]["text"] for k in ready if "text" in stored.get(k, {})}


def check_work_identity(work: Path, identity: dict) -> None:
    """A work folder belongs to one set of inputs and settings: resuming with others would mix them."""
    path = work / "build.json"
    identity = json.loads(json.dumps(identity, sort_keys=True, default=str))
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in identity.keys() | previous.keys() if identity.get(k) != previous.get(k))
        if changed:
            raise DataError(path, ", ".join(changed), f"differs from this command's; resume with the same command, or use a new --out (or delete {work})")
        return
    write_json_atomic(path, identity, sort_keys=True)


def _ids_hash(by_id: dict[str, ImageRecord]) -> str:
    return hashlib.sha256("\n".join(by_id).encode("utf-8")).hexdigest()


def embed_stage(records: Sequence[ImageRecord], embedder: Embedder, directory: Path, settings: PipelineSettings) -> np.ndarray:
    """Embed fixed chunks of ``embed_batch`` images, one stored array per chunk."""
    size = settings.embed_batch
    vectors: np.ndarray | None = None
    with stage_progress("embedding images", len(records), settings.progress) as advance:
        for number, start in enumerate(range(0, len(records), size)):
            chunk = records[start : start + size]
            part = _embedded_chunk(directory / f"{number:06d}.npy", chunk, embedder)
            if vectors is None:
                vectors = np.empty((len(records), part.shape[1]), dtype=np.float32)
            vectors[start : start + len(chunk)] = part
            advance(len(chunk))
    return vectors if vectors is not None else np.empty((0, 0), dtype=np.float32)


def _embedded_chunk(path: Path, chunk: Sequence[ImageRecord], embedder: Embedder) -> np.ndarray:
    if path.is_file():
        return load_array(path)
    part = np.asarray(embedder([r.path for r in chunk]), dtype=np.float32)
    if part.ndim != 2 or len(part) != len(chunk) or not np.all(np.isfinite(part)):
        raise ValueError(f"embedder {embedder.name} returned {part.shape} for {len(chunk)} images (or non-finite values)")
    save_array(path, part)
    return part


def pair_stage(records: Sequence[ImageRecord], vectors: np.ndarray, store: JsonlStore, settings: PipelineSettings) -> dict[str, dict]:
    done = store.load()
    groups = group_indices([(r.source, r.category) for r in records])
    with stage_progress("pairing (top-k search)", len(records), settings.progress) as advance:
        advance(len(done))
        for members in groups.values():
            ids = [records[i].image_id for i in members]
            queries = np.asarray([q for q, image_id in enumerate(ids) if image_id not in done], dtype=np.int64)
            if len(queries):
                products = [records[i].product_id for i in members]
                new = pair_group(ids, vectors[members], products, settings.seed, queries, settings.top_k, advance=advance)
                store.append(new)
                done.update((r["key"], r) for r in new)
    return done


def annotate_stage(
    store: JsonlStore, requests: list, run: Callable[[list], list[Result]], what: str, progress: bool
) -> dict[str, dict]:
    """Annotate every request not yet done (missing, or failed before); one store append per chunk."""
    done = store.load()
    pending = [r for r in requests if "text" not in done.get(r.key, {})]
    with stage_progress(what, len(requests), progress) as advance:
        advance(len(requests) - len(pending))
        for start in range(0, len(pending), STORE_CHUNK):
            batch = pending[start : start + STORE_CHUNK]
            results = run(batch)
            if len(results) != len(batch):
                raise ValueError(f"{what} backend returned {len(results)} results for {len(batch)} requests")
            store.append(_store_record(r.key, result) for r, result in zip(batch, results))
            advance(len(batch))
    return store.load()


def _store_record(key: str, result: Result) -> dict:
    if isinstance(result, Failure):
        return {"key": key, "error": result.error, "attempts": result.attempts}
    if not result.strip():
        return {"key": key, "error": "empty text", "attempts": 1}
    return {"key": key, "text": result}

