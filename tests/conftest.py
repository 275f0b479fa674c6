"""Shared test setup: offline by force, GPU/weights markers skip with their reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Without these a missing hub file is retried over the network for ~90 s before failing.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# `--device auto` follows this: CPU tests stay on the CPU on a GPU machine too (their reference
# numbers are fp32 CPU numbers); tests of the CUDA paths name their device.
os.environ.setdefault("CIRBENCH_DEVICE", "cpu")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FASHIONIQ = REPO_ROOT.parent / "shared" / "data" / "fashioniq"


@pytest.fixture
def real_fashioniq() -> Path:
    """The real FashionIQ annotation files (no images), read in place, never copied."""
    if not (SHARED_FASHIONIQ / "captions").is_dir():
        pytest.skip(f"real FashionIQ annotations not found at {SHARED_FASHIONIQ}")
    return SHARED_FASHIONIQ


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """The synthetic world at preset ``tiny``, seed 0, written once per run. Read it, never write
    into it: tests that add files (backbones, built sets) write their own."""
    from cirbench.synth.presets import PRESETS
    from cirbench.synth.world import write_world

    out = tmp_path_factory.mktemp("tiny_world")
    write_world(out, "tiny", 0, PRESETS["tiny"], workers=1)
    return out


def pytest_collection_modifyitems(config, items):
    import importlib.util

    has_cuda = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        has_cuda = torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_weights = pytest.mark.skip(reason="needs real pretrained weights (set CIRBENCH_WEIGHTS=1 once downloaded)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "weights" in item.keywords and not os.environ.get("CIRBENCH_WEIGHTS"):
            item.add_marker(skip_weights)


_TEST_CACHE: list[str] = []


def pytest_configure(config):
    # cirbench's cache (the default world, the installed tiny backbones' record, encoded galleries)
    # is a fresh folder per test session: tests never read or write the user's ~/.cache/cirbench.
    import tempfile

    _TEST_CACHE.append(tempfile.mkdtemp(prefix="cirbench-test-cache-"))
    os.environ["CIRBENCH_CACHE"] = _TEST_CACHE[0]

    # Tiny models on two cores: one torch thread is as fast as two, and two collapse (~15x slower,
    # measured) whenever another process competes for a core.
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)


def pytest_unconfigure(config):
    import shutil

    for folder in _TEST_CACHE:
        shutil.rmtree(folder, ignore_errors=True)
