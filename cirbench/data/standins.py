"""Deterministic stand-in images, so the whole pipeline runs on real annotation files without the
real images (which must be downloaded, and many of whose links are dead).

Each id gets a small striped or checked PNG whose two colours, pattern and period come from a
hash of the id: the same id always gives the same image, different ids give different images.
Pillow encodes them at its fastest compression (level 1: the images are tiny and throwaway).
"""

from __future__ import annotations

import hashlib
import io
import shutil
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from cirbench.data.fashioniq import find_categories, read_category
from cirbench.data.images import check_image_id, index_image_folder
from cirbench.errors import DataError
from cirbench.files import write_atomic

ANNOTATION_FOLDERS = ("captions", "image_splits")
WRITERS = 8  # threads writing images: each waits mostly on its file's disk sync

# pattern name -> boolean mask from the row and column grids and a period
PATTERNS = {
    "horizontal": lambda rows, cols, period: (rows // period) % 2 == 0,
    "vertical": lambda rows, cols, period: (cols // period) % 2 == 0,
    "diagonal": lambda rows, cols, period: ((rows + cols) // period) % 2 == 0,
    "checks": lambda rows, cols, period: ((rows // period) + (cols // period)) % 2 == 0,
}


@lru_cache(maxsize=8)
def _grids(size: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.indices((size, size))
    return rows, cols


def standin_pixels(image_id: str, size: int = 32) -> np.ndarray:
    """[size, size, 3] uint8 pixels determined by the id alone."""
    digest = hashlib.sha256(image_id.encode("utf-8")).digest()
    background = np.frombuffer(digest[0:3], dtype=np.uint8)
    foreground = np.frombuffer(digest[3:6], dtype=np.uint8)
    pattern = list(PATTERNS.values())[digest[6] % len(PATTERNS)]
    period = 2 + digest[7] % 7
    mask = pattern(*_grids(size), period)
    return np.where(mask[..., None], foreground, background).astype(np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    """8-bit RGB PNG of [H, W, 3] uint8 pixels."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def write_standin_images(
    root: str | Path, image_ids: Iterable[str], size: int = 32, on_image: Callable[[], None] | None = None
) -> int:
    """Write ``root/images/<id>.png`` for every id that has no image yet; return how many were written.

    Existing images (real ones included, .png or .jpg) are never overwritten. Every id is checked
    before anything is written. Each file is written durably and atomically (``cirbench.files``),
    so an interrupted run leaves no truncated image; ``WRITERS`` threads write at once because
    each file waits on its disk sync. ``on_image`` is called once per id, written or not (a
    progress bar's advance).
    """
    folder = Path(root) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    present = index_image_folder(folder)
    wanted = list(dict.fromkeys(image_ids))
    todo = [check_image_id(image_id, folder, f"image {image_id!r}") for image_id in wanted if image_id not in present]
    for _ in range(len(wanted) - len(todo)):
        if on_image is not None:
            on_image()

    def write(image_id: str) -> None:
        write_atomic(folder / f"{image_id}.png", encode_png(standin_pixels(image_id, size)))

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        for _ in pool.map(write, todo):
            if on_image is not None:
                on_image()
    return len(todo)


def copy_annotations(source: str | Path, root: str | Path) -> int:
    """Copy a FashionIQ-layout folder's ``captions/`` and ``image_splits/`` into ``root``.

    A file already there with the same bytes is kept; one that differs is an error (never
    overwritten). Returns how many files were copied.
    """
    source, root = Path(source), Path(root)
    if not (source / "captions").is_dir():
        raise DataError(source, "folder", "no captions/ folder: not a FashionIQ-layout folder")
    copied = 0
    for sub in ANNOTATION_FOLDERS:
        for file in sorted((source / sub).glob("*.json")):
            target = root / sub / file.name
            if target.exists():
                if target.read_bytes() != file.read_bytes():
                    raise DataError(target, "file", f"exists and differs from {file}; not overwritten")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
            copied += 1
    return copied


def find_splits(root: Path) -> list[str]:
    """Splits that have caption files under ``root/captions`` (``cap.<category>.<split>.json``)."""
    return sorted({path.name.split(".")[-2] for path in (root / "captions").glob("cap.*.*.json")})


def annotation_image_ids(root: str | Path, splits: Sequence[str] | None = None) -> list[str]:
    """Every image id the annotation files of ``splits`` (default: all found) use, each once.

    Each category's split file lists its queries' images too (the reader checks it).
    """
    root = Path(root)
    ids: dict[str, None] = {}
    for split in splits or find_splits(root):
        for category in find_categories(root, split):
            files = read_category(root, category, split, require_target=split != "test")
            ids.update(dict.fromkeys(files.gallery))
    return list(ids)
