"""Incremental, resumable stage stores: what a build has done survives a kill.

A ``JsonlStore`` holds one JSON record per line, keyed by ``record["key"]``; the last record of a
key wins, so a retried failure is simply appended again. Records are appended in batches with one
``write`` on an ``O_APPEND`` descriptor followed by ``fsync`` (``cirbench.files.append_durably``): a
kill can only tear the final line, which ``load`` detects and cuts off before anything new is
appended (``repair_torn_line``, the same repair as the result files').

Arrays (embeddings) are written whole to a temporary file and renamed into place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from cirbench.errors import DataError
from cirbench.files import append_durably, decode_utf8, repair_torn_line, write_atomic


class JsonlStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> dict[str, dict]:
        """key -> last record. Cuts off a torn final line (a write interrupted by a kill)."""
        complete = repair_torn_line(self.path)
        records: dict[str, dict] = {}
        for line_no, line in enumerate(decode_utf8(self.path, complete).splitlines(), 1):
            record = self._parse(line, line_no)
            records[record["key"]] = record
        return records

    def append(self, records: Iterable[dict]) -> None:
        payload = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)
        if payload:
            append_durably(self.path, payload.encode("utf-8"))

    def _parse(self, line: str, line_no: int) -> dict:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(self.path, f"line {line_no}", f"corrupt store record ({exc.msg}); delete the file to redo this stage") from None
        if not isinstance(record, dict) or not isinstance(record.get("key"), str):
            raise DataError(self.path, f"line {line_no}", 'store record without a string "key"')
        return record


def save_array(path: Path, array) -> None:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_atomic(path, buffer.getvalue())


def load_array(path: Path):
    import numpy as np

    return np.load(path, allow_pickle=False)
