"""Image ids, folder index and image loading shared by the readers."""

from __future__ import annotations

import os

import pytest
from bad_inputs import png_header_only
from PIL import Image

from cirbench.data import images
from cirbench.data.images import check_image_id, check_relative_path, index_image_folder, open_rgb
from cirbench.errors import DataError


@pytest.mark.parametrize("image_id", ["B00ABC123", "WOMEN-Dresses-id_00000002-02_1_front", "a.b"])
def test_plain_ids_are_accepted(image_id):
    assert check_image_id(image_id, "f.json", "entry 0") == image_id


@pytest.mark.parametrize(
    "image_id", ["../secret", "..", ".hidden", "/etc/passwd", "a/b", "a\\b", "C:evil", "a\nb", "", "  ", None, 7]
)
def test_ids_that_could_leave_the_root_are_refused(image_id):
    with pytest.raises(DataError) as info:
        check_image_id(image_id, "cap.dress.val.json", "entry 3 (candidate X)")
    assert "cap.dress.val.json" in str(info.value) and "entry 3 (candidate X)" in str(info.value)


def test_relative_paths_inside_the_root_are_accepted():
    path = check_relative_path("women/dresses/casual/51727804/51727804_0.jpeg", "labels.txt", "line 1")
    assert path.parts[:2] == ("women", "dresses")


@pytest.mark.parametrize("relative", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "C:\\x.jpg", "a\\..\\..\\x", ""])
def test_relative_paths_escaping_the_root_are_refused(relative):
    with pytest.raises(DataError, match="labels.txt: line 9"):
        check_relative_path(relative, "labels.txt", "line 9")


def test_index_maps_stems_prefers_png_and_ignores_partial_and_other_files(tmp_path):
    for name in ["a.png", "a.jpg", "b.JPG", "c.jpeg", "d.png.part", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert index_image_folder(tmp_path) == {
        "a": tmp_path / "a.png", "b": tmp_path / "b.JPG", "c": tmp_path / "c.jpeg"
    }


def test_index_of_a_missing_folder_is_empty(tmp_path):
    assert index_image_folder(tmp_path / "nowhere") == {}


def test_index_lists_the_folder_once(tmp_path, monkeypatch):
    for i in range(50):
        (tmp_path / f"img{i}.png").write_bytes(b"x")
    calls = []
    real_scandir = os.scandir
    monkeypatch.setattr(images.os, "scandir", lambda p: calls.append(p) or real_scandir(p))
    assert len(index_image_folder(tmp_path)) == 50
    assert calls == [tmp_path]


def test_open_rgb_converts_any_mode_to_rgb(tmp_path):
    Image.new("L", (5, 4), 128).save(tmp_path / "grey.png")
    image = open_rgb(tmp_path / "grey.png")
    assert image.mode == "RGB" and image.size == (5, 4) and image.getpixel((0, 0)) == (128, 128, 128)


def test_open_rgb_names_a_broken_file(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="broken.jpg: image: cannot be read"):
        open_rgb(broken)


@pytest.mark.parametrize("side", [10_000, 20_000])  # over Pillow's limit (its warning), over twice it (its error)
def test_open_rgb_refuses_an_image_too_large_to_decode(tmp_path, side):
    bomb = tmp_path / "bomb.png"
    png_header_only(bomb, side, side)
    with pytest.raises(DataError, match="bomb.png: image: .*too large to decode safely"):
        open_rgb(bomb)


def test_the_pixel_limit_holds_without_the_warning_filter(tmp_path, monkeypatch):
    """Another thread may be restoring the process-wide warning filters: the header check still refuses."""
    import contextlib
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        monkeypatch.setattr(warnings, "catch_warnings", contextlib.nullcontext)
        monkeypatch.setattr(warnings, "simplefilter", lambda *a, **k: None)
        bomb = tmp_path / "bomb.png"
        png_header_only(bomb, 10_000, 10_000)
        with pytest.raises(DataError, match="10000x10000 pixels is over the .*-pixel limit"):
            open_rgb(bomb)
