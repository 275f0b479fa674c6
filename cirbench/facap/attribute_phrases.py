"""A small fashion-attribute vocabulary and a phrase parser over it.

Used by the offline backends (caption from metadata, modification text from two captions) and by
the automatic faithfulness score. Each dimension maps canonical values to the phrases that name
them; the parser finds the longest phrases first, so "short sleeves" is a sleeve length and never
a garment length, and "three-quarter length" is never a sleeve.
"""

from __future__ import annotations

import re
from functools import lru_cache

DIMENSIONS = ("colour", "pattern", "sleeve", "neckline", "length", "fit", "material")

VOCABULARY: dict[str, dict[str, tuple[str, ...]]] = {
    "colour": {
        "black": ("black",), "white": ("white",), "red": ("red",), "blue": ("blue",),
        "navy": ("navy", "navy blue", "dark blue"), "light blue": ("light blue", "sky blue"),
        "green": ("green",), "olive": ("olive", "khaki green"), "yellow": ("yellow", "mustard"),
        "orange": ("orange",), "pink": ("pink", "blush"), "purple": ("purple", "violet", "lilac", "lavender"),
        "brown": ("brown", "chocolate", "camel"), "beige": ("beige", "nude", "tan", "khaki", "cream", "ivory"),
        "grey": ("grey", "gray", "charcoal"), "gold": ("gold", "golden"), "silver": ("silver",),
        "burgundy": ("burgundy", "maroon", "wine", "dark red"), "teal": ("teal", "turquoise"),
        "coral": ("coral", "salmon"), "multicolour": ("multicolour", "multicolor", "multi-colored", "multicoloured", "colorful", "colourful"),
    },
    "pattern": {
        "solid": ("solid", "plain", "pure color", "pure colour", "solid-coloured", "solid-colored"),
        "striped": ("striped", "stripes", "stripe", "pinstripe"),
        "floral": ("floral", "flowers", "flower print", "flowered"),
        "polka-dot": ("polka-dot", "polka dot", "polka dots", "dotted", "dots", "spotted"),
        "plaid": ("plaid", "checked", "check", "checks", "checkered", "tartan", "gingham", "lattice", "plaids"),
        "graphic": ("graphic", "graphic print", "logo", "lettering", "printed"),
        "animal-print": ("animal-print", "animal print", "leopard", "zebra", "snakeskin"),
        "colour-block": ("colour-block", "color block", "colour block", "color-block", "colorblock"),
        "lace": ("lace", "lacy", "crochet"),
    },
    "sleeve": {
        "sleeveless": ("sleeveless", "no sleeves", "tank", "spaghetti straps"),
        "strapless": ("strapless",),
        "cap sleeves": ("cap sleeves", "cap sleeve", "cap-sleeve"),
        "short sleeves": ("short sleeves", "short sleeve", "short-sleeve", "short-sleeved", "short-sleeves"),
        "three-quarter sleeves": ("three-quarter sleeves", "three-quarter sleeve", "3/4 sleeves", "elbow sleeves", "elbow-length sleeves", "medium-sleeve", "medium sleeves", "half sleeves"),
        "long sleeves": ("long sleeves", "long sleeve", "long-sleeve", "long-sleeved", "long-sleeves"),
    },
    "neckline": {
        "v-neck": ("v-neck", "v neck", "v-neckline", "v-shape neckline", "v-shape", "v-shaped neckline", "plunging neckline"),
        "round neckline": ("round neckline", "round neck", "crew neck", "crewneck", "crew-neck", "scoop neck", "scoop neckline"),
        "square neckline": ("square neckline", "square neck"),
        "stand collar": ("stand collar", "standing collar", "turtleneck", "turtle neck", "high neck", "mock neck", "high neckline"),
        "lapel collar": ("lapel collar", "lapel", "lapels", "collar", "collared", "shirt collar"),
        "off-shoulder": ("off-shoulder", "off the shoulder", "off-the-shoulder", "bardot"),
        "halter": ("halter", "halter neck", "halterneck"),
        "boat neck": ("boat neck", "boatneck", "bateau"),
        "suspenders": ("suspenders",),
    },
    "length": {
        "mini": ("mini", "mini length", "short length", "above the knee", "above-the-knee", "three-point", "shorts"),
        "knee-length": ("knee-length", "knee length", "knee-high length", "medium short"),
        "midi": ("midi", "midi length", "mid-calf", "calf-length", "tea-length"),
        "three-quarter length": ("three-quarter length", "three-quarter-length", "capri", "cropped length", "ankle-length", "ankle length"),
        "full-length": ("full-length", "full length", "maxi", "floor-length", "floor length", "long length"),
        "cropped": ("cropped", "crop"),
        "regular length": ("regular length", "hip-length", "hip length", "standard length"),
    },
    "fit": {
        "fitted": ("fitted", "slim", "slim-fit", "slim fit", "bodycon", "skinny", "tight", "form-fitting", "tailored"),
        "loose": ("loose", "loose-fitting", "relaxed", "oversized", "baggy", "flowy", "boxy"),
        "a-line": ("a-line", "a line", "flared", "fit and flare", "fit-and-flare", "skater"),
        "straight": ("straight", "straight-leg", "straight cut", "regular fit", "shift"),
        "wide-leg": ("wide-leg", "wide leg", "palazzo"),
        "pleated": ("pleated",),
    },
    "material": {
        "cotton": ("cotton",), "denim": ("denim", "jeans", "jean"), "leather": ("leather", "faux leather", "suede"),
        "chiffon": ("chiffon", "sheer", "georgette"), "silk": ("silk", "silky", "satin"), "knitted": ("knitted", "knit", "knitwear", "sweater-knit"),
        "wool": ("wool", "woolen", "woollen", "cashmere", "tweed"), "linen": ("linen",), "velvet": ("velvet", "velour"),
        "furry": ("furry", "fur", "faux fur", "fleece", "sherpa"), "jersey": ("jersey",), "sequined": ("sequined", "sequin", "sequins", "glitter"),
        "polyester": ("polyester", "nylon"),
    },
}

# How a value reads after "the <dimension> to ...", and the dimension's own word.
DIMENSION_WORDS = {
    "colour": "colour", "pattern": "pattern", "sleeve": "sleeves", "neckline": "neckline",
    "length": "length", "fit": "fit", "material": "fabric",
}


@lru_cache(maxsize=1)
def _phrase_table() -> tuple[re.Pattern, dict[str, tuple[str, str]]]:
    table: dict[str, tuple[str, str]] = {}
    for dimension, values in VOCABULARY.items():
        for canonical, phrases in values.items():
            for phrase in (canonical, *phrases):
                table.setdefault(phrase, (dimension, canonical))
    alternation = "|".join(re.escape(p) for p in sorted(table, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])"), table


def find_mentions(text: str) -> list[tuple[str, str]]:
    """Every (dimension, canonical value) named in ``text``, in reading order."""
    pattern, table = _phrase_table()
    return [table[m.group(0)] for m in pattern.finditer(text.lower())]


def parse_attributes(text: str) -> dict[str, str]:
    """dimension -> the first value named for it in ``text``."""
    found: dict[str, str] = {}
    for dimension, value in find_mentions(text):
        found.setdefault(dimension, value)
    return found


# Bare label values ("long", "square", "regular") name a value once the dimension's noun is added.
_LABEL_SUFFIXES = {"sleeve": "sleeves", "neckline": "neckline", "length": "length", "fit": "fit"}


def canonical_value(dimension: str, text: str) -> str:
    """A free-form value (label, ground truth) in the vocabulary's terms; unknown text is kept as is."""
    cleaned = str(text).strip().lower().replace("_", " ")
    table = _phrase_table()[1]
    for phrase in (cleaned, f"{cleaned} {_LABEL_SUFFIXES.get(dimension, '')}".strip()):
        if table.get(phrase, ("",))[0] == dimension:
            return table[phrase][1]
    for found_dimension, value in find_mentions(cleaned):
        if found_dimension == dimension:
            return value
    return cleaned
