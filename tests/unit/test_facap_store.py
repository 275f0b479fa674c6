"""Stage stores: appends survive, a torn final line is cut off, the last record of a key wins."""

from __future__ import annotations

import numpy as np
import pytest

from cirbench.errors import DataError
from cirbench.facap.store import JsonlStore, load_array, save_array


def test_last_record_of_a_key_wins_and_order_of_appends_is_kept(tmp_path):
    store = JsonlStore(tmp_path / "s.jsonl")
    store.append([{"key": "a", "error": "timeout"}, {"key": "b", "text": "x"}])
    store.append([{"key": "a", "text": "y"}])
    assert store.load() == {"a": {"key": "a", "text": "y"}, "b": {"key": "b", "text": "x"}}


def test_a_torn_final_line_is_cut_off_before_the_next_append(tmp_path):
    path = tmp_path / "s.jsonl"
    store = JsonlStore(path)
    store.append([{"key": "a", "text": "x"}])
    with open(path, "ab") as handle:  # what a kill in the middle of a write leaves
        handle.write(b'{"key": "b", "te')
    assert store.load() == {"a": {"key": "a", "text": "x"}}
    store.append([{"key": "b", "text": "z"}])
    assert path.read_text().splitlines() == ['{"key": "a", "text": "x"}', '{"key": "b", "text": "z"}']


def test_a_corrupt_line_inside_the_store_names_file_and_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(DataError, match=r"s.jsonl: line 2: corrupt store record"):
        JsonlStore(path).load()


def test_arrays_round_trip_through_an_atomic_write(tmp_path):
    save_array(tmp_path / "a.npy", np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(load_array(tmp_path / "a.npy"), np.eye(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_bytes_that_are_not_utf8_in_a_store_name_file_and_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"key": "a"}\n{"key": "b\xff"}\n')
    with pytest.raises(DataError, match=r"s.jsonl: line 2: not UTF-8 text"):
        JsonlStore(path).load()
