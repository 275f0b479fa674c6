"""build-enhfiq: every FashionIQ val image becomes the reference of one triplet, paired by the FACap
pipeline's CLIP pairing within its category and annotated by the same two stages, written in
FashionIQ layout so that the FashionIQ reader evaluates it (registered dataset "enhfashioniq")::

    captions/cap.{cat}.val.json        [{"candidate": id, "target": id, "captions": [text]}]
    image_splits/split.{cat}.val.json  the category's val gallery, as in FashionIQ
    images -> the FashionIQ images folder (a link)
    manifest.json

On the real val split: 3,817 + 6,346 + 5,373 = 15,536 triplets.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cirbench
from cirbench.errors import DataError
from cirbench.facap.backends import BackendOptions, Captioner, Modifier, make_annotators
from cirbench.facap.embedding import DEFAULT_CLIP, Embedder
from cirbench.facap.output import json_bytes, write_files
from cirbench.facap.pipeline import PipelineResult, PipelineSettings, run_pipeline
from cirbench.facap.sources import ImageRecord
from cirbench.files import check_writable_folder, write_atomic

SPLIT = "val"


@dataclass
class EnhFiqBuildConfig:
    fashioniq: Path
    out: Path
    categories: tuple[str, ...] | None = None  # None: every category with a val split
    clip_model: str = DEFAULT_CLIP
    captioner: str = "offline"
    modifier: str = "offline"
    captioner_options: BackendOptions = field(default_factory=BackendOptions)
    modifier_options: BackendOptions = field(default_factory=BackendOptions)
    device: str = "cpu"
    settings: PipelineSettings = field(default_factory=PipelineSettings)


def val_records(root: Path, categories: tuple[str, ...] | None = None) -> dict[str, list[ImageRecord]]:
    """category -> one record per val image (id ``<category>/<image id>``; each image its own product)."""
    from cirbench.data.fashioniq import find_categories, read_split_file, split_path
    from cirbench.data.images import index_image_folder

    index = index_image_folder(root / "images")
    records = {}
    for category in categories or find_categories(root, SPLIT):
        ids = read_split_file(split_path(root, category, SPLIT))
        missing = [i for i in ids if i not in index]
        if missing:
            raise DataError(root / "images", f"{category} val", f"{len(missing)} of {len(ids)} gallery images missing (first: {missing[0]})")
        records[category] = [ImageRecord(f"{category}/{i}", index[i], "fashioniq", category, i) for i in ids]
    return records


def build_enhfiq(
    config: EnhFiqBuildConfig,
    embedder: Embedder | None = None,
    captioner: Captioner | None = None,
    modifier: Modifier | None = None,
    by_category: dict[str, list[ImageRecord]] | None = None,
) -> dict:
    """Build (or resume) an enhFashionIQ-style folder in ``config.out``; returns its manifest.

    Args:
        config: the FashionIQ folder, the output folder, the categories, the pairing CLIP, the two
            annotation backends and their options, the pipeline settings.
        embedder: the pairing encoder (None: made from ``config.clip_model``).
        captioner: stage 1 (None: made from ``config.captioner``).
        modifier: stage 2 (None: made from ``config.modifier``).
        by_category: the val records already read (``val_records``; None: read here).
    """
    root = Path(config.fashioniq)
    check_writable_folder(config.out)
    by_category = by_category or val_records(root, config.categories)
    embedder, captioner, modifier = make_annotators(config, embedder, captioner, modifier)
    records = [r for group in by_category.values() for r in group]
    identity = {"fashioniq": str(root.resolve()), "categories": sorted(by_category)}
    result = run_pipeline(records, Path(config.out) / "work", embedder, captioner, modifier, config.settings, identity)
    manifest = {
        "format": "enhfashioniq/1", "cirbench_version": cirbench.__version__, "fashioniq": str(root.resolve()),
        "pairing": {"clip_model": embedder.name, "top_k": config.settings.top_k, "seed": config.settings.seed,
                    "within": "category"},
        "captioner": captioner.description, "modifier": modifier.description,
    }
    return write_enhfiq(Path(config.out), root, by_category, result, manifest)


def write_enhfiq(out: Path, fashioniq: Path, by_category: dict[str, list[ImageRecord]], result: PipelineResult, manifest: dict) -> dict:
    entries: dict[str, list[dict]] = defaultdict(list)
    for reference, target, text in result.triplets():
        entries[reference.category].append({"candidate": reference.product_id, "target": target.product_id, "captions": [text]})
    files = {}
    for category, records in by_category.items():
        files[f"captions/cap.{category}.{SPLIT}.json"] = json_bytes(entries[category])
        files[f"image_splits/split.{category}.{SPLIT}.json"] = json_bytes([r.product_id for r in records])
    _link_images(out / "images", fashioniq / "images")
    counts = {"images": len(result.records), "triplets": sum(len(e) for e in entries.values()),
              "triplets_per_category": {c: len(entries[c]) for c in by_category}, "unfinished": result.failures}
    manifest = {**manifest, "counts": counts, "complete": not any(result.failures.values()), "files": write_files(out, files)}
    write_atomic(out / "manifest.json", json_bytes(manifest))
    return manifest


def _link_images(link: Path, images: Path) -> None:
    if link.is_symlink() and Path(os.readlink(link)) == images.resolve():
        return
    if link.exists() or link.is_symlink():
        raise DataError(link, "images", f"exists and is not a link to {images.resolve()}")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(images.resolve(), target_is_directory=True)
