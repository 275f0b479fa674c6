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

Line files that only grow (result records, the FACap stage stores) are appended with
``append_durably`` (one write, fsync) and repaired with ``repair_torn_line`` before the next append:
a kill can only tear the last line, and the next writer cuts it off.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

PARTIAL_SUFFIX = ".partial"
CACHE_ENV = "CIRBENCH_CACHE"


def cache_root() -> Path:
    """``$CIRBENCH_CACHE``, else ``~/.cache/cirbench``: the root of every cache cirbench keeps
    (encoded galleries, the default world, the installed tiny backbones' record)."""
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


def check_writable_folder(folder: str | Path, option: str = "--out") -> Path:
    """Refuse, before any work starts, an output folder that could not be written at the end: a path
    that is a file (or lies under one), or a folder (or its nearest existing parent) without write
    permission. Nothing is created here."""
    from cirbench.errors import DataError

    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == folder else f"lies under {existing}, which is a file"
        raise DataError(folder, option, f"{where}, not a folder: choose another {option}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(folder, option, f"{existing} is not writable by this user: choose another {option}")
    return folder


# --- append-only line files (JSON lines): a kill can only tear the last line ------------------


def append_durably(path: str | Path, data: bytes) -> None:
    """Append ``data`` with one ``write`` loop on an ``O_APPEND`` descriptor, then fsync: earlier
    lines are never touched, and a kill mid-write can only leave the last line torn."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def split_torn_line(data: bytes) -> tuple[bytes, bytes]:
    """(every complete line, what follows the last newline): the second part is what an append cut
    by a kill leaves, or a last line whose newline is missing."""
    end = data.rfind(b"\n") + 1
    return data[:end], data[end:]


def repair_torn_line(path: str | Path, is_whole: Callable[[bytes], bool] = lambda tail: False) -> bytes:
    """Make the line file ``path`` end at a line end before anything is appended to it, and return
    its bytes (b"" when there is no file). A last line without its newline is cut off (a write
    interrupted by a kill), unless ``is_whole(line)`` says it is a whole record whose newline is
    missing (a file edited by hand): that one gets its newline."""
    path = Path(path)
    if not path.is_file():
        return b""
    data = path.read_bytes()
    complete, tail = split_torn_line(data)
    if not tail:
        return data
    if is_whole(tail):
        append_durably(path, b"\n")
        return data + b"\n"
    os.truncate(path, len(complete))
    return complete


def decode_utf8(path: str | Path, data: bytes) -> str:
    """``data`` (the bytes of ``path``) as text; bytes that are not UTF-8 are one DataError naming the line."""
    from cirbench.errors import DataError

    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(path, f"line {line}", f"not UTF-8 text (byte {exc.start}); the file is damaged") from None


def data_url(data: bytes, mime: str) -> str:
    """``data`` inlined as a ``data:<mime>;base64,...`` URL (HTML pages, chat requests)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
