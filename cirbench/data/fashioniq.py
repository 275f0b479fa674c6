"""FashionIQ reader (also enhFashionIQ, which the FACap builder writes in the same layout).

Layout under ``root``::

    captions/cap.{category}.{split}.json       [{"candidate": id, "target": id, "captions": [c1, c2]}, ...]
    image_splits/split.{category}.{split}.json [id, ...]   the category's gallery for that split
    images/<id>.png | images/<id>.jpg

The test split has no "target". Categories are read from the file names (dress, shirt, toptee
first, then any other the folder holds, e.g. a synthetic world's). Every entry is checked and the
first bad one stops the read with a DataError naming the file and the entry. Protocol facts
(gallery = all images of the category's split, reference kept, caption join) live in
``cirbench.eval.protocols``; this module keeps captions raw and the gallery in file order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from cirbench.data.images import check_image_id, index_image_folder
from cirbench.errors import DataError
from cirbench.data.schema import CIRQuery, EvalSplit, TrainTriplet

log = logging.getLogger(__name__)

DEFAULT_CATEGORIES = ("dress", "shirt", "toptee")
MISSING_MODES = ("error", "skip")
MISSING_IDS_SHOWN = 5


@dataclass(frozen=True)
class Annotation:
    """One validated entry of a caption file."""

    index: int  # position in the caption file: the stable part of the query id
    reference_id: str
    target_id: str | None
    captions: tuple[str, ...]


@dataclass(frozen=True)
class CategoryFiles:
    """One category of one split, read and cross-checked, before any image is looked for."""

    category: str
    split: str
    caption_file: Path
    annotations: list[Annotation]
    gallery: list[str]


def caption_path(root: Path, category: str, split: str) -> Path:
    return root / "captions" / f"cap.{_plain(category)}.{_plain(split)}.json"


def split_path(root: Path, category: str, split: str) -> Path:
    return root / "image_splits" / f"split.{_plain(category)}.{_plain(split)}.json"


def _plain(name: str) -> str:
    """Category and split names become parts of file names: they must not lead elsewhere."""
    return check_image_id(name, "command line or caller", f"name {name!r}", what="category or split name")


def find_categories(root: Path, split: str) -> list[str]:
    """Categories with a caption file for ``split``: the FashionIQ three first, then the rest sorted."""
    suffix = f".{split}.json"
    found = {p.name[len("cap."):-len(suffix)] for p in (root / "captions").glob(f"cap.*{suffix}")}
    if not found:
        raise DataError(
            root / "captions", f"split {split!r}",
            f"no caption file cap.<category>{suffix} found: is {root} a FashionIQ-layout folder?",
        )
    return [c for c in DEFAULT_CATEGORIES if c in found] + sorted(found - set(DEFAULT_CATEGORIES))


def read_json(path: Path) -> object:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise DataError(path, "file", "not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, f"line {exc.lineno}, column {exc.colno}", f"malformed JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"byte {exc.start}", "not UTF-8 text") from None


def read_split_file(path: Path) -> list[str]:
    """The gallery ids in file order; each id once."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(path, "top level", f"expected a JSON list of image ids, got {type(data).__name__}")
    first_seen: dict[str, int] = {}
    for i, image_id in enumerate(data):
        check_image_id(image_id, path, f"entry {i}")
        if image_id in first_seen:
            raise DataError(
                path, f"entry {i} ({image_id})", f"image listed twice (first at entry {first_seen[image_id]})"
            )
        first_seen[image_id] = i
    return data


def read_caption_file(path: Path, require_target: bool) -> list[Annotation]:
    """Every entry checked. An empty list is refused (a category with no query would average in as
    nothing), and so is an entry with a target that repeats an earlier one exactly (the same query
    would count twice). Entries without a target (test splits) may repeat: the real FashionIQ test
    files hold a few such repeats, and they are never scored."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(path, "top level", f"expected a JSON list of queries, got {type(data).__name__}")
    if not data:
        raise DataError(path, "top level", "an empty list: no query to read")
    annotations = [_parse_annotation(entry, i, path, require_target) for i, entry in enumerate(data)]
    first_seen: dict[tuple, int] = {}
    for ann in annotations:
        if ann.target_id is None:
            continue
        key = (ann.reference_id, ann.target_id, ann.captions)
        if key in first_seen:
            raise DataError(
                path, f"entry {ann.index} (candidate {ann.reference_id})",
                f"repeats entry {first_seen[key]} exactly (same candidate, target and captions): the query would count twice",
            )
        first_seen[key] = ann.index
    return annotations


def _parse_annotation(entry: object, index: int, path: Path, require_target: bool) -> Annotation:
    label = f"entry {index}"
    if not isinstance(entry, dict):
        raise DataError(path, label, f"expected an object with candidate, target, captions; got {type(entry).__name__}")
    if "candidate" not in entry:
        raise DataError(path, label, "missing key 'candidate'")
    reference_id = check_image_id(entry["candidate"], path, label)
    label = f"entry {index} (candidate {reference_id})"
    target_id = None
    if "target" in entry:
        target_id = check_image_id(entry["target"], path, label)
    elif require_target:
        raise DataError(path, label, "missing key 'target' (only test splits may omit it)")
    return Annotation(index, reference_id, target_id, _parse_captions(entry, path, label))


def _parse_captions(entry: dict, path: Path, label: str) -> tuple[str, ...]:
    if "captions" not in entry:
        raise DataError(path, label, "missing key 'captions'")
    captions = entry["captions"]
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise DataError(path, label, f"'captions' must be a list of strings, got {captions!r}")
    if not captions:
        raise DataError(path, label, "empty caption list")
    return tuple(captions)


def read_category(root: Path, category: str, split: str, require_target: bool) -> CategoryFiles:
    """Read one category's caption and split files; every reference and target must be in the split."""
    caption_file, gallery_file = caption_path(root, category, split), split_path(root, category, split)
    annotations = read_caption_file(caption_file, require_target)
    gallery = read_split_file(gallery_file)
    in_gallery = set(gallery)
    for ann in annotations:
        for role, image_id in (("target", ann.target_id), ("reference", ann.reference_id)):
            if image_id is not None and image_id not in in_gallery:
                raise DataError(
                    caption_file, f"entry {ann.index} (candidate {ann.reference_id})",
                    f"{role} {image_id} is not in the category's gallery {gallery_file}",
                )
    return CategoryFiles(category, split, caption_file, annotations, gallery)


@dataclass(frozen=True)
class MissingImages:
    """Images one category needs that are not in the images folder."""

    category: str
    groups: dict[str, tuple[int, list[str]]]  # "gallery"/"reference"/"target" -> (ids needed, missing ids)

    @property
    def ids(self) -> list[str]:
        return list(dict.fromkeys(i for _, missing in self.groups.values() for i in missing))

    def summary(self) -> str:
        counts = ", ".join(f"{len(missing)} of {n} {role}" for role, (n, missing) in self.groups.items())
        more = ", ..." if len(self.ids) > MISSING_IDS_SHOWN else ""
        return f"{self.category}: {counts} images missing (first: {', '.join(self.ids[:MISSING_IDS_SHOWN])}{more})"


def find_missing(files: CategoryFiles, index: dict[str, Path], with_gallery: bool) -> MissingImages | None:
    def needed_and_missing(ids: Iterable[str]) -> tuple[int, list[str]]:
        unique = list(dict.fromkeys(ids))
        return len(unique), [i for i in unique if i not in index]

    groups = {"gallery": needed_and_missing(files.gallery)} if with_gallery else {}
    groups["reference"] = needed_and_missing(a.reference_id for a in files.annotations)
    groups["target"] = needed_and_missing(a.target_id for a in files.annotations if a.target_id is not None)
    report = MissingImages(files.category, groups)
    return report if report.ids else None


def missing_images_error(root: Path, split: str, reports: Sequence[MissingImages]) -> DataError:
    lines = "; ".join(r.summary() for r in reports)
    return DataError(
        root / "images", f"split {split}",
        f"images missing from this folder: {lines}. Download them (FashionIQ: "
        f"`cirbench fetch fashioniq --root {root}`), or go on with the queries whose images exist "
        "with `--missing skip` (the table then says how many queries were used).",
    )


def _has_images(ann: Annotation, index: dict[str, Path]) -> bool:
    return ann.reference_id in index and (ann.target_id is None or ann.target_id in index)


def to_eval_split(files: CategoryFiles, index: dict[str, Path], dataset_name: str,
                  missing: MissingImages | None) -> EvalSplit:
    """Queries and gallery restricted to the images that exist (all of them, when none is missing)."""
    kept = [a for a in files.annotations if _has_images(a, index)]
    queries = [
        CIRQuery(f"{files.category}/{files.split}/{a.index}", files.category, a.reference_id, a.target_id, a.captions)
        for a in kept
    ]
    gallery = [image_id for image_id in files.gallery if image_id in index]
    used_ids = dict.fromkeys(gallery + [a.reference_id for a in kept])
    return EvalSplit(
        dataset=dataset_name, category=files.category, split=files.split, queries=queries,
        gallery=gallery, image_paths={i: index[i] for i in used_ids}, source=files.caption_file,
        n_queries_total=len(files.annotations), missing_images=missing.ids if missing else [],
    )


def _check_missing_mode(missing: str) -> None:
    if missing not in MISSING_MODES:
        raise ValueError(f"missing must be one of {MISSING_MODES}, got {missing!r}")


def _categories(root: Path, split: str, categories: Iterable[str] | str | None) -> list[str]:
    if isinstance(categories, str):
        return [categories]
    return list(categories) if categories else find_categories(root, split)


def load_eval_splits(
    root: str | Path,
    split: str = "val",
    categories: Iterable[str] | str | None = None,
    missing: str = "error",
    dataset_name: str = "fashioniq",
) -> list[EvalSplit]:
    """One EvalSplit per category of ``split``, gallery = the category's split file.

    ``missing="error"`` stops on missing images with one message counting them per category;
    ``missing="skip"`` drops the queries whose reference or target image is missing and the
    missing gallery images, and records ``n_queries_total`` and ``missing_images``.
    """
    _check_missing_mode(missing)
    root = Path(root)
    all_files = [read_category(root, c, split, require_target=split != "test")
                 for c in _categories(root, split, categories)]
    index = index_image_folder(root / "images")
    reports = [find_missing(files, index, with_gallery=True) for files in all_files]
    found_reports = [r for r in reports if r is not None]
    if found_reports and missing == "error":
        raise missing_images_error(root, split, found_reports)
    splits = [to_eval_split(f, index, dataset_name, r) for f, r in zip(all_files, reports)]
    if found_reports and not any(s.queries for s in splits):
        raise DataError(root / "images", f"split {split}",
                        "no query has its reference and target images here: nothing to evaluate")
    return splits


def load_enhanced_eval_splits(
    root: str | Path, split: str = "val", categories: Iterable[str] | str | None = None, missing: str = "error"
) -> list[EvalSplit]:
    """enhFashionIQ: FashionIQ layout with one triplet per val image and one caption per triplet."""
    return load_eval_splits(root, split, categories, missing, dataset_name="enhfashioniq")


def read_fashioniq_train(
    root: str | Path,
    categories: Iterable[str] | str | None = None,
    split: str = "train",
    missing: str = "error",
) -> list[TrainTriplet]:
    """Training triplets; ``texts`` are the raw captions (the training loop randomises them).

    Only reference and target images are needed. ``missing="skip"`` drops triplets lacking one.
    """
    _check_missing_mode(missing)
    root = Path(root)
    all_files = [read_category(root, c, split, require_target=True) for c in _categories(root, split, categories)]
    index = index_image_folder(root / "images")
    reports = [r for r in (find_missing(f, index, with_gallery=False) for f in all_files) if r is not None]
    if reports and missing == "error":
        raise missing_images_error(root, split, reports)
    triplets = [
        TrainTriplet(index[a.reference_id], index[a.target_id], a.captions, f.category,
                     reference_id=a.reference_id, target_id=a.target_id)
        for f in all_files for a in f.annotations if _has_images(a, index)
    ]
    n_total = sum(len(f.annotations) for f in all_files)
    if reports:
        log.warning("%s: kept %d of %d triplets; the others miss an image", root, len(triplets), n_total)
    return triplets
