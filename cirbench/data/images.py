"""Image ids, image files and image loading, shared by every reader.

Annotation files name images by id (FashionIQ: an Amazon ASIN) or by a path relative to the
dataset root (Fashion200k). Both come from files we did not write, so both are checked before
they touch the file system: an id is one plain file name, a relative path stays inside the root.

Image folders are listed once (``index_image_folder``) instead of probing every id for every
extension: a FashionIQ images folder holds tens of thousands of files.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

from cirbench.errors import DataError

if TYPE_CHECKING:
    from PIL import Image

# In order of preference when one id has several files (a real .png next to a .jpg copy).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_FORBIDDEN_ID_CHARS = set('/\\:*?"<>|') | {chr(c) for c in range(32)}


def check_image_id(image_id: object, file: str | Path, entry: str, what: str = "image id") -> str:
    """Return ``image_id`` if it is a plain file name (no folder, no '..', no drive), else raise."""
    if not isinstance(image_id, str) or not image_id.strip():
        raise DataError(file, entry, f"{what} must be a non-empty string, got {image_id!r}")
    if image_id.startswith(".") or _FORBIDDEN_ID_CHARS.intersection(image_id):
        raise DataError(
            file, entry,
            f"{what} {image_id!r} is not a plain file name (path separators, '..', leading '.' "
            "and control characters are refused: it could point outside the data root)",
        )
    return image_id


def check_relative_path(relative: object, file: str | Path, entry: str) -> PurePosixPath:
    """Return a relative image path that cannot leave the data root ('a/b.jpg' yes, '../x' no)."""
    if not isinstance(relative, str) or not relative.strip():
        raise DataError(file, entry, f"image path must be a non-empty string, got {relative!r}")
    path = PurePosixPath(relative.replace("\\", "/"))
    escapes = (
        path.is_absolute() or PureWindowsPath(relative).drive or ".." in path.parts
        or any(ord(ch) < 32 for ch in relative)
    )
    if escapes:
        raise DataError(
            file, entry, f"image path {relative!r} escapes the data root (absolute, drive or '..')"
        )
    return path


def confined_path(root: Path, relative: object, file: str | Path, entry: str) -> Path:
    """``root / relative`` for a path named by a source's own files, refused unless it stays under
    ``root`` once symlinks are followed (a link inside the dataset pointing elsewhere escapes too)."""
    path = Path(root) / check_relative_path(relative, file, entry)
    real_root = Path(root).resolve()
    if not path.resolve().is_relative_to(real_root):
        raise DataError(
            file, entry,
            f"image path {relative!r} resolves outside the source root {real_root} (a symbolic link "
            "pointing out): point the source at the folder that really holds the images",
        )
    return path


def index_image_folder(folder: Path) -> dict[str, Path]:
    """Map image id (file stem) -> file for every image in ``folder``, listing it once.

    Where one id has several files, the first extension of ``IMAGE_EXTENSIONS`` wins; partial
    downloads (``*.part``) and other files are ignored. A missing folder maps nothing.
    """
    if not folder.is_dir():
        return {}
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    best: dict[str, tuple[int, str]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            ext_rank = rank.get(ext.lower())
            if ext_rank is None or not entry.is_file():
                continue
            if stem not in best or ext_rank < best[stem][0]:
                best[stem] = (ext_rank, entry.name)
    return {stem: folder / name for stem, (_, name) in best.items()}


def open_rgb(path: Path) -> "Image.Image":
    """Load an image file as RGB; a broken file is a DataError naming it, and so is an image of
    more than Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 89 million pixels by default, 50x a
    dataset photo): decoding it would take gigabytes (a decompression bomb), so it is refused
    from its header before any pixel is decoded."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; here that is an error too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixel_count(path, image.size, Image.MAX_IMAGE_PIXELS)
                return image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(path, "image", f"too large to decode safely ({exc})") from None
    except OSError as exc:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise DataError(path, "image", f"cannot be read as an image ({exc})") from None


def _check_pixel_count(path: Path, size: tuple[int, int], limit: int | None) -> None:
    """The limit again, from the header: the warning filter above is process-wide state that a
    concurrent thread may be restoring."""
    if limit and size[0] * size[1] > limit:
        raise DataError(path, "image", f"{size[0]}x{size[1]} pixels is over the {limit:,}-pixel limit: "
                                       "too large to decode safely (a decompression bomb?)")
