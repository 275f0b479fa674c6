"""The one error type for bad input: it names the file and the entry, and the commands show it
to the user as one line (``cirbench.commands.core.user_errors``), never as a traceback.

It sits below every other module (files, data readers, models, commands all raise it).
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data. The message names the file and the entry; it is shown to the user as is."""

    def __init__(self, file: str | Path, entry: str | None = None, problem: str | None = None):
        if entry is None and problem is None:  # rebuilt from its message (pickling, DataLoader workers)
            file, entry, problem = _parts_of(str(file))
        self.file, self.entry, self.problem = str(file), entry, problem
        super().__init__(f"{file}: {entry}: {problem}")


def _parts_of(message: str) -> tuple[str, str, str]:
    """(file, entry, problem) of a DataError message.

    A DataLoader worker's error reaches the main process as ``DataError(text)`` where ``text`` is
    the worker's whole traceback, ending in ``...DataError: <message>``: the user sees the message.
    """
    last = message.rstrip().splitlines()[-1] if message.strip() else ""
    _, marker, rest = last.partition("DataError: ")
    parts = (rest if marker else last).split(": ", 2)
    return tuple(parts) if len(parts) == 3 else ("input data", "", last)  # type: ignore[return-value]
