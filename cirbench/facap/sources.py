"""Image sources for the FACap builder: Fashion200k, DeepFashion-MultiModal, a folder + metadata.

Every reader turns a dataset folder in its real on-disk layout into ``ImageRecord`` objects, the
only thing later stages see. Image ids are ``"<source>/<path relative to the source root>"``:
unique across sources and stable, so stores and outputs are keyed by them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from cirbench.data.images import check_image_id, confined_path
from cirbench.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass(frozen=True)
class ImageRecord:
    image_id: str  # "<source>/<relative path>"
    path: Path
    source: str
    category: str  # normalised garment category, e.g. "dress"
    product_id: str  # views of one product share it
    description: str = ""  # the source's own text (product title, caption)
    attributes: Mapping[str, str] = field(default_factory=dict)  # from label files, if any


@dataclass
class SourceData:
    name: str
    root: Path
    records: list[ImageRecord]
    missing: list[str] = field(default_factory=list)  # listed in the metadata, no file on disk


def limit_records(records: list[ImageRecord], limit: int | None) -> list[ImageRecord]:
    """The first ``limit`` records in image-id order (the same subset on every run)."""
    ordered = sorted(records, key=lambda r: r.image_id)
    return ordered if limit is None else ordered[:limit]


def text_lines(path: Path) -> Iterable[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file; bytes that are not UTF-8 stop the read naming the line."""
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                yield line_no, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(path, f"line {line_no}, byte {exc.start}", "not UTF-8 text") from None


# --- Fashion200k -------------------------------------------------------------------------------

_F200K_LABEL_FILE = re.compile(r"^(?P<cat>[a-z]+)_(?P<split>train|test)_detect_all\.txt$")


def read_fashion200k(root: Path) -> SourceData:
    """``labels/{cat}_{split}_detect_all.txt`` lines ``path<TAB>score<TAB>description``; a path
    that leaves ``root`` (absolute, '..', a symbolic link pointing out) stops the read naming the line.

    The product id is the image's folder (``.../<product id>/<product id>_<view>.jpeg``).
    Images listed in both splits are read once.
    """
    root = Path(root)
    label_files = sorted((root / "labels").glob("*_detect_all.txt"))
    if not label_files:
        raise DataError(root / "labels", "*_detect_all.txt", "no Fashion200k label files found")
    records: dict[str, ImageRecord] = {}
    missing: list[str] = []
    for label_file in label_files:
        match = _F200K_LABEL_FILE.match(label_file.name)
        if not match:
            raise DataError(label_file, "file name", "expected {category}_{train|test}_detect_all.txt")
        for line_no, rel_path, description in _fashion200k_lines(label_file):
            path = confined_path(root, rel_path, label_file, f"line {line_no}")
            image_id = f"fashion200k/{rel_path}"
            if image_id in records or image_id in missing:
                continue
            if not path.is_file():
                missing.append(image_id)
                continue
            records[image_id] = ImageRecord(
                image_id, path, "fashion200k", match["cat"], Path(rel_path).parent.name, description
            )
    return SourceData("fashion200k", root, list(records.values()), missing)


def _fashion200k_lines(label_file: Path) -> Iterable[tuple[int, str, str]]:
    for line_no, line in text_lines(label_file):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 3:
            raise DataError(label_file, f"line {line_no}", "expected 3 tab-separated fields: path, score, description")
        yield line_no, parts[0].strip(), parts[2].strip()


# --- DeepFashion-MultiModal --------------------------------------------------------------------

_DF_NAME = re.compile(
    r"^(?P<gender>MEN|WOMEN)-(?P<category>[A-Za-z_]+)-(?P<item>id_\d{8})-\d{2}_\d+_[A-Za-z]+$"
)

# The dataset's clothing categories, folded into the garment categories FACap pairs within.
DF_CATEGORIES = {
    "Dresses": "dress", "Rompers_Jumpsuits": "jumpsuit",
    "Blouses_Shirts": "top", "Tees_Tanks": "top", "Graphic_Tees": "top", "Shirts_Polos": "top",
    "Sweaters": "top", "Sweatshirts_Hoodies": "top", "Cardigans": "top",
    "Jackets_Coats": "jacket", "Jackets_Vests": "jacket", "Suiting": "jacket",
    "Pants": "pants", "Denim": "pants", "Leggings": "pants", "Shorts": "pants",
    "Skirts": "skirt",
}
_LOWER_BODY = {"pants", "skirt"}
_ONE_PIECE = {"dress", "jumpsuit"}

# Label codes, from the dataset's README (NA codes are left out: the part is not visible).
DF_SLEEVE = {0: "sleeveless", 1: "short sleeves", 2: "three-quarter sleeves", 3: "long sleeves"}
# "three-quarter" lower clothing is a midi dress or skirt, but cropped trousers.
DF_LENGTH = {0: "mini", 1: "knee-length", 2: "midi", 3: "full-length"}
DF_PANTS_LENGTH = {**DF_LENGTH, 2: "cropped"}
DF_NECKLINE = {0: "v-neck", 1: "square neckline", 2: "round neckline", 3: "stand collar", 4: "lapel collar", 5: "suspenders"}
DF_FABRIC = {0: "denim", 1: "cotton", 2: "leather", 3: "furry", 4: "knitted", 5: "chiffon"}
DF_PATTERN = {0: "floral", 1: "graphic", 2: "striped", 3: "solid", 4: "plaid", 6: "colour-block"}


def read_deepfashion_mm(root: Path) -> SourceData:
    """Images under ``image/`` (the release) or ``images/``, ``captions.json`` and the label files.

    Product id: ``<gender>-<category>-id_<8 digits>`` from the image name; the category folds the
    dataset's clothing category into a garment category (unknown ones become their lower-case name).
    """
    root = Path(root)
    image_dir = next((root / d for d in ("image", "images") if (root / d).is_dir()), None)
    if image_dir is None:
        raise DataError(root, "image/", "no DeepFashion-MultiModal image folder (image/ or images/)")
    captions = _read_json_object(root / "captions.json") if (root / "captions.json").is_file() else {}
    labels = _deepfashion_labels(root)
    records = [
        _deepfashion_record(confined_path(root, path.relative_to(root).as_posix(), image_dir, path.name),
                            image_dir, captions, labels)
        for path in sorted(image_dir.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    return SourceData("deepfashion_mm", root, records)


def _deepfashion_record(path: Path, image_dir: Path, captions: dict, labels: dict) -> ImageRecord:
    match = _DF_NAME.match(path.stem)
    if not match:
        raise DataError(path, path.name, "not a DeepFashion-MultiModal image name (GENDER-Category-id_XXXXXXXX-NN_N_view)")
    category = DF_CATEGORIES.get(match["category"], match["category"].lower())
    product_id = f"{match['gender']}-{match['category']}-{match['item']}"
    rel = path.relative_to(image_dir.parent).as_posix()
    attributes = _deepfashion_attributes(labels, path.name, category)
    return ImageRecord(
        f"deepfashion_mm/{rel}", path, "deepfashion_mm", category, product_id,
        str(captions.get(path.name, "")), attributes,
    )


def _deepfashion_labels(root: Path) -> dict[str, dict[str, list[int]]]:
    files = {
        "shape": (root / "labels" / "shape" / "shape_anno_all.txt", 12),
        "fabric": (root / "labels" / "texture" / "fabric_ann.txt", 3),
        "pattern": (root / "labels" / "texture" / "pattern_ann.txt", 3),
    }
    return {kind: _read_label_table(path, width) for kind, (path, width) in files.items() if path.is_file()}


def _read_label_table(path: Path, width: int) -> dict[str, list[int]]:
    table = {}
    for line_no, line in text_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != width + 1 or not all(p.lstrip("-").isdigit() for p in parts[1:]):
            raise DataError(path, f"line {line_no}", f"expected an image name and {width} integer labels")
        table[parts[0]] = [int(p) for p in parts[1:]]
    return table


def _deepfashion_attributes(labels: dict, name: str, category: str) -> dict[str, str]:
    """Named attributes of the garment the category refers to: the labels describe the whole
    outfit, so sleeves and neckline belong to upper garments, the lower-clothing length to lower
    garments and one-pieces, fabric and pattern to the upper, lower or outer part."""
    attributes: dict[str, str] = {}
    shape = labels.get("shape", {}).get(name)
    if shape:
        lower = category in _LOWER_BODY
        lengths = DF_PANTS_LENGTH if category == "pants" else DF_LENGTH
        wanted = [("length", lengths, shape[1])] if lower or category in _ONE_PIECE else []
        wanted += [] if lower else [("sleeve", DF_SLEEVE, shape[0]), ("neckline", DF_NECKLINE, shape[9])]
        attributes.update({key: codes[value] for key, codes, value in wanted if value in codes})
    part = 1 if category in _LOWER_BODY else 2 if category == "jacket" else 0
    for key, codes in (("material", DF_FABRIC), ("pattern", DF_PATTERN)):
        row = labels.get("fabric" if key == "material" else "pattern", {}).get(name)
        if row and row[part] in codes:
            attributes[key] = codes[row[part]]
    return attributes


# --- a folder with a metadata JSONL ------------------------------------------------------------


def read_folder(root: Path, metadata: Path, name: str = "folder") -> SourceData:
    """One JSON object per line: ``path`` (relative to ``root``) and ``category`` required;
    ``product_id`` (default: the path), ``description`` and ``attributes`` (object) optional.

    A path must stay under ``root`` (no absolute path, no '..', no symbolic link pointing out) and
    a category must be a plain name (it becomes part of the release's file names): anything else
    stops the read naming the metadata file and line, before anything is written."""
    root, metadata = Path(root), Path(metadata)
    records: list[ImageRecord] = []
    missing: list[str] = []
    for line_no, line in text_lines(metadata):
        if line.strip():
            record = _folder_record(root, metadata, line_no, line, name)
            (records if record.path.is_file() else missing).append(record)
    return SourceData(name, root, records, [r.image_id for r in missing])


def _folder_record(root: Path, metadata: Path, line_no: int, line: str, name: str) -> ImageRecord:
    entry = f"line {line_no}"
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(metadata, entry, f"not valid JSON ({exc.msg})") from None
    if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not isinstance(item.get("category"), str):
        raise DataError(metadata, entry, 'expected an object with string "path" and "category"')
    attributes = item.get("attributes", {})
    if not isinstance(attributes, dict):
        raise DataError(metadata, entry, '"attributes" must be an object')
    path = confined_path(root, item["path"], metadata, entry)
    rel = Path(item["path"]).as_posix()
    category = check_image_id(item["category"].strip().lower(), metadata, entry, what="category")
    return ImageRecord(
        f"{name}/{rel}", path, name, category,
        str(item.get("product_id", rel)), str(item.get("description", "")),
        {str(k): str(v) for k, v in attributes.items()},
    )


def _read_json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"line {exc.lineno}", f"not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"byte {exc.start}", "not UTF-8 text") from None
    if not isinstance(data, dict):
        raise DataError(path, "top level", "expected a JSON object {image name: caption}")
    return data
