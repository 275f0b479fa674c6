"""Writing files so that nothing is ever half-written, and inlining file bytes as data URLs.

``write_atomic`` (bytes or text), ``write_json_atomic`` and ``replacing`` (for libraries that
write to a path themselves: safetensors, Pillow) all take the same steps: write a temporary file
in the same folder, flush and fsync it, rename it over the target (``os.replace``, atomic on one
file system), then fsync the folder so the rename itself survives a power cut. A reader sees the
old file or the new one, never a mix; on an error the temporary file is removed and the target is
left as it was. Folders that are built whole (a final model folder) keep their own rename.

``cache_root`` is where cirbench keeps what it can rebuild: ``$CIRBENCH_CACHE`` (the one meaning
of that variable), else ``~/.cache/cirbench``; encoded galleries go to ``features/`` under it, the
default synthetic world to ``worlds/``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

PARTIAL_SUFFIX = ".partial"
CACHE_ENV = "CIRBENCH_CACHE"


def cache_root() -> Path:
    """``$CIRBENCH_CACHE``, else ``~/.cache/cirbench``: the root of every cache cirbench keeps."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cirbench").expanduser()


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write the new file to; when the block ends
    without an error, the file is made durable and renamed over ``path``.

    Example: ``with replacing(out) as tmp: image.save(tmp, format="PNG")``
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid and thread: writers of the same file in other processes or threads never share one
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}{PARTIAL_SUFFIX}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Replace ``path`` with ``data`` (text is written as UTF-8), durably and all at once."""
    with replacing(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_json_atomic(path: str | Path, data: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """``data`` as JSON (one trailing newline) through ``write_atomic``."""
    return write_atomic(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; folders cannot be opened on Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def data_url(data: bytes, mime: str) -> str:
    """``data`` inlined as a ``data:<mime>;base64,...`` URL (HTML pages, chat requests)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
