"""``cirbench doctor``: what this machine runs, and on a GPU machine one acceptance run of it all.

``cirbench doctor`` reports the environment (Python, torch, CUDA, the libraries and their
versions, the attention kernel BLIP-2 gets). ``cirbench doctor --gpu --out DIR`` runs, on one GPU,
in this order and within a few minutes:

1. ``environment``: the same report;
2. ``tests``: the CUDA-relevant tests (every ``gpu``-marked test, and the training-loop,
   collectives and evaluator tests, which run on CUDA too where there is one), with pytest;
3. ``bench_train``: ``bench train`` of FashionBLIP-2 and SPRC at ViT-g and CLIP4CIR at RN50x4
   (random weights built offline, batch 512, bf16, checkpointing): samples/s, MFU, peak memory and
   where a step's time goes;
4. ``eval_throughput``: images on disk -> ranks with FashionBLIP-2 at ViT-g, bf16, on stand-in
   images (``make-standins``) for the FashionIQ val annotation files of one category;
5. ``torchrun_smoke``: ``torchrun --nproc-per-node 1 -m cirbench train`` on NCCL (a tiny model
   and data written here: the process group, DDP, the collectives and the device placement).

It writes ``DIR/doctor.json`` and ``DIR/doctor.md`` and fails (exit 1) when any step fails.
Every step is a function of a ``DoctorPlan``: at ``size="tiny"`` on the CPU the same functions run
the same pipeline with the tiny models (the CPU test does), at ``size="full"`` on CUDA the GPU run.
Nothing is downloaded: every model is built from a config with random weights.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

# The tests step: pytest arguments, one run each (the gpu-marked tests anywhere; the files whose
# tests take their device from torch.cuda.is_available()).
CUDA_TESTS = (
    ("tests", "-m", "gpu"),
    ("tests/unit/test_train_loop.py", "tests/unit/test_distributed.py", "tests/unit/test_retrieval.py",
     "tests/models/test_eval_precision.py", "tests/e2e/test_cli_train.py"),
)
TINY = {"fashionblip2": "test_tiny", "sprc": "test_tiny", "clip4cir": "test_tiny"}
EVAL_TARGET_IMAGES_PER_S = 700  # issue 12: one H200/H100, ViT-g, images on disk -> ranks
STANDIN_SIZE = 256  # px: decoding and resizing cost like real catalogue photos, not 32 px thumbnails

Log = Callable[[str], None]


@dataclass
class DoctorPlan:
    """What one doctor run does. ``size``: "full" (paper size, CUDA) or "tiny" (the CPU rehearsal)."""

    out: Path
    device: str = "cuda"
    size: str = "full"
    fashioniq: Path | None = None  # FashionIQ annotation files (captions/, image_splits/)
    category: str = "dress"
    tests: tuple[tuple[str, ...], ...] = CUDA_TESTS
    bench_models: tuple[str, ...] = ("fashionblip2", "sprc", "clip4cir")
    bench_batch: int | None = None  # default: 512 full, 8 tiny
    bench_steps: int = 2
    timeout_s: int = 420  # each subprocess (tests, torchrun)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def full(self) -> bool:
        return self.size == "full"

    @property
    def precision(self) -> str:
        return "bf16" if self.device.startswith("cuda") else "fp32"


def environment() -> dict[str, Any]:
    """Versions and devices: what a bug report needs first."""
    import importlib.metadata as metadata

    import torch

    versions = {}
    for package in ("torch", "torchvision", "transformers", "tokenizers", "huggingface_hub", "open_clip_torch",
                    "timm", "safetensors", "faiss-cpu", "faiss-gpu", "numpy", "pillow", "cirbench"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    cuda = torch.cuda.is_available()
    report: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "versions": versions, "torch_cuda": torch.version.cuda, "cuda_available": cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "nccl": torch.distributed.is_nccl_available() if torch.distributed.is_available() else False,
        "bf16_supported": bool(cuda and torch.cuda.is_bf16_supported()),
    }
    try:
        from cirbench.backbones.blip2 import tiny_blip2_backbone
        from cirbench.compat import attention_implementations

        report["blip2_attention"] = attention_implementations(tiny_blip2_backbone(0).blip)
    except Exception as exc:  # a broken transformers install is exactly what this report is for
        report["blip2_attention"] = f"error: {type(exc).__name__}: {exc}"
    return report


def run_tests(plan: DoctorPlan, log: Log) -> dict[str, Any]:
    """Each pytest run of ``plan.tests``: its exit code and summary line; fails if any run fails."""
    runs = []
    for arguments in plan.tests:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments]
        done = _subprocess(command, plan.timeout_s)
        summary = next((line for line in reversed(done["tail"].splitlines()) if " in " in line and "=" not in line[:1]), "")
        runs.append({"args": list(arguments), "returncode": done["returncode"], "summary": summary.strip("= "),
                     "seconds": done["seconds"], "tail": done["tail"][-2000:]})
        log(f"  pytest {' '.join(arguments)}: {summary.strip('= ') or done['returncode']}")
    failed = [run for run in runs if run["returncode"] != 0]
    if failed:
        raise StepFailed(f"{len(failed)} pytest run(s) failed: " + "; ".join(r["summary"] or str(r["returncode"]) for r in failed),
                         {"runs": runs})
    return {"runs": runs}


def bench_train_models(plan: DoctorPlan, log: Log) -> dict[str, Any]:
    """``bench train`` of each model (full: paper size, random weights, bf16, checkpointing)."""
    import torch

    from cirbench.baselines.zoo import build_model
    from cirbench.train.bench_throughput import benchmark_training, full_size_model

    reports, failures = {}, {}
    for name in plan.bench_models:
        try:
            model = full_size_model(name, plan.out / "backbones") if plan.full else build_model(f"{name}:{TINY[name]}")
            reports[name] = benchmark_training(
                model, batch_size=plan.bench_batch or (512 if plan.full else 8), steps=plan.bench_steps, warmup=1,
                device=plan.device, precision=plan.precision, grad_checkpointing=plan.full,
            )
            log(f"  {reports[name]['model']}: {reports[name]['samples_per_s']:.1f} samples/s"
                + (f", MFU {100 * reports[name]['mfu']:.1f}%" if reports[name].get("mfu") else ""))
        except Exception as exc:
            failures[name] = f"{type(exc).__name__}: {exc}"
            log(f"  {name}: FAILED {failures[name]}")
        finally:
            model = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    if failures:
        raise StepFailed(f"bench train failed for {', '.join(failures)}", {"reports": reports, "failures": failures})
    return {"reports": reports}


def eval_throughput(plan: DoctorPlan, log: Log) -> dict[str, Any]:
    """Images on disk -> ranks: FashionBLIP-2 (ViT-g at full size) on stand-in images of one
    category's FashionIQ val split, bf16 on CUDA, the images decoded by loader workers."""
    import torch

    from cirbench.data.fashioniq import load_eval_splits
    from cirbench.eval.evaluator import default_num_workers, evaluate, hold_in_bf16
    from cirbench.eval.protocols import get_protocol
    from cirbench.baselines.zoo import build_model
    from cirbench.train.bench_throughput import full_size_model

    if plan.fashioniq is None:
        raise StepFailed("no FashionIQ annotation folder given (--fashioniq)", {})
    root = write_standins(plan.fashioniq, plan.out / "standins", plan.category)
    splits = load_eval_splits(root, split="val", categories=[plan.category])
    model = full_size_model("fashionblip2", plan.out / "backbones") if plan.full else build_model("fashionblip2:test_tiny")
    model = model.to(plan.device)
    if plan.precision == "bf16":
        hold_in_bf16(model)
    options = dict(batch_size=256 if plan.full else 16, device=plan.device, precision=plan.precision,
                   num_workers=default_num_workers(plan.device), cache_dir=None, progress=False)
    _warm_up(model, plan)
    if plan.device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = evaluate(model, splits, get_protocol("fashioniq/v1"), **options)
    seconds = time.perf_counter() - started
    images = sum(s.n_gallery + s.n_queries for s in result.splits)
    report = {"model": model.meta.spec, "category": plan.category, "images": images, "seconds": seconds,
              "images_per_s": images / seconds, "target_images_per_s": EVAL_TARGET_IMAGES_PER_S,
              "standin_px": STANDIN_SIZE, **{k: v for k, v in options.items() if k != "cache_dir"}}
    log(f"  {images:,} images in {seconds:.1f} s = {images / seconds:.0f} images/s ({plan.precision}, "
        f"{options['num_workers']} loader workers)")
    return report


def torchrun_smoke(plan: DoctorPlan, log: Log) -> dict[str, Any]:
    """``torchrun --nproc-per-node 1 -m cirbench train`` a tiny FashionBLIP-2 for 3 steps on the
    plan's device: under torchrun even one rank gets a process group (NCCL on CUDA), DDP and
    real collectives."""
    folder = plan.out / "torchrun"
    data = write_tiny_fashioniq(folder / "data")
    recipe = folder / "recipe.yaml"
    recipe.write_text(json.dumps({  # JSON is YAML
        "model": {"name": "fashionblip2", "variant": "test_tiny"},
        "data": {"kind": "fashioniq", "root": str(data), "categories": ["dress"]},
        "train": {"stage": "finetune", "tasks": ["cir"], "steps": 3, "batch_size": 4, "lr": 1e-4,
                  "precision": plan.precision, "checkpoint_every": 2},
    }, indent=1))
    backend = "nccl" if plan.device.startswith("cuda") else "gloo"
    run_dir = folder / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
               "-m", "cirbench", "train", "fashionblip2:test_tiny", "--recipe", str(recipe), "--out", str(run_dir),
               "--device", plan.device.split(":")[0], "--dist-backend", backend, "--no-progress"]
    done = _subprocess(command, plan.timeout_s)
    final = run_dir / "final" / "model.safetensors"
    report = {"backend": backend, "returncode": done["returncode"], "seconds": done["seconds"],
              "final_model": str(final) if final.is_file() else None, "tail": done["tail"][-2000:]}
    if done["returncode"] != 0 or not final.is_file():
        raise StepFailed(f"torchrun training ({backend}) failed with exit code {done['returncode']}", report)
    log(f"  torchrun, 1 rank, {backend}: trained in {done['seconds']:.0f} s")
    return report


STEPS: dict[str, Callable[[DoctorPlan, Log], dict[str, Any]]] = {
    "environment": lambda plan, log: environment(),
    "tests": run_tests,
    "bench_train": bench_train_models,
    "eval_throughput": eval_throughput,
    "torchrun_smoke": torchrun_smoke,
}


class StepFailed(Exception):
    """A step that ran and found a failure; ``details`` go into the summary."""

    def __init__(self, message: str, details: dict[str, Any]):
        super().__init__(message)
        self.details = details


def run_doctor(plan: DoctorPlan, steps: tuple[str, ...] = tuple(STEPS), log: Log = print) -> dict[str, Any]:
    """Run ``steps`` of the plan in order (a failing step does not stop the others); writes
    ``doctor.json`` and ``doctor.md`` under ``plan.out`` and returns the summary."""
    plan.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = []
    for name in steps:
        log(f"{name} ...")
        results.append(_run_step(name, STEPS[name], plan, log))
        _write_summary(plan, results, time.perf_counter() - started)  # a killed run keeps what it found
    return _write_summary(plan, results, time.perf_counter() - started)


def _run_step(name: str, step: Callable, plan: DoctorPlan, log: Log) -> dict[str, Any]:
    began = time.perf_counter()
    try:
        details, ok, error = step(plan, log), True, None
    except StepFailed as exc:
        details, ok, error = exc.details, False, str(exc)
    except Exception as exc:
        details, ok, error = {"traceback": traceback.format_exc(limit=8)}, False, f"{type(exc).__name__}: {exc}"
    if error:
        log(f"  FAILED: {error}")
    return {"step": name, "ok": ok, "seconds": time.perf_counter() - began, "error": error, "details": details}


def _write_summary(plan: DoctorPlan, results: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    summary = {
        "ok": all(r["ok"] for r in results), "seconds": seconds,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "plan": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(plan).items()},
        "steps": results,
    }
    (plan.out / "doctor.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    (plan.out / "doctor.md").write_text(markdown_summary(summary))
    return summary


def markdown_summary(summary: dict[str, Any]) -> str:
    """The summary as a short Markdown page: one row per step, then the numbers that matter."""
    lines = [f"# cirbench doctor: {'all steps passed' if summary['ok'] else 'FAILED'}", "",
             f"{summary['finished']}, {summary['seconds']:.0f} s, plan: size {summary['plan']['size']}, "
             f"device {summary['plan']['device']}", "", "| step | result | seconds | note |", "|---|---|---:|---|"]
    for r in summary["steps"]:
        lines.append(f"| {r['step']} | {'ok' if r['ok'] else 'FAILED'} | {r['seconds']:.1f} | {(r['error'] or '').replace('|', '/')[:200]} |")
    by_step = {r["step"]: r["details"] for r in summary["steps"]}
    env = by_step.get("environment") or {}
    if env.get("versions"):
        versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
        lines += ["", f"Environment: Python {env.get('python')}, {versions}; GPUs: {', '.join(env.get('devices') or []) or 'none'}; "
                  f"BLIP-2 attention: {env.get('blip2_attention')}"]
    for run in (by_step.get("tests") or {}).get("runs", []):
        lines.append(f"- pytest {' '.join(run['args'])}: {run['summary'] or run['returncode']}")
    reports = (by_step.get("bench_train") or {}).get("reports", {})
    if reports:
        lines += ["", "| model | batch | samples/s | MFU | peak GPU GiB | ViT fwd | rest fwd | backward | optimizer |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for report in reports.values():
            phases = report["phases"]
            mfu = f"{100 * report['mfu']:.1f}%" if report.get("mfu") else "n/a"
            memory = f"{report['peak_gpu_memory_gb']:.1f}" if "peak_gpu_memory_gb" in report else "n/a"
            lines.append(f"| {report['model']} | {report['batch_size']} | {report['samples_per_s']:.1f} | {mfu} | {memory} | "
                         + " | ".join(f"{100 * phases[k]:.0f}%" for k in ("vision_forward", "rest_forward", "backward", "optimizer")) + " |")
    evaluation = by_step.get("eval_throughput") or {}
    if "images_per_s" in evaluation:
        lines += ["", f"Evaluation {evaluation['model']} on {evaluation['images']:,} stand-in images ({evaluation['category']} val, "
                  f"{evaluation['precision']}, {evaluation['num_workers']} workers): **{evaluation['images_per_s']:.0f} images/s** "
                  f"(target {evaluation['target_images_per_s']})"]
    smoke = by_step.get("torchrun_smoke") or {}
    if "backend" in smoke:
        lines += ["", f"torchrun smoke ({smoke['backend']}): exit code {smoke['returncode']}, {smoke['seconds']:.0f} s"]
    return "\n".join(lines) + "\n"


def write_standins(fashioniq: Path, root: Path, category: str) -> Path:
    """``root``: FashionIQ's annotation files and stand-in images for ``category``'s val split."""
    from cirbench.data.fashioniq import read_category
    from cirbench.data.standins import copy_annotations, write_standin_images

    copy_annotations(fashioniq, root)
    ids = read_category(root, category, "val", require_target=True).gallery  # queries' images are in it
    write_standin_images(root, ids, size=STANDIN_SIZE)
    return root


def write_tiny_fashioniq(root: Path, n_images: int = 12) -> Path:
    """A FashionIQ-layout folder with one category (dress), train and val, plain coloured images."""
    from PIL import Image

    for folder in ("captions", "image_splits", "images"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    ids = [f"d{i:03d}" for i in range(n_images)]
    for i, image_id in enumerate(ids):
        Image.new("RGB", (48, 64), ((40 * i) % 256, (15 * i) % 256, (255 - 20 * i) % 256)).save(root / "images" / f"{image_id}.png")
    for split, pairs in (("train", range(n_images - 1)), ("val", range(0, n_images - 1, 2))):
        triplets = [{"candidate": ids[i], "target": ids[i + 1], "captions": ["is darker", f"has {i} stripes"]} for i in pairs]
        (root / "captions" / f"cap.dress.{split}.json").write_text(json.dumps(triplets))
        (root / "image_splits" / f"split.dress.{split}.json").write_text(json.dumps(ids))
    return root


def _warm_up(model, plan: DoctorPlan) -> None:
    """One batch through the candidate encoder (CUDA context, kernels chosen) before timing."""
    import torch

    from cirbench.eval.evaluator import eval_mode

    size = model.meta.image_size
    with eval_mode(model), torch.autocast(plan.device.split(":")[0], dtype=torch.bfloat16, enabled=plan.precision == "bf16"):
        model.encode_candidates(torch.zeros(4, 3, size, size, device=plan.device))


def _subprocess(command: list[str], timeout_s: int) -> dict[str, Any]:
    """Run ``command`` (output captured); a timeout is a failure with what it printed."""
    started = time.perf_counter()
    # PYTHONSAFEPATH: `python -m pytest` run from the repository root must import the installed
    # cirbench (a wheel on GPU machines), not the source folder, where cirbench.baselines is absent.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONSAFEPATH": "1"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code = 124
        output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        output += f"\n(timed out after {timeout_s} s)"
    return {"returncode": code, "tail": output[-6000:], "seconds": time.perf_counter() - started}
