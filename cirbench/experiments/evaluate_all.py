"""``cirbench eval --all``: every model with a checkpoint (or zero-shot) x every benchmark found.

A model that fails gets an error row (kept in ``errors.jsonl`` and printed), never a silent gap;
an entry whose (label, checkpoint, dataset, protocol) already has records in the run folder is
reused, and the gallery feature cache makes re-encoding rare.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cirbench.errors import DataError
from cirbench.files import check_writable_folder
from cirbench.results import ERRORS_FILE, append_jsonl


@dataclass(frozen=True)
class ModelEntry:
    label: str  # the table row, e.g. "FashionBLIP-2 (FACap -> FIQ)"
    spec: str  # "name:variant"
    checkpoint: Path | None = None  # a folder written by save_pretrained; None: zero-shot
    problem: str | None = None  # why the folder cannot be read: the entry becomes an error row


@dataclass(frozen=True)
class BenchmarkEntry:
    dataset: str  # registry name, e.g. "fashioniq"
    root: Path
    split: str = "val"
    categories: tuple[str, ...] | None = None  # None: every category of the split
    missing: str = "error"  # queries whose images are missing: "error" or "skip"

    def load(self) -> list:
        """The benchmark's evaluation splits (``DATASETS`` reader)."""
        from cirbench.data.benchmarks import DATASETS

        categories = list(self.categories) if self.categories is not None else None
        return DATASETS.get(self.dataset)(self.root, split=self.split, categories=categories, missing=self.missing)


def find_benchmarks(data_root: Path, *, split: str = "val", categories: tuple[str, ...] | None = None,
                    missing: str = "error") -> list[BenchmarkEntry]:
    """Every registered benchmark whose folder (its registry ``subdir``) exists under ``data_root``.

    Args:
        data_root: the folder holding one subfolder per benchmark.
        split: the split evaluated on each.
        categories: the categories evaluated (None: all).
        missing: queries whose images are missing: "error" or "skip".
    """
    from cirbench.data.benchmarks import DATASETS

    found = []
    for entry in DATASETS.entries():
        folder = Path(data_root) / entry.metadata.get("subdir", entry.name)
        if (folder / "captions").is_dir():
            found.append(BenchmarkEntry(entry.name, folder, split, categories, missing))
    return found


def trained_models(runs_root: Path) -> list[ModelEntry]:
    """Every trained model folder (``*/final/config.json``) under ``runs_root``."""
    from cirbench.model_folder import folder_spec

    entries = []
    for config in sorted(Path(runs_root).glob("**/final/config.json")):
        try:
            spec, problem = folder_spec(config.parent), None
        except DataError as exc:  # one unreadable folder must not hide the others: an error row
            spec, problem = _claimed_spec(config), str(exc)
        entries.append(ModelEntry(f"{spec} ({config.parent.parent.name})", spec, config.parent, problem))
    return entries


def _claimed_spec(config: Path) -> str:
    """The ``name:variant`` an unreadable model folder's config.json claims, for its error row."""
    try:
        claimed = json.loads(config.read_text(encoding="utf-8"))
        return f"{claimed.get('name') or claimed.get('model') or '?'}:{claimed.get('variant') or '?'}"
    except (OSError, ValueError, AttributeError):
        return "?:?"


@dataclass
class ModelOutcome:
    """One model's evaluations, not yet written: what ``evaluate_model`` returns (also from another process)."""

    entry: ModelEntry
    runs: list[tuple[list[dict], list[dict]]] = field(default_factory=list)  # (records, ranks) per benchmark
    messages: list[str] = field(default_factory=list)  # one line per benchmark: evaluated / reused / FAILED
    errors: list[dict] = field(default_factory=list)
    done: set[tuple] = field(default_factory=set)  # the evaluation keys it added


def evaluate_all(
    models: list[ModelEntry],
    benchmarks: list[BenchmarkEntry],
    out: Path,
    *,
    protocol_id: str = "fashioniq/v1",
    cache_dir: Path | None = None,
    device: str = "cpu",
    seed: int = 0,
    batch_size: int = 128,
    chunk_size: int = 1024,
    progress: bool = True,
    log: Callable[[str], None] = print,
    precision: str = "fp32",
    num_workers: int = 0,
) -> list[dict]:
    """Evaluate each model on each benchmark into ``out``; returns the error rows.

    Args:
        models: the models (zero-shot specs, or trained folders).
        benchmarks: the benchmarks, each with its split, categories and missing-image rule.
        out: the run folder (results.jsonl, ranks.jsonl, errors.jsonl; appended, finished work reused).
        protocol_id: the evaluation protocol.
        cache_dir: the gallery feature cache (None: none).
        device: where models run.
        seed: recorded with every result (and torch's seed while encoding).
        batch_size: images per encoder batch.
        chunk_size: queries scored at once.
        progress: show progress bars.
        log: one line per evaluation (reused, evaluated, failed).
        precision: "bf16": bf16 autocast, and each model (built here, for evaluation only) holds its
            frozen towers in bf16. An evaluation is reused only at the same precision.
        num_workers: image-decoding processes.
    """
    check_writable_folder(out)
    done = finished_evaluations(out)
    errors = []
    options = dict(protocol_id=protocol_id, cache_dir=cache_dir, device=device, seed=seed, batch_size=batch_size,
                   chunk_size=chunk_size, progress=progress, precision=precision, num_workers=num_workers)
    for model_entry in models:
        outcome = evaluate_model(model_entry, benchmarks, done, **options)
        done |= outcome.done
        errors += write_outcome(out, outcome, log)
    write_errors(out, errors)
    return errors


_SPLITS: dict[BenchmarkEntry, list] = {}  # read once per process: every model is evaluated on the same splits


def evaluate_model(
    model_entry: ModelEntry,
    benchmarks: list[BenchmarkEntry],
    done: set[tuple],
    *,
    protocol_id: str = "fashioniq/v1",
    cache_dir: Path | None = None,
    device: str = "cpu",
    seed: int = 0,
    batch_size: int = 128,
    chunk_size: int = 1024,
    progress: bool = True,
    precision: str = "fp32",
    num_workers: int = 0,
) -> ModelOutcome:
    """One model on each benchmark (``evaluate_all``'s arguments), skipping what ``done``
    (``finished_evaluations``) holds; a failure becomes an error row, never an exception. Writes
    nothing: ``write_outcome`` does, so that it can run in another process."""
    from cirbench.eval.protocols import get_protocol

    protocol = get_protocol(protocol_id)
    outcome = ModelOutcome(model_entry)
    model = None
    for bench in benchmarks:
        try:
            if model_entry.problem:
                raise DataError(model_entry.problem)  # the message as read: file, entry, problem
            if bench not in _SPLITS:
                _SPLITS[bench] = bench.load()
            model = model or build_for_evaluation(model_entry.spec, model_entry.checkpoint, device, precision, seed)
            keys = {(model_entry.label, model.checkpoint_hash(), bench.dataset, bench.split, protocol.id, precision,
                     split.category) for split in _SPLITS[bench]}
            if keys <= done:
                outcome.messages.append(f"reused: {model_entry.label} on {bench.dataset}")
                continue
            outcome.runs.append(_evaluate_one(model, model_entry, _SPLITS[bench], protocol, cache_dir,
                                              dict(device=device, batch_size=batch_size, chunk_size=chunk_size,
                                                   progress=progress, precision=precision, num_workers=num_workers),
                                              seed))
            outcome.done |= keys
            outcome.messages.append(f"evaluated: {model_entry.label} on {bench.dataset}")
        except Exception as exc:  # one failing model must not hide the others: record it
            outcome.errors.append(_error_row(model_entry, bench, protocol.id, exc))
            outcome.messages.append(f"FAILED: {model_entry.label} on {bench.dataset}: {exc}")
    return outcome


def write_outcome(out: Path, outcome: ModelOutcome, log: Callable[[str], None] = print) -> list[dict]:
    """Append a model's records and ranks to ``out`` and log its lines; returns its error rows."""
    from cirbench.results import write_run

    for records, ranks in outcome.runs:
        write_run(out, records, ranks)
    for message in outcome.messages:
        log(message)
    return outcome.errors


def build_for_evaluation(spec: str, checkpoint: Path | None, device: str, precision: str, seed: int = 0):
    """A model built only to be evaluated: on ``device`` (a torch module), at bf16 holding its
    frozen towers in bf16 (``hold_in_bf16``); torch seeded with ``seed`` first."""
    import torch

    from cirbench.eval.evaluator import hold_in_bf16
    from cirbench.baselines.zoo import build_model

    torch.manual_seed(seed)
    model = build_model(spec, checkpoint=checkpoint)
    if isinstance(model, torch.nn.Module):
        model = model.to(device)
    if precision == "bf16":
        hold_in_bf16(model)
    return model


def finished_evaluations(out: Path) -> set[tuple]:
    """(label, checkpoint hash, dataset, split, protocol, precision, category) of every evaluation
    already in ``out``, read once."""
    from cirbench.results import RESULTS_FILE, read_records, record_precision

    if not (Path(out) / RESULTS_FILE).is_file():
        return set()
    return {(r.get("label"), r["checkpoint_hash"], r["dataset"], r["split"], r["protocol"], record_precision(r),
             r["category"]) for r in read_records([Path(out) / RESULTS_FILE])}


def _evaluate_one(model, entry: ModelEntry, splits, protocol, cache_dir, options: dict,
                  seed: int) -> tuple[list[dict], list[dict]]:
    """(records, ranks) of one benchmark; ``options``: the evaluator's keywords (device, batch_size,
    progress, precision, num_workers)."""
    from cirbench.eval.evaluator import evaluate
    from cirbench.model_folder import folder_config_hash
    from cirbench.results import eval_records, new_run_id, rank_rows

    result = evaluate(model, splits, protocol, cache_dir=cache_dir, **options)
    run_id = new_run_id()
    config_hash = folder_config_hash(entry.checkpoint)
    records = eval_records(result, protocol, run_id=run_id, seed=seed, config_hash=config_hash, label=entry.label)
    ranks = [{**row, "label": entry.label} for row in rank_rows(result, run_id=run_id, seed=seed)]
    return records, ranks


def _error_row(entry: ModelEntry, bench: BenchmarkEntry, protocol: str, exc: Exception) -> dict:
    return {"label": entry.label, "model": entry.spec, "checkpoint": str(entry.checkpoint) if entry.checkpoint else None,
            "dataset": bench.dataset, "split": bench.split, "protocol": protocol, "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=5)}


def write_errors(out: Path, errors: list[dict]) -> None:
    append_jsonl(Path(out) / ERRORS_FILE, errors)  # written even when empty: "no error" is stated, not implied
