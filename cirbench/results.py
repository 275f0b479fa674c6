"""Results as records: one JSON line per (run, model, dataset, category, split, protocol, metric).

A run folder holds ``results.jsonl`` (the records: Recall@K per category with its bootstrap
interval and provenance) and ``ranks.jsonl`` (one line per model / dataset / category / split with
the query ids and the target ranks they came from), so paired tests and re-bootstraps use the very
same arrays. Averages over categories are never stored: tables compute them from the records.
Missing values are ``null``, never NaN. Writing appends, so an earlier run in a folder is kept; a
line torn by a kill mid-write is left out when reading and cut off before the next append.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import secrets
import subprocess
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import cirbench
from cirbench.errors import DataError
from cirbench.files import append_durably, decode_utf8, repair_torn_line, split_torn_line

if TYPE_CHECKING:
    from cirbench.eval.evaluator import EvalResult
    from cirbench.eval.protocols import EvalProtocol

log = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
RANKS_FILE = "ranks.jsonl"
ERRORS_FILE = "errors.jsonl"
ERROR_FIELDS = ("label", "dataset", "error")
RECORD_FIELDS = (
    "run_id", "model", "checkpoint_hash", "config_hash", "dataset", "category", "split", "protocol",
    "metric", "value", "ci_low", "ci_high", "n_queries", "n_queries_total", "git_commit",
    "package_version", "seed", "device", "created",
)
# Written into every new record, not required when reading: files written before it existed stay
# readable (their evaluations ran in fp32).
PRECISION_FIELD = "precision"
RANK_FIELDS = (
    "run_id", "model", "checkpoint_hash", "dataset", "category", "split", "protocol", "seed",
    "n_gallery", "n_queries_total", "query_ids", "ranks",
)


def new_run_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def git_commit() -> str | None:
    """The commit of the checkout cirbench runs from, "+dirty" when tracked files changed; None
    when it does not run from a git checkout of itself (e.g. an installed wheel)."""
    package_root = Path(cirbench.__file__).resolve().parent.parent
    head = _git(package_root, "rev-parse", "--show-toplevel", "HEAD")
    if head is None or len(head.split()) != 2 or Path(head.split()[0]).resolve() != package_root:
        return None
    status = _git(package_root, "status", "--porcelain", "--untracked-files=no")
    return head.split()[1] + ("+dirty" if status else "")


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def record_precision(record: dict[str, Any]) -> str:
    """The precision a record's evaluation ran at (records from before the field: fp32)."""
    return str(record.get(PRECISION_FIELD) or "fp32")


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def eval_records(
    result: "EvalResult",
    protocol: "EvalProtocol",
    *,
    run_id: str,
    seed: int,
    config_hash: str | None = None,
    n_resamples: int = 1000,
    label: str | None = None,
) -> list[dict[str, Any]]:
    """One record per split and ``protocol.ks`` cut-off: recall@K with its bootstrap interval.

    ``label`` (optional field) names the row in tables, e.g. "FashionBLIP-2 (FACap -> FIQ)"."""
    from cirbench.eval.metrics import recall_with_ci

    shared = {
        "run_id": run_id, "model": result.model, "checkpoint_hash": result.checkpoint_hash,
        "config_hash": config_hash, "protocol": result.protocol, "git_commit": git_commit(),
        "package_version": cirbench.__version__, "seed": seed, "device": result.device,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    precision = {PRECISION_FIELD: result.precision}
    records = []
    for split in result.splits:
        estimates = recall_with_ci(split.ranks, protocol.ks, split.category, seed=seed, n_resamples=n_resamples)
        for k, estimate in estimates.items():
            records.append({
                **shared, "dataset": split.dataset, "category": split.category, "split": split.split,
                "metric": f"recall@{k}", "value": _finite(estimate.value), "ci_low": _finite(estimate.ci_low),
                "ci_high": _finite(estimate.ci_high), "n_queries": split.n_queries,
                "n_queries_total": split.n_queries_total,
            })
    optional = {"label": label} if label else {}
    return [{**{name: record[name] for name in RECORD_FIELDS}, **precision, **optional} for record in records]


def rank_rows(result: "EvalResult", *, run_id: str, seed: int) -> list[dict[str, Any]]:
    return [
        {
            "run_id": run_id, "model": result.model, "checkpoint_hash": result.checkpoint_hash,
            "dataset": s.dataset, "category": s.category, "split": s.split, "protocol": result.protocol,
            "seed": seed, "n_gallery": s.n_gallery, "n_queries_total": s.n_queries_total,
            "query_ids": list(s.query_ids), "ranks": [int(r) for r in s.ranks], PRECISION_FIELD: result.precision,
        }
        for s in result.splits
    ]


def write_run(out_dir: str | Path, records: Sequence[dict], ranks: Sequence[dict]) -> Path:
    """Append records and ranks to ``out_dir``'s results.jsonl and ranks.jsonl."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    append_jsonl(out_dir / RANKS_FILE, ranks)
    append_jsonl(out_dir / RESULTS_FILE, records)
    return out_dir


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Append one JSON line per row, after cutting off a torn last line that an interrupted write
    left (``cirbench.files.repair_torn_line``, as the FACap stage stores do)."""
    lines = "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)
    repair_torn_line(path, is_whole=_is_json_object)
    append_durably(path, lines.encode("utf-8"))


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line, parse_constant=_reject_constant), dict)
    except ValueError:  # JSON errors, bad UTF-8 and NaN are all ValueErrors
        return False


def result_files(paths: Sequence[str | Path], name: str = RESULTS_FILE) -> list[Path]:
    """Files named by ``paths``: files as given, folders searched for ``name``, globs expanded."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True))] if not path.exists() else [path]
        if not matches:
            raise DataError(path, "results", "no such file or folder")
        for match in matches:
            found.extend(sorted(match.rglob(name)) if match.is_dir() else [match])
    if paths and not found:
        raise DataError(paths[0], "results", f"no {name} found")
    return list(dict.fromkeys(found))


def read_records(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    return [row for path in result_files(paths) for row in _read_jsonl(path, RECORD_FIELDS)]


def read_ranks(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The ranks.jsonl beside each results file (or under each folder) named by ``paths``."""
    siblings = [f.with_name(RANKS_FILE) for f in result_files(paths)]
    return [row for path in siblings if path.is_file() for row in _read_jsonl(path, RANK_FIELDS)]


def read_results_folder(folder: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Records, ranks and error rows of a run folder; all empty when it holds no results yet."""
    if not any(Path(folder).rglob(RESULTS_FILE)):
        return [], [], []
    return read_records([folder]), read_ranks([folder]), read_errors([folder])


def pick_query_ranks(run: str | Path, model: str | None = None, dataset: str | None = None,
                     option: str = "--model") -> list:
    """The per-category ``QueryRanks`` of one evaluation in ``run`` (a folder or results file), for
    paired tests. A folder of several evaluations (``eval --all``, the demo) needs ``model``, a
    table label ("clip_sum:synth_tiny (zero-shot)") or a model spec ("clip_sum:synth_tiny", or
    "clip_sum" for its default variant), and ``dataset`` where it holds several benchmarks; no match
    or several are a DataError listing the choices. An evaluation repeated in the folder counts once:
    its latest run."""
    import numpy as np

    from cirbench.eval.metrics import QueryRanks

    every = read_ranks([run])
    if not every:  # the paired tests need each query's rank, which only ranks.jsonl keeps
        raise DataError(run, option, f"no per-query ranks here ({RANKS_FILE} beside results.jsonl): compare needs them")
    rows = [r for r in every if (model is None or _names_model(r, model)) and dataset in (None, r["dataset"])]
    groups: dict[tuple, dict[str, dict]] = {}
    for row in rows:  # file order is write order: a later run of the same evaluation replaces an earlier one
        groups.setdefault(_evaluation_of(row), {})[row["category"]] = row
    if len(groups) != 1:
        raise DataError(run, option, _no_single_evaluation(every, list(groups), model, dataset, option))
    chosen = next(iter(groups.values())).values()
    return [QueryRanks(r["protocol"], r["category"], r["query_ids"], np.asarray(r["ranks"], dtype=np.int64)) for r in chosen]


def _names_model(row: dict[str, Any], wanted: str) -> bool:
    if wanted in (row.get("label"), row["model"]):
        return True
    from cirbench.baselines.zoo import resolve_spec
    from cirbench.registry import RegistryError

    try:
        return str(resolve_spec(wanted)) == row["model"]
    except (RegistryError, ValueError):  # not a spec at all (a label that matched nothing)
        return False


def _evaluation_of(row: dict[str, Any]) -> tuple:
    return (row.get("label") or row["model"], row["checkpoint_hash"], row["dataset"], row["split"], row["protocol"],
            record_precision(row))


def _no_single_evaluation(every: list[dict], matching: list[tuple], model: str | None, dataset: str | None,
                          option: str) -> str:
    """Why no single evaluation was picked, listing the matching ones (or, with none, all the folder holds)."""
    held = sorted(matching or {_evaluation_of(r) for r in every}, key=str)
    alike = Counter((label, data, split, precision) for label, _, data, split, _, precision in held)

    def describe(label: str, checkpoint: str, data: str, split: str, precision: str) -> str:
        at = "" if precision == "fp32" else f" at {precision}"
        which = f" (checkpoint {str(checkpoint)[:12]})" if alike[(label, data, split, precision)] > 1 else ""
        return f"{label!r} on {data}/{split}{at}{which}"

    choices = "; ".join(describe(label, ckpt, data, split, precision)
                        for label, ckpt, data, split, _, precision in held) or "no evaluation"
    asked = " and ".join(f"{name} {value!r}" for name, value in ((option, model), ("--dataset", dataset)) if value)
    if not matching:
        return f"no evaluation matches {asked or 'anything'}; it holds: {choices}"
    return (f"{len(matching)} evaluations match{' ' + asked if asked else ''}: choose one with {option} (a table "
            f"label or a model spec) and --dataset: {choices}")


def read_errors(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The failed evaluations (errors.jsonl, written by ``evaluate_all``) beside each results file."""
    siblings = [f.with_name(ERRORS_FILE) for f in result_files(paths)]
    return [row for path in siblings if path.is_file() for row in _read_jsonl(path, ERROR_FIELDS)]


def _read_jsonl(path: Path, fields: Sequence[str]) -> list[dict[str, Any]]:
    """Every record of a result file. A torn last line (a write cut by a kill) is left out with a
    warning, never read as a record; the next write to the folder cuts it off."""
    data = path.read_bytes()
    complete, tail = split_torn_line(data)
    if tail.strip() and not _is_json_object(tail):
        log.warning("%s: line %d is torn (an interrupted write) and is left out; the next evaluation "
                    "written to this folder removes it", path, complete.count(b"\n") + 1)
        data = complete
    rows = []
    for number, line in enumerate(decode_utf8(path, data).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_constant=_reject_constant)
        except ValueError as exc:
            raise DataError(path, f"line {number}", f"not a valid JSON record: {exc}") from None
        missing = [f for f in fields if not isinstance(row, dict) or f not in row]
        if missing:
            raise DataError(path, f"line {number}", f"missing fields: {', '.join(missing)}")
        rows.append(row)
    return rows


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed (results use null)")
