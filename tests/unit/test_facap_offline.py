"""Attribute vocabulary and the offline backends (caption from metadata, change from two captions)."""

from __future__ import annotations

from pathlib import Path

from cirbench.facap.attribute_phrases import canonical_value, find_mentions, parse_attributes
from cirbench.facap.backends import CaptionRequest, ModificationRequest, build_captioner, build_modifier
from cirbench.facap.backends.offline import write_caption, write_modification


def test_longest_phrase_wins_so_sleeve_and_garment_lengths_do_not_mix():
    text = "A light blue blouse with short sleeves and a three-quarter length hem, v-neck, tank style"
    assert find_mentions(text) == [("colour", "light blue"), ("sleeve", "short sleeves"),
                                   ("length", "three-quarter length"), ("neckline", "v-neck"), ("sleeve", "sleeveless")]
    assert parse_attributes("the tank top is red")["sleeve"] == "sleeveless"
    assert parse_attributes("tankini") == {}


def test_label_values_map_into_the_vocabulary():
    assert canonical_value("sleeve", "short") == "short sleeves"
    assert canonical_value("neckline", "square") == "square neckline"
    assert canonical_value("length", "maxi") == "full-length"
    assert canonical_value("pattern", "stripes") == "striped"
    assert canonical_value("colour", "Magenta") == "magenta"  # unknown values are kept as written


def test_offline_caption_puts_labels_first_then_description_words():
    caption = write_caption("dress", "red floral midi dress, fitted", {"sleeve": "long", "pattern": "striped"})
    assert caption.startswith("A red dress. The pattern is striped. It has long sleeves. The length is midi. The fit is fitted.")
    assert caption.endswith('Source description: "red floral midi dress, fitted"')
    assert write_caption("top", "", {"sleeve": "sleeveless"}) == "A top. It is sleeveless."


def test_offline_modification_names_only_what_differs():
    reference = write_caption("dress", "black floral maxi dress", {})
    target = write_caption("dress", "red floral mini dress with long sleeves", {})
    assert write_modification("dress", reference, target) == (
        "Change the colour to red instead of black, the sleeves to long sleeves "
        "and the length to mini instead of full-length."
    )
    assert write_modification("dress", reference, reference) == "Keep the same dress with only subtle differences."


def test_offline_backends_answer_every_request_in_order():
    captioner, modifier = build_captioner("offline"), build_modifier("offline")
    requests = [CaptionRequest(str(i), Path("x.png"), "top", f"{c} tee") for i, c in enumerate(["red", "blue"])]
    captions = captioner.caption(requests)
    assert captions == ['A red top. Source description: "red tee"', 'A blue top. Source description: "blue tee"']
    assert modifier.modify([ModificationRequest("0", "top", *captions)]) == ["Change the colour to blue instead of red."]
    assert captioner.description == {"backend": "offline", "version": "offline_v1"}
