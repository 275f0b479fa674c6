"""The backbone attribute probe (`cirbench synth-probe`) against naive references, and the
image-only attribute oracle of `cirbench synth-stats`."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cirbench.cli import app
from cirbench.synth.attributes import ATTRIBUTES, Garment
from cirbench.synth.mentions import mention_holds, parse_mentions
from cirbench.synth.presets import Knobs
from cirbench.synth.probe import chance_agreement, probe_attributes, probe_images
from cirbench.synth.text_stats import Pair, image_only_oracle
from cirbench.synth.world import GarmentSampler, garment_of, load_ground_truth

runner = CliRunner()


@pytest.fixture
def world(tiny_world) -> Path:
    return tiny_world


def _garments_by_path(world: Path) -> dict[Path, Garment]:
    return {world / r["path"]: garment_of(r) for r in load_ground_truth(world)}


def test_chance_agreement_matches_counting_every_pair():
    sampler = GarmentSampler(Knobs(), random.Random(3))
    garments = [sampler.fresh("dress") for _ in range(40)]
    for attribute in ATTRIBUTES:
        pairs = [(a, b) for i, a in enumerate(garments) for j, b in enumerate(garments) if i != j]
        naive = 100.0 * sum(getattr(a, attribute) == getattr(b, attribute) for a, b in pairs) / len(pairs)
        assert chance_agreement(garments, attribute) == pytest.approx(naive)


def test_a_scorer_that_reads_every_attribute_agrees_on_every_attribute(world):
    garments = _garments_by_path(world)

    def oracle(paths, captions):
        # one point per claim of the caption that holds for the image (the mentions lexicon reads the caption)
        claims = [parse_mentions(c, garments[paths[0]].category) for c in captions]
        return torch.tensor([[float(sum(mention_holds(m, garments[p], garments[p]) for m in cs)) for p in paths]
                             for cs in claims])

    probe = probe_attributes(world, oracle, "oracle")
    assert probe.captions == sum(len(g.paths) for g in probe_images(world))
    assert probe.exact_at_1 == probe.exact_at_10 == 100.0
    assert set(probe.agreement.values()) == {100.0}


def test_a_text_blind_scorer_agrees_only_as_often_as_its_fixed_choice(world):
    def first_image(paths, captions):
        return torch.arange(len(paths), 0, -1, dtype=torch.float).expand(len(captions), -1)

    probe = probe_attributes(world, first_image, "blind")
    groups = probe_images(world)
    for attribute in ATTRIBUTES:
        hits = [getattr(g.garments[0], attribute) == getattr(w, attribute)
                for g in groups for w in g.garments if getattr(w, attribute) is not None]
        if hits:
            assert probe.agreement[attribute] == pytest.approx(100.0 * sum(hits) / len(hits))
    exact = [g.garments[0] == w for g in groups for w in g.garments]
    assert probe.exact_at_1 == pytest.approx(100.0 * sum(exact) / len(exact))


def test_image_only_oracle_ranks_the_reference_first():
    reference = Garment("dress", "red", "solid", "fitted", "knee", "short", "round")
    target = reference.with_values(colour="blue")
    other = Garment("dress", "green", "dots", "loose", "maxi", "long", "v-neck")
    pair = Pair("dress", "val", reference, target, ["is blue"], [""], [reference, target, other])
    assert image_only_oracle([pair]) == {"oracle_recall_at_1": 0.0, "oracle_recall_at_10": 100.0}
    assert image_only_oracle([Pair("dress", "train", reference, target, [], [], [target])]) == {
        "oracle_recall_at_1": 0.0, "oracle_recall_at_10": 0.0}  # train pairs are not measured


def test_cli_probes_both_backbones_and_names_the_missing_ones(world, monkeypatch, tmp_path):
    from cirbench.backbones.blip2 import SYNTH_BACKBONE_ENV
    from cirbench.backbones.clip import SYNTH_CLIP_ENV

    world = Path(shutil.copytree(world, tmp_path / "world"))  # backbones get written into it

    for name in (SYNTH_BACKBONE_ENV, SYNTH_CLIP_ENV):  # ensure_backbones sets them; restored after the test
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))  # its record of installed backbones too
    missing = runner.invoke(app, ["synth-probe", "--world", str(world)])
    assert missing.exit_code == 1 and "cirbench synth-backbones" in missing.output
    from cirbench.synth.tiny_backbones import BackboneRecipe, ensure_backbones

    ensure_backbones(world, BackboneRecipe(steps=2, batch_size=8))
    result = runner.invoke(app, ["synth-probe", "--world", str(world), "--json"])
    assert result.exit_code == 0, result.output
    probes = json.loads(result.stdout)
    assert [p["backbone"] for p in probes] == ["tiny blip2", "tiny clip"]
    assert all(0 <= v <= 100 for p in probes for v in p["agreement"].values())
    table = runner.invoke(app, ["synth-probe", "--world", str(world), "--backbone", "clip"])
    assert table.exit_code == 0 and "sleeve" in table.output and "chance" in table.output
    bad = runner.invoke(app, ["synth-probe", "--world", str(world), "--backbone", "vit"])
    assert bad.exit_code == 1 and "blip2, clip or both" in bad.output
