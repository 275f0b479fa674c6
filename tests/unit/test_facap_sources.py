"""Source readers: real layouts in, records with ids, categories, products and metadata out."""

from __future__ import annotations

import json

import pytest
from facap_fixtures import write_deepfashion_mm, write_fashion200k, write_folder

from cirbench.errors import DataError
from cirbench.facap.sources import limit_records, read_deepfashion_mm, read_fashion200k, read_folder


def test_fashion200k_records_share_product_ids_across_views(tmp_path):
    source = read_fashion200k(write_fashion200k(tmp_path / "f200k"))
    by_id = {r.image_id: r for r in source.records}
    assert len(by_id) == 13 and source.missing == []
    view = by_id["fashion200k/women/dresses/casual/1001/1001_2.jpeg"]
    assert (view.category, view.product_id, view.description) == ("dress", "1001", "black floral maxi dress")
    assert view.path.is_file()
    assert {r.product_id for r in source.records if r.category == "top"} == {"2001", "2002", "2003"}


def test_fashion200k_reports_listed_images_that_are_not_on_disk(tmp_path):
    root = write_fashion200k(tmp_path / "f200k")
    (root / "women/tops/casual/2003/2003_0.jpeg").unlink()
    source = read_fashion200k(root)
    assert source.missing == ["fashion200k/women/tops/casual/2003/2003_0.jpeg"]
    assert len(source.records) == 12


def test_fashion200k_bad_line_names_file_and_line(tmp_path):
    root = write_fashion200k(tmp_path / "f200k")
    label = root / "labels" / "top_train_detect_all.txt"
    label.write_text(label.read_text() + "only-a-path.jpeg\n")
    with pytest.raises(DataError, match=r"top_train_detect_all.txt: line 6: expected 3 tab-separated"):
        read_fashion200k(root)


def test_deepfashion_reads_labels_for_the_garment_of_the_category(tmp_path):
    source = read_deepfashion_mm(write_deepfashion_mm(tmp_path / "dfmm"))
    by_id = {r.image_id: r for r in source.records}
    dress = by_id["deepfashion_mm/image/WOMEN-Dresses-id_00000001-01_1_front.jpg"]
    assert dress.product_id == "WOMEN-Dresses-id_00000001" and dress.category == "dress"
    assert dict(dress.attributes) == {"length": "full-length", "sleeve": "sleeveless", "neckline": "v-neck",
                                      "material": "chiffon", "pattern": "floral"}
    assert dress.description == "The lady wears a red sleeveless dress."
    skirt = by_id["deepfashion_mm/image/WOMEN-Skirts-id_00000003-01_1_front.jpg"]
    # lower-body garment: lower-clothing labels, no sleeve or neckline
    assert dict(skirt.attributes) == {"length": "knee-length", "material": "denim", "pattern": "striped"}


def test_deepfashion_accepts_images_folder_and_rejects_foreign_names(tmp_path):
    root = write_deepfashion_mm(tmp_path / "dfmm", image_dir="images")
    assert len(read_deepfashion_mm(root).records) == 5
    (root / "images" / "holiday.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="holiday.jpg: not a DeepFashion-MultiModal image name"):
        read_deepfashion_mm(root)


def test_folder_source_and_its_errors(tmp_path):
    root = write_folder(tmp_path / "shop")
    source = read_folder(root, root / "meta.jsonl")
    assert [r.category for r in source.records] == ["coat", "dress"] * 3
    assert source.records[0].image_id == "folder/img/0.png" and source.records[0].attributes == {"pattern": "solid"}
    (root / "bad.jsonl").write_text('{"path": "img/0.png", "category": "dress"}\n{"path": 3}\n')
    with pytest.raises(DataError, match=r"bad.jsonl: line 2: expected an object"):
        read_folder(root, root / "bad.jsonl")


def test_limit_takes_the_same_first_images_by_id(tmp_path):
    records = read_fashion200k(write_fashion200k(tmp_path / "f200k")).records
    first = limit_records(list(reversed(records)), 4)
    assert [r.image_id for r in first] == sorted(r.image_id for r in records)[:4]


# --- every path a source names stays under its root -------------------------------------------


def _outside_secret(tmp_path):
    secret = tmp_path / "outside_secret.jpeg"
    secret.write_bytes(b"not yours")
    return secret


@pytest.mark.parametrize("path", ["../outside_secret.jpeg", "img/../../outside_secret.jpeg", "ABSOLUTE", "link/0.png"])
def test_folder_metadata_paths_leaving_the_root_are_refused_with_file_and_line(tmp_path, path):
    root = write_folder(tmp_path / "shop")
    secret = _outside_secret(tmp_path)
    (root / "link").symlink_to(tmp_path, target_is_directory=True)  # a folder link pointing out of root
    (tmp_path / "0.png").write_bytes(b"x")
    path = str(secret) if path == "ABSOLUTE" else path
    (root / "evil.jsonl").write_text('{"path": "img/1.png", "category": "dress"}\n'
                                     + json.dumps({"path": path, "category": "dress"}) + "\n")
    with pytest.raises(DataError, match=r"evil.jsonl: line 2: image path .*(escapes the data root|resolves outside)"):
        read_folder(root, root / "evil.jsonl")


def test_a_symlinked_image_inside_the_root_pointing_out_is_refused(tmp_path):
    root = write_folder(tmp_path / "shop")
    (root / "img" / "9.png").symlink_to(_outside_secret(tmp_path))
    (root / "linked.jsonl").write_text('{"path": "img/9.png", "category": "dress"}\n')
    with pytest.raises(DataError, match=r"linked.jsonl: line 1: .*resolves outside the source root"):
        read_folder(root, root / "linked.jsonl")
    # a link that stays inside the root is an ordinary file
    (root / "img" / "10.png").symlink_to(root / "img" / "0.png")
    (root / "inside.jsonl").write_text('{"path": "img/10.png", "category": "dress"}\n')
    assert [r.image_id for r in read_folder(root, root / "inside.jsonl").records] == ["folder/img/10.png"]


@pytest.mark.parametrize("category", ["../../../sec/evil", "a/b", "", "  ", ".hidden", "a\\b"])
def test_folder_categories_must_be_plain_names(tmp_path, category):
    root = write_folder(tmp_path / "shop")
    (root / "cat.jsonl").write_text(json.dumps({"path": "img/0.png", "category": category}) + "\n")
    with pytest.raises(DataError, match=r"cat.jsonl: line 1: category"):
        read_folder(root, root / "cat.jsonl")


@pytest.mark.parametrize("line", ["../outside_secret.jpeg\t0.9\tstolen", "/etc/passwd\t0.9\tstolen",
                                  "women/link/x.jpeg\t0.9\tstolen"])
def test_fashion200k_label_lines_leaving_the_root_are_refused(tmp_path, line):
    root = write_fashion200k(tmp_path / "f200k")
    _outside_secret(tmp_path)
    (root / "women" / "link").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "x.jpeg").write_bytes(b"x")
    label = root / "labels" / "dress_train_detect_all.txt"
    label.write_text(label.read_text() + line + "\n")
    n_lines = len(label.read_text().splitlines())
    with pytest.raises(DataError, match=rf"dress_train_detect_all.txt: line {n_lines}: image path"):
        read_fashion200k(root)


def test_deepfashion_image_linking_out_of_the_root_is_refused(tmp_path):
    root = write_deepfashion_mm(tmp_path / "dfmm")
    (root / "image" / "WOMEN-Dresses-id_00000009-01_1_front.jpg").symlink_to(_outside_secret(tmp_path))
    with pytest.raises(DataError, match=r"WOMEN-Dresses-id_00000009-01_1_front.jpg: image path .*resolves outside"):
        read_deepfashion_mm(root)


def test_source_files_that_are_not_utf8_name_the_line(tmp_path):
    root = write_fashion200k(tmp_path / "f200k")
    label = root / "labels" / "top_train_detect_all.txt"
    label.write_bytes(label.read_bytes() + b"women/x.jpeg\t0.9\t\xff\xfe\n")
    with pytest.raises(DataError, match=r"top_train_detect_all.txt: line 6, byte 17: not UTF-8"):
        read_fashion200k(root)
