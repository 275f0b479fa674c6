"""Source readers: real layouts in, records with ids, categories, products and metadata out."""

from __future__ import annotations

import pytest
from facap_fixtures import write_deepfashion_mm, write_fashion200k, write_folder

from cirbench.data.schema import DataError
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
