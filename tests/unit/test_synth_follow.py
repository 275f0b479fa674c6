"""The text-following probe (`cirbench synth-probe --model`): an oracle follows every instruction,
a text-blind ranker is exactly at its control, and the CLI runs it on a registered model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cirbench.backbones.blip2 import SYNTH_BACKBONE_ENV
from cirbench.backbones.clip import SYNTH_CLIP_ENV
from cirbench.cli import app
from cirbench.synth.follow import follow_probe
from cirbench.synth.mentions import mention_holds, parse_mentions
from cirbench.synth.probe import probe_images
from cirbench.synth.text import instruction

runner = CliRunner()


@pytest.fixture
def world(tiny_world) -> Path:
    return tiny_world


def _truth(world: Path) -> dict[str, dict]:
    return {g.category: {p.stem: garment for p, garment in zip(g.paths, g.garments)} for g in probe_images(world)}


def test_every_instruction_reads_back_as_its_value():
    for attribute, value in [("colour", "light blue"), ("sleeve", "long"), ("neckline", "v-neck"), ("length", "maxi")]:
        (mention,) = parse_mentions(instruction(attribute, value), "dress")
        assert (mention.attribute, mention.relation, mention.value) == (attribute, "is", value)


def test_an_oracle_follows_every_instruction(world):
    truth = _truth(world)

    def oracle(category, refs, text):
        claims = parse_mentions(text, category)
        garments = truth[category]
        others = {ref: [i for i in garments if i != ref] for ref in refs}
        # the only image with the value may be the reference itself, which is not counted
        return [next((i for i in others[ref] if all(mention_holds(m, garments[ref], garments[i]) for m in claims)),
                     others[ref][0]) for ref in refs]

    probe = follow_probe(probe_images(world), oracle, "oracle")
    assert set(probe.followed) == {"colour", "pattern", "sleeve", "neckline", "length", "fit"}
    assert set(probe.followed.values()) == {100.0}
    assert all(control < 100.0 for control in probe.control.values())


def test_a_text_blind_ranker_is_exactly_at_its_control(world):
    truth = _truth(world)

    def blind(category, refs, text):  # the next image of the split, whatever the text
        ids = list(truth[category])
        return [ids[(ids.index(ref) + 1) % len(ids)] for ref in refs]

    probe = follow_probe(probe_images(world), blind, "blind", references=10)
    for attribute, followed in probe.followed.items():
        assert followed == pytest.approx(probe.control[attribute])
    # the instruction count: references lacking each value, summed over values and categories
    lacking = sum(sum(getattr(g, "colour") != value for g in list(garments.values())[:10])
                  for garments in truth.values() for value in {g.colour for g in garments.values()})
    assert probe.queries["colour"] == lacking


def test_cli_probes_a_registered_model(world, monkeypatch):
    for variable in (SYNTH_BACKBONE_ENV, SYNTH_CLIP_ENV):  # the command points them at the world; restored after
        monkeypatch.delenv(variable, raising=False)
    result = runner.invoke(app, ["synth-probe", "--world", str(world), "--model", "clip_image_only:test_tiny",
                                 "--references", "6", "--json"])
    assert result.exit_code == 0, result.output
    probe = json.loads(result.output)
    assert probe["model"] == "clip_image_only:test_tiny" and probe["references"] == 6
    for attribute, followed in probe["followed"].items():  # image-only: the text changes nothing
        assert followed == pytest.approx(probe["control"][attribute])
