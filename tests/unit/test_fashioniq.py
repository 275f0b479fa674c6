"""FashionIQ reader: layout, protocol facts, validation of every entry, missing images, real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cirbench.data import fashioniq
from cirbench.data import images as images_module
from cirbench.data.fashioniq import (
    load_enhanced_eval_splits,
    load_eval_splits,
    read_category,
    read_fashioniq_train,
)
from cirbench.data.benchmarks import DATASETS
from cirbench.errors import DataError

REAL_FASHIONIQ = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "fashioniq"


def query(candidate, target=None, captions=("is red", "has long sleeves")):
    entry = {"candidate": candidate, "captions": captions}
    if target is not None:
        entry["target"] = target
    return entry


def write_category(root: Path, category: str, split: str, queries, gallery) -> None:
    for folder, name, data in [("captions", f"cap.{category}.{split}.json", queries),
                               ("image_splits", f"split.{category}.{split}.json", gallery)]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_text(json.dumps(data, indent=2))


def write_images(root: Path, ids, extension=".png") -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        (root / "images" / f"{image_id}{extension}").write_bytes(b"image")


@pytest.fixture
def small(tmp_path) -> Path:
    """dress: 3 queries over a 4-image gallery; shirt: 1 query over 2 images; .jpg and .png mixed."""
    write_category(tmp_path, "dress", "val",
                   [query("d1", "d2"), query("d3", "d1", (" Is shorter.", "blue?")), query("d2", "d4")],
                   ["d4", "d1", "d2", "d3"])
    write_category(tmp_path, "shirt", "val", [query("s1", "s2")], ["s2", "s1"])
    write_images(tmp_path, ["d1", "d2", "s1", "s2"])
    write_images(tmp_path, ["d3", "d4"], ".jpg")
    return tmp_path


def test_one_split_per_category_with_gallery_in_file_order_and_reference_kept(small):
    dress, shirt = load_eval_splits(small)
    assert (dress.dataset, dress.category, dress.split) == ("fashioniq", "dress", "val")
    assert dress.gallery == ["d4", "d1", "d2", "d3"]
    assert [q.query_id for q in dress.queries] == ["dress/val/0", "dress/val/1", "dress/val/2"]
    assert all(q.reference_id in dress.gallery for q in dress.queries)
    assert dress.queries[1].captions == (" Is shorter.", "blue?")  # raw: the protocol joins them
    assert dress.image_paths["d3"] == small / "images" / "d3.jpg"
    assert dress.image_paths["d1"] == small / "images" / "d1.png"
    assert dress.source == small / "captions" / "cap.dress.val.json"
    assert (dress.n_queries_total, dress.missing_images) == (3, [])
    assert [q.target_id for q in shirt.queries] == ["s2"]


def test_registry_names_resolve_to_the_readers():
    assert DATASETS.get("fashioniq") is load_eval_splits
    assert DATASETS.get("enhfashioniq") is load_enhanced_eval_splits


def test_categories_found_on_disk_fashioniq_three_first_then_sorted(tmp_path):
    for category in ["toptee", "skirt", "dress", "bag"]:
        write_category(tmp_path, category, "val", [query("a", "b")], ["a", "b"])
    write_images(tmp_path, ["a", "b"])
    assert [s.category for s in load_eval_splits(tmp_path)] == ["dress", "toptee", "bag", "skirt"]
    assert [s.category for s in load_eval_splits(tmp_path, categories="skirt")] == ["skirt"]


def test_a_folder_without_caption_files_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no caption file cap.<category>.val.json"):
        load_eval_splits(tmp_path)


def test_test_split_has_no_targets(tmp_path):
    write_category(tmp_path, "dress", "test", [query("a")], ["a", "b"])
    write_images(tmp_path, ["a", "b"])
    (dress,) = load_eval_splits(tmp_path, split="test")
    assert dress.queries[0].target_id is None and dress.gallery == ["a", "b"]


def test_enhanced_reader_accepts_one_caption_and_names_its_dataset(tmp_path):
    write_category(tmp_path, "dress", "val", [query("a", "b", ["a long modification text"])], ["a", "b"])
    write_images(tmp_path, ["a", "b"])
    (dress,) = load_enhanced_eval_splits(tmp_path)
    assert dress.dataset == "enhfashioniq" and dress.queries[0].captions == ("a long modification text",)


def test_images_are_found_by_listing_the_folder_once_not_by_a_stat_per_image(tmp_path, monkeypatch):
    ids = [f"i{n}" for n in range(300)]
    for category in ("dress", "shirt"):
        write_category(tmp_path, category, "val", [query(a, b) for a, b in zip(ids, ids[1:])], ids)
    write_images(tmp_path, ids)
    scanned, stats = [], []
    real_scandir, real_stat = os.scandir, os.stat
    monkeypatch.setattr(images_module.os, "scandir", lambda p: scanned.append(Path(p)) or real_scandir(p))
    monkeypatch.setattr(images_module.os, "stat", lambda p, **k: stats.append(p) or real_stat(p, **k))
    load_eval_splits(tmp_path)
    assert scanned.count(tmp_path / "images") == 1
    assert len(stats) < 20  # a few per call, none per image


# ---- bad input: one DataError naming the file and the entry ----

BAD_ENTRIES = [
    ("entry not an object", ["d1"], "entry 0", "expected an object"),
    ("no candidate", [{"target": "d2", "captions": ["x"]}], "entry 0", "missing key 'candidate'"),
    ("no target", [{"candidate": "d1", "captions": ["x"]}], "entry 0 (candidate d1)", "missing key 'target'"),
    ("no captions", [{"candidate": "d1", "target": "d2"}], "entry 0 (candidate d1)", "missing key 'captions'"),
    ("captions a string", [query("d1", "d2", "red")], "entry 0 (candidate d1)", "must be a list of strings"),
    ("caption not a string", [query("d1", "d2", ["red", 3])], "entry 0 (candidate d1)", "must be a list of strings"),
    ("empty captions", [query("d1", "d2"), query("d2", "d3", [])], "entry 1 (candidate d2)", "empty caption list"),
    ("target not in gallery", [query("d1", "zz")], "entry 0 (candidate d1)", "target zz is not in"),
    ("reference not in gallery", [query("zz", "d1")], "entry 0 (candidate zz)", "reference zz is not in"),
    ("candidate escapes", [query("../../etc/passwd", "d1")], "entry 0", "not a plain file name"),
    ("target absolute", [query("d1", "/etc/passwd")], "entry 0 (candidate d1)", "not a plain file name"),
    ("target with separator", [query("d1", "sub/d2")], "entry 0 (candidate d1)", "not a plain file name"),
    ("not a list", {"candidate": "d1"}, "top level", "expected a JSON list"),
    ("empty file", [], "top level", "an empty list: no query to read"),
    ("entry repeated", [query("d1", "d2"), query("d2", "d3"), query("d1", "d2")], "entry 2 (candidate d1)",
     "repeats entry 0 exactly"),
]


@pytest.mark.parametrize("case, queries, entry, problem", BAD_ENTRIES, ids=[c[0] for c in BAD_ENTRIES])
def test_bad_caption_entries_name_file_and_entry(tmp_path, case, queries, entry, problem):
    write_category(tmp_path, "dress", "val", queries, ["d1", "d2", "d3"])
    with pytest.raises(DataError) as info:
        load_eval_splits(tmp_path)
    error = info.value
    assert Path(error.file).name == "cap.dress.val.json"
    assert error.entry == entry
    assert problem in error.problem


def test_malformed_json_names_line_and_column(tmp_path):
    write_category(tmp_path, "dress", "val", [query("d1", "d1")], ["d1"])
    (tmp_path / "captions" / "cap.dress.val.json").write_text('[\n  {"candidate": "d1",\n  "target" "d2"}\n]')
    with pytest.raises(DataError) as info:
        load_eval_splits(tmp_path)
    assert info.value.entry == "line 3, column 12" and "malformed JSON" in info.value.problem
    assert str(info.value).startswith(str(tmp_path / "captions" / "cap.dress.val.json"))


def test_split_naming_an_image_twice(tmp_path):
    write_category(tmp_path, "dress", "val", [query("d1", "d2")], ["d1", "d2", "d3", "d2"])
    with pytest.raises(DataError) as info:
        load_eval_splits(tmp_path)
    assert Path(info.value.file).name == "split.dress.val.json"
    assert info.value.entry == "entry 3 (d2)" and "listed twice (first at entry 1)" in info.value.problem


def test_split_image_escaping_the_root(tmp_path):
    write_category(tmp_path, "dress", "val", [query("d1", "d2")], ["d1", "d2", "..\\..\\boot.ini"])
    with pytest.raises(DataError, match=r"split.dress.val.json: entry 2: .*not a plain file name"):
        load_eval_splits(tmp_path)


def test_missing_split_file_is_named(tmp_path):
    write_category(tmp_path, "dress", "val", [query("d1", "d2")], ["d1", "d2"])
    (tmp_path / "image_splits" / "split.dress.val.json").unlink()
    with pytest.raises(DataError, match=r"split.dress.val.json: file: not found"):
        load_eval_splits(tmp_path)


# ---- missing images ----

def test_missing_images_error_counts_them_shows_ids_folder_and_the_way_on(small):
    (small / "images" / "d2.png").unlink()
    (small / "images" / "s1.png").unlink()
    with pytest.raises(DataError) as info:
        load_eval_splits(small)
    message = str(info.value)
    assert info.value.file == str(small / "images")
    assert "dress: 1 of 4 gallery, 1 of 3 reference, 1 of 3 target images missing (first: d2)" in message
    assert "shirt: 1 of 2 gallery, 1 of 1 reference, 0 of 1 target images missing (first: s1)" in message
    assert "--missing skip" in message and "cirbench fetch fashioniq" in message


def test_missing_images_error_shows_only_the_first_few_ids(tmp_path):
    ids = [f"i{n}" for n in range(9)]
    write_category(tmp_path, "dress", "val", [query("i0", "i1")], ids)
    with pytest.raises(DataError, match=r"\(first: i0, i1, i2, i3, i4, \.\.\.\)"):
        load_eval_splits(tmp_path)


def test_skip_drops_queries_and_gallery_images_without_files_and_records_it(small):
    (small / "images" / "d2.png").unlink()
    dress, shirt = load_eval_splits(small, missing="skip")
    assert [q.query_id for q in dress.queries] == ["dress/val/1"]  # 0 lacks its target, 2 its reference
    assert dress.gallery == ["d4", "d1", "d3"]
    assert (dress.n_queries_total, dress.missing_images) == (3, ["d2"])
    assert "d2" not in dress.image_paths
    assert (len(shirt.queries), shirt.n_queries_total, shirt.missing_images) == (1, 1, [])


def test_skip_with_no_usable_query_at_all_is_an_error(small):
    for image in (small / "images").iterdir():
        image.unlink()
    with pytest.raises(DataError, match="nothing to evaluate"):
        load_eval_splits(small, missing="skip")


def test_unknown_missing_mode(small):
    with pytest.raises(ValueError, match="missing must be one of"):
        load_eval_splits(small, missing="ignore")


# ---- training triplets ----

def test_train_triplets_carry_paths_raw_captions_and_category(tmp_path):
    write_category(tmp_path, "dress", "train", [query("a", "b", ["c1", "c2"])], ["a", "b"])
    write_category(tmp_path, "shirt", "train", [query("c", "d")], ["c", "d"])
    write_images(tmp_path, ["a", "b", "c", "d"])
    dress, shirt = read_fashioniq_train(tmp_path)
    assert (dress.reference_path, dress.target_path) == (tmp_path / "images" / "a.png", tmp_path / "images" / "b.png")
    assert (dress.texts, dress.category, dress.reference_id, dress.target_id) == (("c1", "c2"), "dress", "a", "b")
    assert shirt.category == "shirt"


def test_train_needs_only_reference_and_target_images(tmp_path):
    write_category(tmp_path, "dress", "train", [query("a", "b"), query("b", "c")], ["a", "b", "c", "unused"])
    write_images(tmp_path, ["a", "b"])
    with pytest.raises(DataError, match=r"dress: 0 of 2 reference, 1 of 2 target images missing \(first: c\)"):
        read_fashioniq_train(tmp_path)
    assert [t.target_id for t in read_fashioniq_train(tmp_path, missing="skip")] == ["b"]


def test_train_entries_need_a_target(tmp_path):
    write_category(tmp_path, "dress", "test", [query("a")], ["a"])
    with pytest.raises(DataError, match="missing key 'target'"):
        read_fashioniq_train(tmp_path, split="test")


# ---- the real annotation files ----

@pytest.fixture(scope="module")
def real_annotations() -> Path:
    if not (REAL_FASHIONIQ / "captions").is_dir():
        pytest.skip(f"real FashionIQ annotations not found at {REAL_FASHIONIQ.resolve()}")
    return REAL_FASHIONIQ


class EveryImagePresent(dict):
    """An images-folder index in which every id has a file (the real images are not here)."""

    def __contains__(self, image_id):
        return True

    def __missing__(self, image_id):
        return Path("images") / f"{image_id}.png"


def test_real_val_counts(real_annotations, monkeypatch):
    monkeypatch.setattr(fashioniq, "index_image_folder", lambda folder: EveryImagePresent())
    splits = load_eval_splits(real_annotations)
    counts = {s.category: (len(s.queries), len(s.gallery), s.n_queries_total, len(s.missing_images)) for s in splits}
    assert counts == {"dress": (2017, 3817, 2017, 0), "shirt": (2038, 6346, 2038, 0), "toptee": (1961, 5373, 1961, 0)}


def test_real_val_without_images_reports_every_image_missing(real_annotations):
    with pytest.raises(DataError) as info:
        load_eval_splits(real_annotations)
    assert "dress: 3817 of 3817 gallery" in str(info.value) and "toptee: 5373 of 5373 gallery" in str(info.value)


def test_real_val_references_and_targets_are_all_in_their_gallery(real_annotations):
    for category in ("dress", "shirt", "toptee"):
        queries = json.loads((real_annotations / "captions" / f"cap.{category}.val.json").read_text())
        gallery = set(json.loads((real_annotations / "image_splits" / f"split.{category}.val.json").read_text()))
        outside = [q for q in queries if q["candidate"] not in gallery or q["target"] not in gallery]
        assert outside == [], f"{category}: {len(outside)} val queries reach outside their gallery"


def test_real_train_and_test_files_parse(real_annotations):
    counts = {}
    for split in ("train", "test"):
        for category in ("dress", "shirt", "toptee"):
            files = read_category(real_annotations, category, split, require_target=split == "train")
            counts[split, category] = len(files.annotations)
            if split == "test":
                assert all(a.target_id is None for a in files.annotations)
    assert counts == {
        ("train", "dress"): 5985, ("train", "shirt"): 5988, ("train", "toptee"): 6027,
        ("test", "dress"): 2024, ("test", "shirt"): 2038, ("test", "toptee"): 2056,
    }


def test_category_names_cannot_lead_outside_the_root(small):
    with pytest.raises(DataError, match="category or split name '../../etc' is not a plain file name"):
        load_eval_splits(small, categories=["../../etc"])


def test_test_split_entries_without_target_may_repeat(tmp_path):
    """The real FashionIQ test files repeat a few target-less entries; they are never scored."""
    write_category(tmp_path, "dress", "test", [{"candidate": "d1", "captions": ["x"]}] * 2, ["d1"])
    write_images(tmp_path, ["d1"])
    assert len(load_eval_splits(tmp_path, split="test")[0].queries) == 2


def test_same_pair_with_other_captions_is_not_a_repeat(tmp_path):
    write_category(tmp_path, "dress", "val", [query("d1", "d2", ["a"]), query("d1", "d2", ["b"])], ["d1", "d2"])
    write_images(tmp_path, ["d1", "d2"])
    assert len(load_eval_splits(tmp_path)[0].queries) == 2
