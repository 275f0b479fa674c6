"""The three real on-disk formats, written from sampled products (see the shared formats brief).

Each writer returns a ``SourceOutput``: the text files to write, the images to draw and one
ground-truth record per image. Nothing here samples: world.py decides what exists, writers only
lay it out the way the real datasets do, so the real readers read it unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cirbench.synth.attributes import Garment
from cirbench.synth.render import ImageSpec

FASHIONIQ_DIR, FASHION200K_DIR, DEEPFASHION_DIR = "fashioniq", "fashion200k", "deepfashion_mm"
FASHION200K_FOLDERS = {"dress": "dresses", "jacket": "jackets", "pants": "pants", "skirt": "skirts", "top": "tops"}
DEEPFASHION_VIEWS = ("1_front", "2_side", "3_back", "4_full", "7_additional")


@dataclass
class SourceOutput:
    files: dict[str, str] = field(default_factory=dict)  # relative path -> text
    images: list[ImageSpec] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)  # ground truth, one per image

    def add_image(
        self,
        source: str,
        image_id: str,
        path: str,
        product_id: str,
        garment: Garment,
        pattern_seed: int,
        view_seed: int,
    ) -> None:
        self.images.append(ImageSpec(path, garment, pattern_seed, view_seed))
        self.records.append(
            {
                "source": source,
                "image_id": image_id,
                "path": path,
                "product_id": product_id,
                "category": garment.category,
                "attributes": garment.attributes(),
            }
        )


def _json(data: object) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------- FashionIQ


@dataclass
class FashionIQSplit:
    category: str  # dress, shirt, toptee
    split: str  # train, val, test
    images: dict[str, Garment]  # image id -> garment, in split-file order
    pairs: list[tuple[str, str]]  # (candidate = reference, target)
    captions: list[list[str]]  # two annotator texts per pair
    seeds: dict[str, tuple[int, int]]  # image id -> (pattern seed, view seed)


def write_fashioniq(splits: list[FashionIQSplit]) -> SourceOutput:
    """``captions/cap.{cat}.{split}.json``, ``image_splits/split.{cat}.{split}.json``,
    ``images/<id>.png``; test captions carry no target."""
    out = SourceOutput()
    for s in splits:
        entries = []
        for (candidate, target), captions in zip(s.pairs, s.captions):
            entry = {"candidate": candidate, "target": target, "captions": captions}
            if s.split == "test":
                del entry["target"]
            entries.append(entry)
        out.files[f"{FASHIONIQ_DIR}/captions/cap.{s.category}.{s.split}.json"] = _json(entries)
        out.files[f"{FASHIONIQ_DIR}/image_splits/split.{s.category}.{s.split}.json"] = _json(list(s.images))
        for image_id, garment in s.images.items():
            out.add_image(
                "fashioniq", image_id, f"{FASHIONIQ_DIR}/images/{image_id}.png", image_id, garment, *s.seeds[image_id]
            )
    return out


# ----------------------------------------------------------------------------- Fashion200k


@dataclass(frozen=True)
class ShopProduct:
    product_id: str  # 8 digits
    category: str  # a Fashion200k category: dress, jacket, pants, skirt, top
    subcategory: str  # folder name, e.g. "mini_dresses"
    split: str  # train, test
    garment: Garment
    description: str
    detection_scores: tuple[float, ...]  # one per view
    pattern_seed: int
    view_seeds: tuple[int, ...]


def write_fashion200k(products: list[ShopProduct]) -> SourceOutput:
    """``labels/{cat}_{split}_detect_all.txt`` lines ``path<TAB>score<TAB>description`` and the
    images at ``women/<cat folder>/<subcategory>/<id>/<id>_<view>.jpeg``."""
    out = SourceOutput()
    lines: dict[str, list[str]] = {f"{cat}_{split}": [] for cat in FASHION200K_FOLDERS for split in ("train", "test")}
    for p in products:
        folder = f"women/{FASHION200K_FOLDERS[p.category]}/{p.subcategory}/{p.product_id}"
        for view, (score, view_seed) in enumerate(zip(p.detection_scores, p.view_seeds)):
            image_path = f"{folder}/{p.product_id}_{view}.jpeg"
            lines[f"{p.category}_{p.split}"].append(f"{image_path}\t{score:.4f}\t{p.description}")
            out.add_image(
                "fashion200k",
                image_path,
                f"{FASHION200K_DIR}/{image_path}",
                p.product_id,
                p.garment,
                p.pattern_seed,
                view_seed,
            )
    for name, rows in lines.items():
        out.files[f"{FASHION200K_DIR}/labels/{name}_detect_all.txt"] = "".join(row + "\n" for row in rows)
    return out


# ----------------------------------------------------------------------------- DeepFashion-MultiModal


@dataclass(frozen=True)
class ModelShot:
    product_id: str  # "<gender>-<category>-id_<8 digits>"
    garment: Garment
    captions: tuple[str, ...]  # one per view
    pattern_seed: int
    view_seeds: tuple[int, ...]


# Code tables of the real release (labels/shape and labels/texture).
_DF_SLEEVE = {"sleeveless": 0, "short": 1, "elbow": 2, "long": 3, None: 5}
_DF_NECKLINE = {"v-neck": 0, "square": 1, "round": 2, "turtleneck": 3, "collar": 4, None: 6}
_DF_PATTERN = {"floral": 0, "stripes": 2, "solid": 3, "checks": 4, "plaid": 4, "dots": 5}
_DF_NA_PATTERN, _DF_OTHER_FABRIC, _DF_NA_FABRIC = 7, 6, 7
# shape slots 2-8 (socks, hat, glasses, neckwear, wrist, ring, waist accessories) are not visible
_DF_ACCESSORIES_NA = (3, 2, 4, 2, 2, 2, 4)


def _garment_slot(garment: Garment) -> int:
    """Which of (upper, lower, outer) the garment is."""
    return {"skirt": 1, "pants": 1, "jacket": 2}.get(garment.category, 0)


def deepfashion_shape(garment: Garment) -> list[int]:
    lower = garment.category in ("dress", "skirt", "pants")
    length = ("mini", "knee", "midi", "maxi") if garment.category != "pants" else ("shorts", "knee", "cropped", "full")
    navel = 2 if garment.category in ("skirt", "pants") else 0 if garment.length == "cropped" else 1
    return [
        _DF_SLEEVE[garment.sleeve],
        length.index(garment.length) if lower else 4,
        *_DF_ACCESSORIES_NA,
        _DF_NECKLINE[garment.neckline],
        1 if garment.category == "jacket" else 2,  # an outer garment here is never a cardigan
        navel,
    ]


def deepfashion_texture(garment: Garment) -> tuple[list[int], list[int]]:
    """(fabric, pattern) codes for the (upper, lower, outer) slots; absent slots are NA."""
    slot = _garment_slot(garment)
    fabric = [_DF_OTHER_FABRIC if i == slot else _DF_NA_FABRIC for i in range(3)]
    pattern = [_DF_PATTERN[garment.pattern] if i == slot else _DF_NA_PATTERN for i in range(3)]
    return fabric, pattern


def write_deepfashion(shots: list[ModelShot]) -> SourceOutput:
    """``images/<name>.jpg``, ``captions.json`` and the shape / fabric / pattern label files."""
    out = SourceOutput()
    captions: dict[str, str] = {}
    shape_rows, fabric_rows, pattern_rows = [], [], []
    for shot in shots:
        fabric, pattern = deepfashion_texture(shot.garment)
        shape = deepfashion_shape(shot.garment)
        for view, (caption, view_seed) in enumerate(zip(shot.captions, shot.view_seeds)):
            name = f"{shot.product_id}-01_{DEEPFASHION_VIEWS[view]}.jpg"
            captions[name] = caption
            shape_rows.append(" ".join([name, *map(str, shape)]))
            fabric_rows.append(" ".join([name, *map(str, fabric)]))
            pattern_rows.append(" ".join([name, *map(str, pattern)]))
            out.add_image(
                "deepfashion_mm",
                name,
                f"{DEEPFASHION_DIR}/images/{name}",
                shot.product_id,
                shot.garment,
                shot.pattern_seed,
                view_seed,
            )
    out.files[f"{DEEPFASHION_DIR}/captions.json"] = _json(captions)
    out.files[f"{DEEPFASHION_DIR}/labels/shape/shape_anno_all.txt"] = "".join(r + "\n" for r in shape_rows)
    out.files[f"{DEEPFASHION_DIR}/labels/texture/fabric_ann.txt"] = "".join(r + "\n" for r in fabric_rows)
    out.files[f"{DEEPFASHION_DIR}/labels/texture/pattern_ann.txt"] = "".join(r + "\n" for r in pattern_rows)
    return out
