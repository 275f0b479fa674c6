"""Texts about synthetic garments, from vague crowd-style to detailed.

- ``vague_caption``: one FashionIQ-like annotator text for a (reference, target) pair: short,
  often relative ("is darker"), leaves changes out, sometimes names a wrong colour, adds taste
  words ("more casual"), has the odd typo. Two independent calls make the two annotations.
- ``detailed_modification``: a FACap-like modification text naming every changed attribute with
  its old and new value, and what stays the same.
- ``detailed_caption``, ``deepfashion_caption``, ``fashion200k_description``: one image's
  caption, long and exact, DeepFashion-MultiModal-style, and a noisy shop title.

Every attribute phrase used here is in the ``mentions`` lexicon, so the stats read back what was
meant (a unit test checks it).
"""

from __future__ import annotations

import random

from cirbench.synth.attributes import ATTRIBUTES, Garment, nearest_colour
from cirbench.synth.mentions import direction

NOUNS = {
    "dress": ("dress",),
    "shirt": ("shirt", "blouse"),
    "toptee": ("top", "tee"),
    "skirt": ("skirt",),
    "pants": ("pants", "trousers"),
    "jacket": ("jacket",),
}

# Vague, crowd-style phrases: verb phrases about the target.
_VAGUE_VALUE = {
    "pattern": {
        "solid": ("is solid", "is plain", "has no pattern", "is a solid color"),
        "stripes": ("has stripes", "is striped"),
        "dots": ("has polka dots", "is dotted"),
        "checks": ("is checkered", "has checks"),
        "floral": ("is floral", "has flowers"),
        "plaid": ("is plaid", "is tartan"),
    },
    "sleeve": {
        "sleeveless": ("is sleeveless", "has no sleeves"),
        "short": ("has short sleeves", "is short sleeved"),
        "elbow": ("has half sleeves", "has elbow length sleeves"),
        "long": ("has long sleeves", "is long sleeved"),
    },
    "neckline": {
        "v-neck": ("has a v-neck", "is v neck"),
        "square": ("has a square neckline", "square neck"),
        "round": ("has a round neck", "has a crew neck"),
        "collar": ("has a collar", "is collared"),
        "turtleneck": ("has a turtleneck", "has a high neck"),
    },
    "fit": {
        "fitted": ("is fitted", "is form fitting", "is tight"),
        "regular": ("is a regular fit", "is straight cut"),
        "loose": ("is loose", "is oversized", "is flowy"),
    },
    "length": {
        "mini": ("is a mini", "is very short"),
        "knee": ("is knee length",),
        "midi": ("is midi", "is midi length"),
        "maxi": ("is a maxi", "is floor length"),
        "shorts": ("is shorts", "are shorts"),
        "cropped": ("is cropped",),
        "full": ("is full length", "is ankle length"),
        "regular": ("is regular length", "is hip length"),
        "long": ("is longline", "is tunic length"),
    },
}
_VAGUE_RELATIVE = {
    ("colour", "less"): ("is darker", "darker", "is a darker color"),
    ("colour", "more"): ("is lighter", "is brighter", "lighter colored"),
    ("sleeve", "less"): ("has shorter sleeves", "shorter sleeves"),
    ("sleeve", "more"): ("has longer sleeves", "longer sleeves"),
    ("length", "less"): ("is shorter", "shorter"),
    ("length", "more"): ("is longer", "longer"),
    ("fit", "more"): ("is looser", "is more flowy", "more relaxed"),
    ("fit", "less"): ("is tighter", "is more fitted", "slimmer"),
    ("neckline", "more"): ("has a higher neckline", "less revealing neckline"),
    ("neckline", "less"): ("has a lower neckline", "more revealing neckline"),
}
_PATTERNED = ("is patterned", "has a pattern", "more patterned")
_TASTE = (
    "more casual",
    "is more elegant",
    "looks more modern",
    "is prettier",
    "more formal",
    "is trendier",
    "more feminine",
    "is nicer",
    "looks sportier",
    "is cuter",
    "more fun",
    "is more stylish",
)
_COLOUR_FORMS = ("is {}", "{}", "is {} colored", "is {} in color", "in {}")

# Exact noun phrases for detailed texts.
_PRECISE = {
    "pattern": {
        "solid": "a solid colour",
        "stripes": "a striped pattern",
        "dots": "a polka dot pattern",
        "checks": "a checked pattern",
        "floral": "a floral print",
        "plaid": "a plaid pattern",
    },
    "sleeve": {
        "sleeveless": "no sleeves",
        "short": "short sleeves",
        "elbow": "elbow-length sleeves",
        "long": "long sleeves",
    },
    "neckline": {
        "v-neck": "a v-neckline",
        "square": "a square neckline",
        "round": "a round neckline",
        "collar": "a shirt collar",
        "turtleneck": "a turtleneck",
    },
    "fit": {"fitted": "a fitted cut", "regular": "a regular fit", "loose": "a loose fit"},
    "length": {
        "mini": "a mini length",
        "knee": "a knee length",
        "midi": "a midi length",
        "maxi": "a maxi length",
        "shorts": "a shorts length",
        "cropped": "a cropped length",
        "full": "a full length",
        "regular": "a regular length",
        "long": "a longline length",
    },
}


def precise_phrase(garment: Garment, attribute: str) -> str:
    value = getattr(garment, attribute)
    if attribute == "colour":
        return f"a {value} colour"  # "colour" is no lexicon word: the parser reads only the value
    if attribute == "neckline" and value == "collar" and garment.category == "jacket":
        return "a lapel collar"
    return _PRECISE[attribute][value]


# ----------------------------------------------------------------------------- vague texts


def _vague_value(target: Garment, attribute: str, rng: random.Random, wrong_colour: float) -> str:
    if attribute == "colour":
        name = nearest_colour(target.colour) if rng.random() < wrong_colour else target.colour
        return rng.choice(_COLOUR_FORMS).format(name)
    return rng.choice(_VAGUE_VALUE[attribute][getattr(target, attribute)])


def _vague_change(reference: Garment, target: Garment, attribute: str, rng: random.Random, vagueness: float) -> str:
    relation = direction(reference, target, attribute)
    if relation and rng.random() < 0.35 + 0.4 * vagueness:
        if rng.random() < 0.15 * vagueness:  # the annotator got the direction backwards
            relation = "less" if relation == "more" else "more"
        return rng.choice(_VAGUE_RELATIVE[(attribute, relation)])
    if attribute == "pattern" and reference.pattern == "solid" and rng.random() < 0.5 * vagueness:
        return rng.choice(_PATTERNED)
    return _vague_value(target, attribute, rng, wrong_colour=0.5 * vagueness)


def _join(phrases: list[str], rng: random.Random) -> str:
    text = phrases[0]
    for phrase in phrases[1:]:
        if phrase.startswith("has ") and rng.random() < 0.4:
            text += " with " + phrase[4:]
        else:
            text += rng.choice((" and ", " and ", ", ")) + phrase
    return text


def _typo(text: str, rng: random.Random) -> str:
    """Swap two neighbouring letters in one longer word ("shiny" -> "shiyn")."""
    tokens = text.split(" ")
    long_words = [i for i, w in enumerate(tokens) if len(w) >= 5 and w.isalpha()]
    if not long_words:
        return text
    i = rng.choice(long_words)
    w, k = tokens[i], rng.randrange(1, len(tokens[i]) - 2)
    tokens[i] = w[:k] + w[k + 1] + w[k] + w[k + 2 :]
    return " ".join(tokens)


def vague_caption(reference: Garment, target: Garment, rng: random.Random, vagueness: float = 0.5) -> str:
    """One crowd-style text saying how the target differs from the reference.

    ``vagueness`` in [0, 1]: more omitted changes, relative wording, wrong colours, taste words
    and typos as it grows.
    """
    changed = reference.differing(target)
    rng.shuffle(changed)
    phrases = [
        _vague_change(reference, target, a, rng, vagueness) for a in changed if rng.random() >= 0.15 + 0.6 * vagueness
    ][:3]
    unchanged = [a for a in ATTRIBUTES if a not in changed and getattr(target, a) is not None]
    if unchanged and len(phrases) < 3 and rng.random() < 0.25:
        phrases.append(_vague_value(target, rng.choice(unchanged), rng, wrong_colour=0.0))
    if not phrases or rng.random() < 0.3 * vagueness:
        phrases.append(rng.choice(_TASTE))
    text = _join(phrases, rng)
    if text.startswith("is ") and rng.random() < 0.2:
        text = text[3:]
    if rng.random() < 0.12 * vagueness:
        text = _typo(text, rng)
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    return text + ("." if rng.random() < 0.15 else "")


def instruction(attribute: str, value: str) -> str:
    """The plainest annotator phrase asking for ``value`` ("is red", "has long sleeves")."""
    if attribute == "colour":
        return _COLOUR_FORMS[0].format(value)
    return _VAGUE_VALUE[attribute][value][0]


def vague_phrases() -> list[str]:
    """Every phrase a vague annotator text is made of (colours in every form), without typos."""
    from cirbench.synth.attributes import COLOURS

    phrases = [p for values in _VAGUE_VALUE.values() for options in values.values() for p in options]
    phrases += [p for options in _VAGUE_RELATIVE.values() for p in options]
    phrases += [*_PATTERNED, *_TASTE, " with ", " and "]
    return phrases + [form.format(colour) for form in _COLOUR_FORMS for colour in COLOURS]


# ----------------------------------------------------------------------------- detailed texts

_CHANGE_FORMS = (
    "give it {new} instead of {old}",
    "switch to {new} rather than {old}",
    "use {new} instead of {old}",
    "it should have {new} instead of {old}",
    "opt for {new} in place of {old}",
    "add {new}, replacing {old}",
    "go with {new} rather than {old}",
)
_OPENINGS = (
    "Starting from the reference {noun}, {changes}.",
    "Modify the {noun}: {changes}.",
    "To get the target {noun}, {changes}.",
    "Keep the same {noun} but {changes}.",
    "The desired {noun} is a variation of the shown one: {changes}.",
)
_KEEP_FORMS = (
    "It keeps {kept}.",
    "Everything else stays the same: {kept}.",
    "Unchanged: {kept}.",
    "Retain {kept} as they are.",
)


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def detailed_modification(reference: Garment, target: Garment, rng: random.Random) -> str:
    """A FACap-like modification text: every changed attribute, old and new value, and the
    attributes that stay the same."""
    changed = reference.differing(target)
    if not changed:
        raise ValueError("reference and target are the same garment")
    clauses = [
        rng.choice(_CHANGE_FORMS).format(new=precise_phrase(target, a), old=precise_phrase(reference, a))
        for a in changed
    ]
    noun = NOUNS[target.category][0]
    text = rng.choice(_OPENINGS).format(noun=noun, changes=_listing(clauses))
    kept = [precise_phrase(target, a) for a in ATTRIBUTES if a not in changed and getattr(target, a) is not None]
    if kept:
        text += " " + rng.choice(_KEEP_FORMS).format(kept=_listing(kept))
    return text


def detailed_caption(garment: Garment, rng: random.Random | None = None) -> str:
    """A long, exact caption of one garment image, naming every attribute."""
    rng = rng or random.Random(0)
    noun = rng.choice(NOUNS[garment.category])
    parts = [
        precise_phrase(garment, a)
        for a in ("pattern", "sleeve", "neckline", "length", "fit")
        if getattr(garment, a) is not None
    ]
    return f"A {garment.colour} {noun} with {_listing(parts)}."


_DF_SLEEVE = {"sleeveless": "sleeveless", "short": "short-sleeve", "elbow": "medium-sleeve", "long": "long-sleeve"}
_DF_PATTERN = {
    "solid": "pure color",
    "stripes": "striped",
    "dots": "dotted",
    "checks": "lattice",
    "floral": "floral",
    "plaid": "plaid",
}


def deepfashion_caption(garment: Garment, subject: str, rng: random.Random) -> str:
    """A DeepFashion-MultiModal-style caption ("The lady wears a short-sleeve T-shirt with ...")."""
    noun = "shorts" if garment.length == "shorts" else rng.choice(NOUNS[garment.category])
    plural = garment.category == "pants"
    sleeve = f"{_DF_SLEEVE[garment.sleeve]} " if garment.sleeve else ""
    article = "a pair of" if plural else "a"
    text = (
        f"The {subject} wears {article} {sleeve}{garment.colour} {noun} with {_DF_PATTERN[garment.pattern]} patterns."
    )
    if garment.neckline:
        text += f" It has {precise_phrase(garment, 'neckline')}."
    fit, length = precise_phrase(garment, "fit"), precise_phrase(garment, "length")
    return text + f" The {noun} {'have' if plural else 'has'} {fit} and {length}."


_SHOP_PATTERN = {"stripes": "striped", "dots": "polka-dot", "checks": "checked", "floral": "floral", "plaid": "plaid"}
_SHOP_SHAPE = {
    "sleeve": {"sleeveless": "sleeveless", "short": "short-sleeve", "long": "long-sleeve"},
    "length": {
        "mini": "mini",
        "midi": "midi",
        "maxi": "maxi",
        "knee": "knee-length",
        "cropped": "cropped",
        "long": "longline",
    },
    "fit": {"fitted": "slim", "loose": "oversized"},
}
_SHOP_WORDS = (
    "cotton",
    "jersey",
    "silk",
    "linen",
    "crepe",
    "casual",
    "embellished",
    "belted",
    "ruffled",
    "cutout",
    "classic",
    "relaxed",
    "stretch",
    "lace-trimmed",
)


def fashion200k_description(garment: Garment, rng: random.Random) -> str:
    """A short, noisy shop title: the colour usually right, shape and pattern words sometimes,
    filler words often ("black embellished mini dress")."""
    words: list[str] = []
    roll = rng.random()
    if roll < 0.82:
        words.append(garment.colour)
    elif roll < 0.9:
        words.append(nearest_colour(garment.colour))
    if garment.pattern in _SHOP_PATTERN and rng.random() < 0.75:
        words.append(_SHOP_PATTERN[garment.pattern])
    if rng.random() < 0.45:
        words.append(rng.choice(_SHOP_WORDS))
    shape_attribute = rng.choice([a for a in _SHOP_SHAPE if getattr(garment, a) in _SHOP_SHAPE[a]] or [None])
    if shape_attribute and rng.random() < 0.6:
        words.append(_SHOP_SHAPE[shape_attribute][getattr(garment, shape_attribute)])
    words.append("shorts" if garment.length == "shorts" else rng.choice(NOUNS[garment.category]))
    return " ".join(words)
