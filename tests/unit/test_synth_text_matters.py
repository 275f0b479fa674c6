"""The default world makes the modification text necessary (issue 16): every FashionIQ-like target
differs from its reference in colour or print, the val gallery holds look-alikes of each new
reference (its colour and print in another cut), a reference's targets differ from one another,
and none of it touches the shop sources the shipped tiny backbones were pre-trained on."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from functools import lru_cache

import pytest

from cirbench.synth.tiny_backbones import PROVENANCE, SHIPPED, sources_fingerprint
from cirbench.synth.mentions import mention_holds, parse_mentions
from cirbench.synth.presets import PRESETS, Knobs
from cirbench.synth.world import SOURCE_KNOBS, plan_world

VISIBLE = ("colour", "pattern")
DEFAULT = PRESETS["default"]


@lru_cache(maxsize=1)
def default_plan():
    return plan_world("default", 0, DEFAULT)  # drawn, not rendered: about a second


def _val_splits():
    return [s for s in default_plan().fashioniq if s.split == "val"]


def test_every_target_differs_from_its_reference_in_colour_or_print():
    for split in default_plan().fashioniq:
        for reference, target in split.pairs:
            changed = split.images[reference].differing(split.images[target])
            assert set(changed) & set(VISIBLE), (split.category, split.split, changed)
            assert len([a for a in changed if a not in VISIBLE]) <= 2


def test_the_vague_texts_name_the_new_colour_or_print_often_enough():
    named = total = 0
    for split in _val_splits():
        for (reference, target), captions in zip(split.pairs, split.captions):
            ref, tgt = split.images[reference], split.images[target]
            changed = [a for a in VISIBLE if getattr(ref, a) != getattr(tgt, a)]
            claims = [m for text in captions for m in parse_mentions(text, split.category)]
            named += any(m.attribute in changed and m.relation == "is" and mention_holds(m, ref, tgt) for m in claims)
            total += 1
    # vague on purpose (omissions, "is darker", wrong colour names), but a reader has something to read
    assert 0.5 < named / total < 0.8, named / total


def test_each_new_val_reference_has_lookalikes_that_only_the_text_tells_from_its_targets():
    for split in _val_splits():
        garments = list(split.images.values())
        references = {reference for reference, _ in split.pairs}
        targets = {target for _, target in split.pairs}
        with_lookalikes = 0
        for reference in references:
            ref = split.images[reference]
            lookalikes = [g for image, g in split.images.items() if image not in targets and g != ref
                          and all(getattr(g, a) == getattr(ref, a) for a in VISIBLE)
                          and 1 <= len(ref.differing(g)) <= 2]
            with_lookalikes += len(lookalikes) >= DEFAULT.lookalikes
        assert with_lookalikes >= 0.5 * len(references)  # reused references (a target, a twin) have none
        assert len(garments) >= DEFAULT.fiq_val_gallery


def test_a_references_targets_differ_from_one_another():
    for split in default_plan().fashioniq:
        by_reference: dict[str, list] = {}
        for reference, target in split.pairs:
            by_reference.setdefault(reference, []).append(split.images[target])
        families = [targets for targets in by_reference.values() if len(targets) > 1]
        assert families and max(map(len, families)) >= DEFAULT.targets_per_reference
        assert sum(len(set(t)) == len(t) for t in families) >= 0.95 * len(families)


def test_image_similarity_alone_is_far_below_the_texts():
    """What a ranker that sees only colour and print (as the tiny backbones do) reaches on val,
    with the vague texts and with no text at all (the attribute oracle restricted to those two)."""
    def score(claims, ref, cand):
        claimed = {m.attribute for m in claims}
        kept = sum(getattr(cand, a) == getattr(ref, a) for a in VISIBLE if a not in claimed)
        return 2 * sum(mention_holds(m, ref, cand) for m in claims if m.attribute in VISIBLE) + kept

    def recall_at_10(with_text: bool) -> float:
        hits = []
        for split in _val_splits():
            gallery = list(split.images.values())
            for (reference, target), captions in zip(split.pairs, split.captions):
                ref, tgt = split.images[reference], split.images[target]
                claims = [m for t in captions for m in parse_mentions(t, split.category)] if with_text else []
                s = score(claims, ref, tgt)
                higher = sum(score(claims, ref, g) > s for g in gallery)
                tied = sum(score(claims, ref, g) == s for g in gallery)
                hits.append(min(1.0, max(0.0, (10 - higher) / tied)))
        return 100 * sum(hits) / len(hits)

    with_text, without = recall_at_10(True), recall_at_10(False)
    assert without < 5 and with_text > 30, (with_text, without)


@pytest.mark.parametrize("knob", [f.name for f in fields(Knobs) if f.name not in SOURCE_KNOBS])
def test_the_fashioniq_knobs_leave_the_shop_sources_and_their_fingerprint_unchanged(knob):
    tiny = PRESETS["tiny"]
    value = getattr(tiny, knob)
    changed = replace(tiny, **{knob: (value + 1 if isinstance(value, int) else 0.5 * value + 0.25)})
    a, b = plan_world("tiny", 0, tiny), plan_world("tiny", 0, changed)
    for source in ("fashion200k", "deepfashion_mm"):
        assert a.sources[source].records == b.sources[source].records
        assert a.sources[source].images == b.sources[source].images
    assert sources_fingerprint(a.settings()) == sources_fingerprint(b.settings())
    assert sources_fingerprint(a.settings()) != sources_fingerprint({**a.settings(), "seed": 1})


def test_the_shipped_backbones_are_those_of_the_default_worlds_sources():
    from cirbench.backbones.blip2_tokenizers import build_tiny_tokenizer
    from cirbench.synth.vocabulary import VOCABULARY_VERSION, generator_words

    provenance = json.loads((SHIPPED / PROVENANCE).read_text())["backbones"]
    assert provenance["sources"] == sources_fingerprint(default_plan().settings())
    assert provenance["vocabulary"] == VOCABULARY_VERSION
    shipped = json.loads((SHIPPED / "blip2" / "tokenizer.json").read_text())["model"]["vocab"]
    assert build_tiny_tokenizer(generator_words()).vocab == shipped  # same token ids as when it was pre-trained


def test_every_word_of_the_default_worlds_fashioniq_texts_is_a_generator_word():
    from cirbench.backbones.blip2_tokenizers import words_of
    from cirbench.synth.text import vague_phrases
    from cirbench.synth.vocabulary import generator_words

    texts = [t for split in default_plan().fashioniq for captions in split.captions for t in captions]
    known = set(generator_words())
    assert set(words_of(vague_phrases())) <= known
    swapped = {"".join(sorted(word)) for word in known}  # a typo swaps two neighbouring letters
    unknown = set(words_of(texts)) - known
    assert all("".join(sorted(word)) in swapped for word in unknown), unknown
