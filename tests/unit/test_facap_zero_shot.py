"""Zero-shot attributes for images without metadata, and the offline captioner using them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cirbench.facap.attribute_phrases import VOCABULARY
from cirbench.facap.backends import CaptionRequest
from cirbench.facap.backends.offline import OfflineCaptioner
from cirbench.facap.zero_shot import ZeroShotAttributes, dimensions_for, prompt

WORDS = sorted({w for values in VOCABULARY.values() for v in values for w in v.split()})


def _bag_of_words(text: str) -> np.ndarray:
    vector = np.zeros(len(WORDS), dtype=np.float32)
    for word in text.split():
        if word in WORDS:
            vector[WORDS.index(word)] = 1.0
    return vector


class WordClip:
    """A stand-in CLIP: images and texts embed as bags of vocabulary words, so an image 'shows'
    exactly the words of its file name."""

    name = "word-clip"

    def __init__(self):
        import torch

        class Backbone:
            def encode_text(self, texts):
                return torch.tensor(np.stack([_bag_of_words(t) for t in texts]))

        self.backbone = Backbone()

    def __call__(self, paths):
        return np.stack([_bag_of_words(Path(p).stem.replace("_", " ")) for p in paths])


def test_each_dimension_gets_the_value_the_image_matches_best():
    recognise = ZeroShotAttributes(WordClip())
    [found] = recognise([Path("red_striped_long_sleeves_v-neck_midi_loose.png")], ["dress"])
    assert found == {"colour": "red", "pattern": "striped", "sleeve": "long sleeves", "neckline": "v-neck",
                     "length": "midi", "fit": "loose"}
    [pants] = recognise([Path("black_plaid_cropped_fitted.png")], ["pants"])
    assert set(pants) == {"colour", "pattern", "length", "fit"} and pants["colour"] == "black"


def test_prompts_read_naturally():
    assert prompt("sleeve", "sleeveless", "dress") == "a photo of a sleeveless dress"
    assert prompt("sleeve", "long sleeves", "shirt") == "a photo of a shirt with long sleeves"
    assert dimensions_for("skirt") == ["colour", "pattern", "length", "fit"]


def test_offline_captioner_looks_only_at_images_without_metadata():
    captioner = OfflineCaptioner(ZeroShotAttributes(WordClip()))
    requests = [CaptionRequest("a", Path("blue_floral.png"), "toptee"),
                CaptionRequest("b", Path("blue_floral.png"), "toptee", "red tee")]
    blind, described = captioner.caption(requests)
    assert blind.startswith("A blue toptee. The pattern is floral.")
    assert described == 'A red toptee. Source description: "red tee"'
    assert captioner.description["attributes_of_images_without_metadata"] == "zero-shot word-clip"


def test_with_the_tiny_clip_every_value_comes_from_the_vocabulary(tmp_path):
    from facap_fixtures import write_image

    from cirbench.backbones.clip import tiny_clip
    from cirbench.facap.embedding import ClipEmbedder

    write_image(tmp_path / "x.png", "green", size=64)
    [found] = ZeroShotAttributes(ClipEmbedder("test_tiny", tiny_clip()))([tmp_path / "x.png"], ["dress"])
    assert list(found) == dimensions_for("dress") and all(found[d] in VOCABULARY[d] for d in found)
