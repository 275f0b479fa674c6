"""Tiny datasets in the real on-disk formats (Fashion200k, DeepFashion-MultiModal, a folder with
metadata), with solid-colour images, for the FACap builder's tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"black": (20, 20, 20), "white": (235, 235, 235), "red": (200, 30, 30), "blue": (30, 60, 200),
           "green": (30, 150, 60), "yellow": (230, 210, 40)}


def write_image(path: Path, colour: str, view: int = 0, size: int = 16) -> None:
    """A solid garment colour with a view-dependent shade, so views are near but not equal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.clip(np.array(COLOURS[colour]) + 6 * view, 0, 255).astype(np.uint8)
    Image.fromarray(np.tile(rgb, (size, size, 1))).save(path)


# (category, product id, views, description)
F200K_PRODUCTS = [
    ("dress", "1001", 3, "black floral maxi dress"),
    ("dress", "1002", 2, "red striped mini dress"),
    ("dress", "1003", 2, "white sleeveless dress"),
    ("dress", "1004", 1, "blue lace dress"),
    ("top", "2001", 2, "white long-sleeve blouse"),
    ("top", "2002", 2, "green short-sleeve tee"),
    ("top", "2003", 1, "yellow plaid shirt"),
]


def write_fashion200k(root: Path, products=F200K_PRODUCTS) -> Path:
    folders = {"dress": "dresses", "top": "tops"}
    lines: dict[str, list[str]] = {}
    for category, product, views, description in products:
        for view in range(views):
            relative = f"women/{folders[category]}/casual/{product}/{product}_{view}.jpeg"
            write_image(root / relative, description.split()[0], view)
            lines.setdefault(category, []).append(f"{relative}\t0.9\t{description}")
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for category, rows in lines.items():
        (root / "labels" / f"{category}_train_detect_all.txt").write_text("\n".join(rows) + "\n")
    return root


# (name stem, colour, shape labels[12], fabric[3], pattern[3], caption)
DF_IMAGES = [
    ("WOMEN-Dresses-id_00000001-01_1_front", "red", [0, 3, 3, 2, 4, 2, 2, 2, 4, 0, 2, 1], [5, 7, 7], [0, 7, 7], "The lady wears a red sleeveless dress."),
    ("WOMEN-Dresses-id_00000001-01_2_side", "red", [0, 3, 3, 2, 4, 2, 2, 2, 4, 0, 2, 1], [5, 7, 7], [0, 7, 7], "The lady wears a red sleeveless dress."),
    ("WOMEN-Dresses-id_00000002-01_1_front", "blue", [3, 1, 3, 2, 4, 2, 2, 2, 4, 2, 2, 1], [1, 7, 7], [3, 7, 7], "The lady wears a blue long-sleeve dress."),
    ("WOMEN-Skirts-id_00000003-01_1_front", "black", [1, 1, 3, 2, 4, 2, 2, 2, 4, 2, 2, 1], [1, 0, 7], [3, 2, 7], "A black striped skirt with a white tee."),
    ("WOMEN-Skirts-id_00000004-01_1_front", "white", [1, 2, 3, 2, 4, 2, 2, 2, 4, 2, 2, 1], [1, 5, 7], [3, 3, 7], "A white skirt."),
]


def write_deepfashion_mm(root: Path, image_dir: str = "image") -> Path:
    captions, shape, fabric, pattern = {}, [], [], []
    for stem, colour, shape_row, fabric_row, pattern_row, caption in DF_IMAGES:
        name = f"{stem}.jpg"
        write_image(root / image_dir / name, colour)
        captions[name] = caption
        shape.append(" ".join([name, *map(str, shape_row)]))
        fabric.append(" ".join([name, *map(str, fabric_row)]))
        pattern.append(" ".join([name, *map(str, pattern_row)]))
    (root / "captions.json").write_text(json.dumps(captions))
    for relative, rows in (("labels/shape/shape_anno_all.txt", shape), ("labels/texture/fabric_ann.txt", fabric),
                           ("labels/texture/pattern_ann.txt", pattern)):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("\n".join(rows) + "\n")
    return root


def write_folder(root: Path, n: int = 6) -> Path:
    """n images, two categories, one product per image; metadata at root/meta.jsonl."""
    entries = []
    for i in range(n):
        colour = list(COLOURS)[i % len(COLOURS)]
        write_image(root / "img" / f"{i}.png", colour)
        entries.append({"path": f"img/{i}.png", "category": "dress" if i % 2 else "coat",
                        "description": f"{colour} garment", "attributes": {"pattern": "solid"}})
    (root / "meta.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return root
