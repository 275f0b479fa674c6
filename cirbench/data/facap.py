"""FACap reader: training triplets with the target's long caption, from a folder in the FACap
release layout, both the official release and what ``cirbench build-facap`` writes::

    cir_triplets/{cat}_train_triplets.json    [{"candidate": image, "target": image, "captions": [text]}]
    image_captions/{cat}_train_captions.json  {image: caption}
    manifest.json                              (our builds) image_roots: {source: folder}

Images are named by their path. Our builds name them ``<source>/<path under the source root>``
and record each source's folder in the manifest; for the official release, pass the folder the
paths are relative to as ``image_root`` (default: the release folder itself).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterable

from cirbench.data.fashioniq import read_json
from cirbench.data.images import check_relative_path
from cirbench.errors import DataError
from cirbench.data.schema import TrainTriplet

log = logging.getLogger(__name__)

TRIPLETS_DIR, CAPTIONS_DIR = "cir_triplets", "image_captions"
TRIPLETS_SUFFIX, CAPTIONS_SUFFIX = "_train_triplets.json", "_train_captions.json"


def triplet_path(root: Path, category: str) -> Path:
    return Path(root) / TRIPLETS_DIR / f"{category}{TRIPLETS_SUFFIX}"


def caption_map_path(root: Path, category: str) -> Path:
    return Path(root) / CAPTIONS_DIR / f"{category}{CAPTIONS_SUFFIX}"


def find_facap_categories(root: Path) -> list[str]:
    found = sorted(p.name[: -len(TRIPLETS_SUFFIX)] for p in (Path(root) / TRIPLETS_DIR).glob(f"*{TRIPLETS_SUFFIX}"))
    if not found:
        raise DataError(Path(root) / TRIPLETS_DIR, "*_train_triplets.json", "no triplet file: is this a FACap-layout folder?")
    return found


def read_triplet_file(path: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """(candidate, target, texts) per entry, every entry checked."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(path, "top level", "expected a JSON list of triplets")
    return [_triplet(entry, i, path) for i, entry in enumerate(data)]


def _triplet(entry: object, index: int, path: Path) -> tuple[str, str, tuple[str, ...]]:
    label = f"entry {index}"
    if not isinstance(entry, dict) or not all(k in entry for k in ("candidate", "target", "captions")):
        raise DataError(path, label, "expected an object with candidate, target, captions")
    texts = entry["captions"]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise DataError(path, label, f"'captions' must be a non-empty list of non-empty strings, got {texts!r}")
    for role in ("candidate", "target"):
        check_relative_path(entry[role], path, f"{label} ({role})")
    return entry["candidate"], entry["target"], tuple(texts)


def read_caption_map(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    data = read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise DataError(path, "top level", "expected a JSON object {image: caption}")
    return data


def image_resolver(root: Path, image_root: Path | None = None) -> Callable[[str, Path, str], Path]:
    """image name -> file: under ``image_root`` if given, else by the manifest's source folders,
    else under ``root``."""
    roots = {}
    manifest = Path(root) / "manifest.json"
    if image_root is None and manifest.is_file():
        roots = json.loads(manifest.read_text(encoding="utf-8")).get("image_roots", {})

    def resolve(name: str, file: Path, entry: str) -> Path:
        relative = check_relative_path(name, file, entry)
        if roots:
            source, rest = relative.parts[0], Path(*relative.parts[1:])
            if source not in roots:
                raise DataError(file, entry, f"image {name!r} names no source of the manifest ({', '.join(roots)})")
            return Path(roots[source]) / rest
        return Path(image_root or root) / relative

    return resolve


def load_facap(
    root: str | Path,
    categories: Iterable[str] | str | None = None,
    image_root: str | Path | None = None,
    missing: str = "error",
) -> list[TrainTriplet]:
    """Every triplet of the chosen categories (default: all), with the target's caption when the
    release has one. ``missing="skip"`` drops triplets whose images are not on disk."""
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    root = Path(root)
    chosen = [categories] if isinstance(categories, str) else list(categories or find_facap_categories(root))
    resolve = image_resolver(root, Path(image_root) if image_root else None)
    triplets = [t for category in chosen for t in _category_triplets(root, category, resolve)]
    on_disk = {p for p in {t.reference_path for t in triplets} | {t.target_path for t in triplets} if p.is_file()}
    kept = [t for t in triplets if t.reference_path in on_disk and t.target_path in on_disk]
    if len(kept) < len(triplets):
        absent = next(t for t in triplets if t.reference_path not in on_disk or t.target_path not in on_disk)
        if missing == "error":
            raise DataError(root, f"{len(triplets) - len(kept)} triplets", f"images not found, e.g. {absent.reference_path} or {absent.target_path}; pass image_root (--image-root), or missing='skip'")
        log.warning("%s: kept %d of %d triplets; the others miss an image", root, len(kept), len(triplets))
    return kept


def _category_triplets(root: Path, category: str, resolve: Callable[[str, Path, str], Path]) -> list[TrainTriplet]:
    path = triplet_path(root, category)
    captions = read_caption_map(caption_map_path(root, category))
    return [
        TrainTriplet(
            resolve(candidate, path, f"entry {i}"), resolve(target, path, f"entry {i}"), texts, category,
            target_caption=captions.get(target), reference_id=candidate, target_id=target,
        )
        for i, (candidate, target, texts) in enumerate(read_triplet_file(path))
    ]
