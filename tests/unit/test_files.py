"""The one durable atomic write and the data-URL helper."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from cirbench import files
from cirbench.files import data_url, replacing, write_atomic, write_json_atomic


def test_atomic_writes_replace_the_file_and_leave_no_temporary_file(tmp_path):
    write_atomic(tmp_path / "d" / "f.json", b"1")
    write_atomic(tmp_path / "d" / "f.json", "2 é")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["f.json"]
    assert (tmp_path / "d" / "f.json").read_bytes() == "2 é".encode("utf-8")
    write_json_atomic(tmp_path / "d" / "f.json", {"b": 1, "a": [1]}, sort_keys=True)
    assert (tmp_path / "d" / "f.json").read_text() == json.dumps({"a": [1], "b": 1}, indent=2) + "\n"


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed while writing")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_the_file_and_its_folder_are_synced_before_and_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(files.os, "fsync", lambda fd: synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)) or real_fsync(fd))
    write_atomic(tmp_path / "f.txt", "x")
    assert synced == [False, True]  # the new file's bytes, then the folder holding the rename


def test_new_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    write_atomic(tmp_path / "f.txt", "x")
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o666 & ~umask


def test_data_url_inlines_the_bytes():
    url = data_url(b"\x89PNG\r\n", "image/png")
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == b"\x89PNG\r\n"


def test_an_output_folder_that_could_not_be_written_is_refused_before_any_work(tmp_path):
    from cirbench.errors import DataError
    from cirbench.files import check_writable_folder

    assert check_writable_folder(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # nothing created
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"file: --out: is a file, not a folder"):
        check_writable_folder(tmp_path / "file")
    with pytest.raises(DataError, match=r"lies under .*file, which is a file"):
        check_writable_folder(tmp_path / "file" / "run", "--out")


def test_an_output_folder_without_write_permission_is_refused(tmp_path, monkeypatch):
    from cirbench.errors import DataError
    from cirbench.files import check_writable_folder

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root may write anywhere (CI runs as root): the kernel's answer is what a user would get
        real_access = os.access
        monkeypatch.setattr(files.os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    with pytest.raises(DataError, match="is not writable by this user"):
        check_writable_folder(locked / "run")
