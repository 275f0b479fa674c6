"""``cirbench eval --all``: every model with a checkpoint (or zero-shot) x every benchmark found.

A model that fails gets an error row (kept in ``errors.jsonl`` and printed), never a silent gap;
an entry whose (label, checkpoint, dataset, protocol) already has records in the run folder is
reused, and the gallery feature cache makes re-encoding rare.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cirbench.files import check_writable_folder
from cirbench.results import ERRORS_FILE, append_jsonl


@dataclass(frozen=True)
class ModelEntry:
    label: str  # the table row, e.g. "FashionBLIP-2 (FACap -> FIQ)"
    spec: str  # "name:variant"
    checkpoint: Path | None = None  # a folder written by save_pretrained; None: zero-shot


@dataclass(frozen=True)
class BenchmarkEntry:
    dataset: str  # registry name, e.g. "fashioniq"
    root: Path
    split: str = "val"


def find_benchmarks(data_root: Path) -> list[BenchmarkEntry]:
    """Every registered benchmark whose folder (its registry ``subdir``) exists under ``data_root``."""
    from cirbench.data.benchmarks import DATASETS

    found = []
    for entry in DATASETS.entries():
        folder = Path(data_root) / entry.metadata.get("subdir", entry.name)
        if (folder / "captions").is_dir():
            found.append(BenchmarkEntry(entry.name, folder))
    return found


def trained_models(runs_root: Path) -> list[ModelEntry]:
    """Every trained model folder (``*/final/config.json``) under ``runs_root``."""
    entries = []
    for config in sorted(Path(runs_root).glob("**/final/config.json")):
        spec = _spec_of(config)
        if spec:
            entries.append(ModelEntry(f"{spec} ({config.parent.parent.name})", spec, config.parent))
    return entries


def _spec_of(config: Path) -> str | None:
    data = json.loads(config.read_text())
    name, variant = data.get("model") or data.get("name"), data.get("variant")
    if isinstance(name, dict):
        name, variant = name.get("name"), name.get("variant", variant)
    return f"{name}:{variant}" if name and variant else None


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
    progress: bool = True,
    log: Callable[[str], None] = print,
    precision: str = "fp32",
    num_workers: int = 0,
) -> list[dict]:
    """Evaluate each model on each benchmark into ``out``; returns the error rows.

    ``precision`` "bf16": bf16 autocast, and each model (built here, for evaluation only) holds its
    frozen towers in bf16. An evaluation is reused only at the same precision."""
    from cirbench.data.benchmarks import DATASETS
    from cirbench.eval.protocols import get_protocol

    check_writable_folder(out)
    protocol = get_protocol(protocol_id)
    errors = []
    done = _finished(out)
    splits_cache: dict[BenchmarkEntry, list] = {}
    for model_entry in models:
        model = None
        for bench in benchmarks:
            try:
                if bench not in splits_cache:
                    splits_cache[bench] = DATASETS.get(bench.dataset)(bench.root, split=bench.split)
                model = model or _build(model_entry, device, precision)
                key = (model_entry.label, model.checkpoint_hash(), bench.dataset, bench.split, protocol.id, precision)
                if key in done:
                    log(f"reused: {model_entry.label} on {bench.dataset}")
                    continue
                _evaluate_one(model, model_entry, splits_cache[bench], protocol, out, cache_dir,
                              dict(device=device, batch_size=batch_size, progress=progress, precision=precision,
                                   num_workers=num_workers), seed)
                done.add(key)
                log(f"evaluated: {model_entry.label} on {bench.dataset}")
            except Exception as exc:  # one failing model must not hide the others: record it
                errors.append(_error_row(model_entry, bench, protocol.id, exc))
                log(f"FAILED: {model_entry.label} on {bench.dataset}: {exc}")
    _write_errors(out, errors)
    return errors


def _build(entry: ModelEntry, device: str, precision: str):
    from cirbench.eval.evaluator import build_for_evaluation

    return build_for_evaluation(entry.spec, entry.checkpoint, device, precision)


def _finished(out: Path) -> set[tuple]:
    """(label, checkpoint hash, dataset, split, protocol, precision) of every evaluation already in ``out``, read once."""
    from cirbench.results import RESULTS_FILE, read_records, record_precision

    if not (Path(out) / RESULTS_FILE).is_file():
        return set()
    return {(r.get("label"), r["checkpoint_hash"], r["dataset"], r["split"], r["protocol"], record_precision(r))
            for r in read_records([Path(out) / RESULTS_FILE])}


def _evaluate_one(model, entry: ModelEntry, splits, protocol, out: Path, cache_dir, options: dict, seed: int) -> None:
    """``options``: the evaluator's keywords (device, batch_size, progress, precision, num_workers)."""
    from cirbench.eval.evaluator import evaluate
    from cirbench.results import eval_records, new_run_id, rank_rows, write_run

    result = evaluate(model, splits, protocol, cache_dir=cache_dir, **options)
    run_id = new_run_id()
    config_hash = _checkpoint_config_hash(entry.checkpoint)
    records = eval_records(result, protocol, run_id=run_id, seed=seed, config_hash=config_hash, label=entry.label)
    ranks = [{**row, "label": entry.label} for row in rank_rows(result, run_id=run_id, seed=seed)]
    write_run(out, records, ranks)


def _checkpoint_config_hash(checkpoint: Path | None) -> str | None:
    if checkpoint is None or not (Path(checkpoint) / "config.json").is_file():
        return None
    return json.loads((Path(checkpoint) / "config.json").read_text()).get("config_hash")


def _error_row(entry: ModelEntry, bench: BenchmarkEntry, protocol: str, exc: Exception) -> dict:
    return {"label": entry.label, "model": entry.spec, "checkpoint": str(entry.checkpoint) if entry.checkpoint else None,
            "dataset": bench.dataset, "split": bench.split, "protocol": protocol, "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=5)}


def _write_errors(out: Path, errors: list[dict]) -> None:
    append_jsonl(Path(out) / ERRORS_FILE, errors)  # written even when empty: "no error" is stated, not implied
