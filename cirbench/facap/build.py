"""build-facap: sources -> records -> the shared pipeline -> a FACap release folder.

With no source given, the sources are the synthetic world's Fashion200k- and
DeepFashion-MultiModal-like folders, read by the same readers as the real datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cirbench
from cirbench.errors import DataError
from cirbench.facap.backends import BackendOptions, Captioner, Modifier, make_annotators
from cirbench.facap.embedding import DEFAULT_CLIP, Embedder
from cirbench.facap.output import write_facap_release
from cirbench.facap.pipeline import PipelineSettings, run_pipeline
from cirbench.facap.sources import SourceData, limit_records, read_deepfashion_mm, read_fashion200k, read_folder
from cirbench.files import check_writable_folder

WORLD_SOURCES = ("fashion200k", "deepfashion_mm")


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "fashion200k" | "deepfashion_mm" | "folder"
    root: Path
    metadata: Path | None = None  # the folder source's JSONL

    def read(self) -> SourceData:
        readers: dict[str, Callable[[], SourceData]] = {
            "fashion200k": lambda: read_fashion200k(self.root),
            "deepfashion_mm": lambda: read_deepfashion_mm(self.root),
            "folder": lambda: read_folder(self.root, self.metadata),
        }
        return readers[self.kind]()


@dataclass
class FacapBuildConfig:
    out: Path
    sources: tuple[SourceSpec, ...]
    clip_model: str = DEFAULT_CLIP
    captioner: str = "offline"
    modifier: str = "offline"
    captioner_options: BackendOptions = field(default_factory=BackendOptions)
    modifier_options: BackendOptions = field(default_factory=BackendOptions)
    limit: int | None = None  # images per source (the first ones by id)
    device: str = "cpu"
    settings: PipelineSettings = field(default_factory=PipelineSettings)


def world_sources(world: Path) -> tuple[SourceSpec, ...]:
    """The synthetic world's image sources, in their real formats."""
    specs = tuple(SourceSpec(kind, world / kind) for kind in WORLD_SOURCES if (world / kind).is_dir())
    if not specs:
        raise DataError(world, "fashion200k/, deepfashion_mm/", "no image source found in this world folder")
    return specs


def read_sources(config: FacapBuildConfig) -> list[SourceData]:
    sources = [spec.read() for spec in config.sources]
    if not any(source.records for source in sources):
        raise DataError(", ".join(str(s.root) for s in config.sources), "images", "no images found")
    return sources


def build_facap(
    config: FacapBuildConfig,
    embedder: Embedder | None = None,
    captioner: Captioner | None = None,
    modifier: Modifier | None = None,
    sources: list[SourceData] | None = None,
) -> dict:
    """Build (or resume) a FACap-style release in ``config.out``; returns its manifest.

    Args:
        config: the sources, the output folder, the pairing CLIP, the two annotation backends and
            their options, the image limit and the pipeline settings (seed, top-k, progress).
        embedder: the pairing encoder (None: made from ``config.clip_model``).
        captioner: stage 1, a caption per image (None: made from ``config.captioner``).
        modifier: stage 2, a modification text per pair (None: made from ``config.modifier``).
        sources: the config's sources already read (``read_sources``; None: read here).

    The work of each stage is stored under ``config.out/work`` as it is done, so a rerun resumes;
    bad source data stops with a ``DataError`` before any model runs.
    """
    check_writable_folder(config.out)
    sources = sources or read_sources(config)
    records = [r for source in sources for r in limit_records(source.records, config.limit)]
    embedder, captioner, modifier = make_annotators(config, embedder, captioner, modifier)
    described = [_describe_source(spec, source, config.limit) for spec, source in zip(config.sources, sources)]
    identity = {"sources": described, "limit": config.limit}
    result = run_pipeline(records, Path(config.out) / "work", embedder, captioner, modifier, config.settings, identity)
    manifest = {
        "cirbench_version": cirbench.__version__,
        "sources": described,
        "image_roots": {source.name: str(Path(source.root).resolve()) for source in sources},
        "pairing": {"clip_model": embedder.name, "top_k": config.settings.top_k, "seed": config.settings.seed,
                    "within": "source and category; other views of the same product excluded"},
        "captioner": captioner.description,
        "modifier": modifier.description,
    }
    return write_facap_release(Path(config.out), result, manifest)


def _describe_source(spec: SourceSpec, source: SourceData, limit: int | None) -> dict:
    return {"name": source.name, "kind": spec.kind, "root": str(Path(source.root).resolve()),
            "images": min(len(source.records), limit) if limit is not None else len(source.records),
            "missing_images": len(source.missing)}
