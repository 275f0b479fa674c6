"""The synthetic world: vocabulary validity, sampling, texts, the three formats, determinism."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest

from cirbench.errors import DataError
from cirbench.synth import text
from cirbench.synth.attributes import ATTRIBUTES, CATEGORIES, Garment, valid_values
from cirbench.synth.mentions import Mention, mention_holds, parse_mentions
from cirbench.synth.presets import PRESETS, Knobs, resolve_knobs
from cirbench.synth.text_stats import world_text_stats
from cirbench.synth.world import (
    GarmentSampler,
    image_caption_pairs,
    plan_world,
    write_world,
)

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    write_world(out, "tiny", 0, TINY, workers=1)
    return out


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def sampler(seed: int = 0) -> GarmentSampler:
    return GarmentSampler(Knobs(), random.Random(seed))


# ----------------------------------------------------------------------------- vocabulary


def test_lower_body_garments_have_no_sleeves_or_neckline():
    for category in ("skirt", "pants"):
        assert valid_values(category, "sleeve") == valid_values(category, "neckline") == ()
        with pytest.raises(ValueError, match="neckline"):
            Garment(category, "red", "solid", "fitted", valid_values(category, "length")[0], neckline="round")
    with pytest.raises(ValueError, match="sleeve"):
        Garment("dress", "red", "solid", "fitted", "mini", sleeve=None, neckline="round")
    with pytest.raises(ValueError, match="length"):
        Garment("pants", "red", "solid", "fitted", "maxi")


def test_sampled_garments_use_only_values_in_use():
    knobs = Knobs(n_colours=3, max_values=2)
    draw = GarmentSampler(knobs, random.Random(1))
    for category in CATEGORIES:
        for _ in range(30):
            garment = draw.fresh(category)
            assert garment.colour in ("black", "white", "red")
            for attribute in ATTRIBUTES[1:]:
                assert getattr(garment, attribute) in (valid_values(category, attribute)[:2] or (None,))


def test_near_duplicates_differ_in_exactly_one_attribute():
    draw = sampler()
    for category in CATEGORIES:
        for _ in range(40):
            garment = draw.fresh(category)
            assert len(draw.near_duplicate(garment).differing(garment)) == 1


def test_pair_targets_differ_in_one_to_three_attributes():
    draw = sampler()
    counts = [len(g.differing(draw.modified(g))) for c in CATEGORIES for g in (draw.fresh(c) for _ in range(40))]
    assert set(counts) == {1, 2, 3}


# ----------------------------------------------------------------------------- texts


def test_every_generated_phrase_reads_back_as_meant():
    for attribute, table in text._VAGUE_VALUE.items():
        for value, phrases in table.items():
            categories = [c for c in CATEGORIES if value in valid_values(c, attribute)]
            for phrase in phrases:
                for category in categories:
                    assert parse_mentions(phrase, category) == [Mention(attribute, "is", value)], (phrase, category)
    for (attribute, relation), phrases in text._VAGUE_RELATIVE.items():
        for phrase in phrases:
            assert parse_mentions(phrase, "dress") == [Mention(attribute, relation)], phrase
    for phrase in text._PATTERNED:
        assert parse_mentions(phrase, "dress") == [Mention("pattern", "not", "solid")], phrase
    for phrase in text._TASTE:
        assert parse_mentions(phrase, "dress") == [], phrase


def test_detailed_texts_state_every_change_and_nothing_false():
    draw, rng = sampler(3), random.Random(3)
    for category in CATEGORIES:
        for _ in range(30):
            reference = draw.fresh(category)
            target = draw.modified(reference)
            detailed = text.detailed_modification(reference, target, rng)
            claims = parse_mentions(detailed, category)
            assert all(mention_holds(m, reference, target) for m in claims), detailed
            assert {m.attribute for m in claims} >= set(reference.differing(target)), detailed


def test_relative_claims_are_checked_against_the_reference():
    reference = Garment("dress", "white", "solid", "fitted", "mini", sleeve="short", neckline="round")
    target = reference.with_values(colour="navy", sleeve="long")
    assert parse_mentions("is darker with longer sleeves", "dress") == [
        Mention("colour", "less"),
        Mention("sleeve", "more"),
    ]
    assert all(mention_holds(m, reference, target) for m in parse_mentions("is darker with longer sleeves", "dress"))
    assert not any(mention_holds(m, reference, target) for m in parse_mentions("is lighter, shorter sleeves", "dress"))
    assert parse_mentions("navy instead of white", "dress") == [Mention("colour", "is", "navy")]


def test_captions_name_every_attribute():
    garment = Garment("jacket", "light blue", "plaid", "loose", "long", sleeve="elbow", neckline="collar")
    claims = parse_mentions(text.detailed_caption(garment), "jacket")
    assert {m.attribute for m in claims} == set(ATTRIBUTES)
    assert all(mention_holds(m, garment, garment) for m in claims)


# ----------------------------------------------------------------------------- presets and formats


def test_presets_counts():
    plan = plan_world("tiny", 0, TINY)
    for split in plan.fashioniq:
        expected = {"train": TINY.fiq_train_pairs, "val": TINY.fiq_val_pairs, "test": TINY.fiq_test_pairs}
        assert len(split.pairs) == expected[split.split]
        assert {i for pair in split.pairs for i in pair} <= set(split.images)
        if split.split == "val":
            assert len(split.images) >= TINY.fiq_val_gallery
    counts = plan.counts()
    assert counts["fashion200k_products"] == 5 * TINY.f200k_products
    assert counts["deepfashion_mm_products"] == 6 * TINY.dfmm_products
    assert resolve_knobs("default").fiq_val_pairs == PRESETS["default"].fiq_val_pairs
    assert resolve_knobs("tiny", ["vagueness=0.9"], image_size=96) == Knobs(
        **{**TINY.to_json(), "vagueness": 0.9, "image_size": 96}
    )
    with pytest.raises(DataError, match="knob"):
        resolve_knobs("tiny", ["colours=3"])


def test_resizing_one_part_leaves_the_others_unchanged():
    small, bigger = (
        plan_world("tiny", 0, TINY),
        plan_world("tiny", 0, Knobs(**{**TINY.to_json(), "fiq_train_pairs": 30})),
    )
    for source in ("fashion200k", "deepfashion_mm"):
        assert small.sources[source].records == bigger.sources[source].records
    val = [s for s in small.fashioniq if s.split == "val"], [s for s in bigger.fashioniq if s.split == "val"]
    assert [(s.images, s.pairs, s.captions) for s in val[0]] == [(s.images, s.pairs, s.captions) for s in val[1]]


def test_fashioniq_format(world):
    root = world / "fashioniq"
    for category in ("dress", "shirt", "toptee"):
        for split in ("train", "val", "test"):
            entries = json.loads((root / "captions" / f"cap.{category}.{split}.json").read_text())
            images = json.loads((root / "image_splits" / f"split.{category}.{split}.json").read_text())
            assert all(isinstance(i, str) and (root / "images" / f"{i}.png").is_file() for i in images)
            for entry in entries:
                assert set(entry) == (
                    {"candidate", "captions"} if split == "test" else {"candidate", "target", "captions"}
                )
                assert len(entry["captions"]) == 2 and all(c.strip() for c in entry["captions"])
                assert entry["candidate"] in images and entry.get("target", entry["candidate"]) in images


def test_fashion200k_format(world):
    root = world / "fashion200k"
    lines = [line for f in sorted((root / "labels").glob("*_detect_all.txt")) for line in f.read_text().splitlines()]
    assert len(lines) == sum(1 for _ in root.glob("women/*/*/*/*.jpeg"))
    views: dict[str, int] = {}
    for line in lines:
        path, score, description = line.split("\t")
        assert 0.0 < float(score) <= 1.0 and description
        match = re.fullmatch(r"women/(dresses|jackets|pants|skirts|tops)/[a-z_-]+/(\d{8})/(\d{8})_\d\.jpeg", path)
        assert match and match[2] == match[3] and (root / path).is_file(), path
        views[match[2]] = views.get(match[2], 0) + 1
    assert all(2 <= n <= TINY.f200k_views for n in views.values())


def test_deepfashion_format(world):
    root = world / "deepfashion_mm"
    names = sorted(p.name for p in (root / "images").glob("*.jpg"))
    assert names and all(re.fullmatch(r"(MEN|WOMEN)-[A-Za-z_]+-id_\d{8}-\d{2}_\d_[a-z]+\.jpg", n) for n in names)
    captions = json.loads((root / "captions.json").read_text())
    assert sorted(captions) == names
    for label_file, width in (
        ("shape/shape_anno_all.txt", 12),
        ("texture/fabric_ann.txt", 3),
        ("texture/pattern_ann.txt", 3),
    ):
        rows = [line.split() for line in (root / "labels" / label_file).read_text().splitlines()]
        assert sorted(r[0] for r in rows) == names
        assert all(len(r) == width + 1 and all(v.isdigit() for v in r[1:]) for r in rows)


def test_ground_truth_lists_every_image_once(world):
    records = [json.loads(line) for line in (world / "ground_truth" / "attributes.jsonl").read_text().splitlines()]
    images = {p.relative_to(world).as_posix() for p in world.rglob("*") if p.suffix in (".png", ".jpg", ".jpeg")}
    assert sorted(r["path"] for r in records) == sorted(images)
    for r in records:
        assert set(r) == {"source", "image_id", "path", "product_id", "category", "attributes"}
        Garment(category=r["category"], **r["attributes"])  # valid for its category
    manifest = json.loads((world / "world.json").read_text())
    assert manifest["complete"] and manifest["settings"]["preset"] == "tiny"


def test_same_seed_writes_identical_files_and_another_seed_does_not(world, tmp_path):
    write_world(tmp_path / "again", "tiny", 0, TINY, workers=2)
    assert digests(tmp_path / "again") == digests(world)
    write_world(tmp_path / "other", "tiny", 1, TINY, workers=1)
    other = digests(tmp_path / "other")
    assert other["ground_truth/attributes.jsonl"] != digests(world)["ground_truth/attributes.jsonl"]


def test_image_caption_pairs_cover_the_shop_sources(world):
    pairs = image_caption_pairs(world)
    shop_images = list((world / "fashion200k").rglob("*.jpeg")) + list(
        (world / "deepfashion_mm" / "images").glob("*.jpg")
    )
    assert sorted(p for p, _ in pairs) == sorted(shop_images)
    assert all(len(caption.split()) >= 12 for _, caption in pairs)


def test_vague_texts_are_shorter_and_vaguer_than_detailed_ones(world):
    stats = world_text_stats(world)
    vague, detailed = stats["vague"], stats["detailed"]
    assert vague["mean_words"] * 3 < detailed["mean_words"]
    assert vague["change_recall"] < 0.95 and detailed["change_recall"] == 1.0
    assert detailed["wrong_claims"] == 0.0
    assert vague["claims_per_text"] < detailed["claims_per_text"]
