"""Table 1 statistics, the quality sheet and report (Table 2), automatic faithfulness."""

from __future__ import annotations

import csv
import json

import pytest
from facap_fixtures import write_image

from cirbench.errors import DataError
from cirbench.facap.quality import (
    Faithfulness, QualityItem, auto_faithfulness, load_items, read_ground_truth, stratified_sample,
    summarise_ratings, target_claims, write_sheet,
)
from cirbench.facap.dataset_stats import facap_stats, fashioniq_stats, text_stats


def _facap_folder(root, n_per_category=None):
    """cats dress (6 triplets) and top (3), images a.png.. on disk under root/src."""
    n_per_category = n_per_category or {"dress": 6, "top": 3}
    (root / "cir_triplets").mkdir(parents=True)
    (root / "image_captions").mkdir()
    (root / "manifest.json").write_text(json.dumps({"image_roots": {"src": str(root / "src")}}))
    for category, n in n_per_category.items():
        triplets = [{"candidate": f"src/{category}{i}.png", "target": f"src/{category}{i + 1}.png", "captions": [f"make it red {i}"]} for i in range(n)]
        for i in range(n + 1):
            write_image(root / "src" / f"{category}{i}.png", "red" if i % 2 else "blue")
        (root / f"cir_triplets/{category}_train_triplets.json").write_text(json.dumps(triplets))
        captions = {f"src/{category}{i}.png": "A red dress with long sleeves." for i in range(n + 1)}
        (root / f"image_captions/{category}_train_captions.json").write_text(json.dumps(captions))
    return root


def test_text_stats_count_words_and_vocabulary():
    assert text_stats(["Is red.", "is shorter, and RED"]) == text_stats(["is red", "is shorter and red"])
    stats = text_stats(["Is red.", "is shorter, and RED"])
    assert (stats.count, stats.vocabulary, stats.average_length) == (2, 4, 3.0)
    assert text_stats([]).average_length is None


def test_facap_stats_in_table_one_columns(tmp_path):
    stats = facap_stats(_facap_folder(tmp_path / "f"))
    assert (stats.unique_images, stats.triplets, stats.image_caption_pairs) == (7 + 4, 9, 11)
    assert stats.modification_texts.vocabulary == 3 + 6  # make, it, red + the numbers 0-5
    assert stats.modification_texts.average_length == 4.0
    assert (stats.captions.vocabulary, stats.captions.average_length) == (6, 6.0)


def test_fashioniq_stats_on_the_real_train_split(real_fashioniq):
    stats = fashioniq_stats(real_fashioniq, "train")
    assert stats.triplets == 18_000 and stats.modification_texts.count == 36_000  # paper Table 1: 18,000
    assert 3_000 < stats.modification_texts.vocabulary < 5_000 and 4 < stats.modification_texts.average_length < 7


def test_sheet_is_stratified_by_category_and_self_contained(tmp_path):
    items = load_items(_facap_folder(tmp_path / "f"))
    sample = stratified_sample(items, 6, seed=0)
    assert [i.category for i in sample] == ["dress"] * 4 + ["top"] * 2
    assert stratified_sample(items, 6, seed=0) == sample and len(stratified_sample(items, 100)) == 9
    csv_path, html_path = write_sheet(sample, tmp_path / "sheets" / "s1")
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == 6 and rows[0]["faithfulness"] == "" and rows[0]["text"].startswith("make it red")
    html = html_path.read_text()
    assert html.count("src='data:image/jpeg;base64,") == 12 and "make it red" in html and "http" not in html


def _filled(path, dataset, ratings):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["item", "dataset", "faithfulness", "details", "saliency"])
        writer.writeheader()
        for i, (f, d, s) in enumerate(ratings):
            writer.writerow({"item": i, "dataset": dataset, "faithfulness": f, "details": d, "saliency": s})
    return path


def test_report_pools_raters_into_mean_and_std_per_criterion(tmp_path):
    a = _filled(tmp_path / "a.csv", "FACap", [(5, 4, 4), (4, 4, "")])
    b = _filled(tmp_path / "b.csv", "FACap", [(3, 4, 5)])
    c = _filled(tmp_path / "c.csv", "FashionIQ", [(5, 2, 3)])
    summary = summarise_ratings([a, b, c])
    assert str(summary["FACap"]["faithfulness"]) == "4.00 ± 1.00"
    assert str(summary["FACap"]["details"]) == "4.00 ± 0.00" and summary["FACap"]["saliency"].ratings == 2
    assert str(summary["FashionIQ"]["details"]) == "2.00"
    bad = _filled(tmp_path / "bad.csv", "FACap", [(6, 1, 1)])
    with pytest.raises(DataError, match=r"bad.csv: line 2 \(faithfulness\): rating must be 1-5"):
        summarise_ratings([bad])


def test_claims_after_instead_of_name_the_reference():
    text = "Change the colour to red instead of black and the sleeves to long sleeves, with a v-neck"
    assert target_claims(text) == {("colour", "red"), ("sleeve", "long sleeves"), ("neckline", "v-neck")}


def test_faithfulness_precision_and_recall_against_ground_truth():
    score = Faithfulness()
    reference = {"colour": "black", "sleeve": "short sleeves", "pattern": "solid"}
    target = {"colour": "red", "sleeve": "long sleeves", "pattern": "solid"}
    score.add("Make it red instead of black with a floral pattern", reference, target)
    assert (score.claims, score.true_claims, score.changes, score.changes_named) == (2, 1, 2, 1)
    assert (score.precision, score.recall) == (0.5, 0.5)


def test_auto_faithfulness_reads_a_world_ground_truth(tmp_path):
    world = tmp_path / "world"
    records = [{"path": "src/a.png", "attributes": {"colour": "black", "sleeve": "short", "neckline": None}},
               {"path": "src/b.png", "attributes": {"colour": "red", "sleeve": "long", "neckline": None}}]
    (world / "ground_truth").mkdir(parents=True)
    (world / "ground_truth/attributes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    truth = read_ground_truth(world)
    assert truth[(world / "src/b.png").resolve()] == {"colour": "red", "sleeve": "long sleeves"}
    item = QualityItem("0", "FACap", "top", "a", "b", "Change the colour to red instead of black.", str(world / "src/a.png"), str(world / "src/b.png"))
    scores = auto_faithfulness([vars(item), vars(item)], truth)  # the same triplet in two raters' sheets counts once
    assert (scores["FACap"].precision, scores["FACap"].recall, scores["FACap"].changes) == (1.0, 0.5, 2)
