"""What a text says about a garment's attributes, read back with a fixed lexicon.

The stats compare vague and detailed texts by the attribute claims they make: ``parse_mentions``
finds claims ("is darker", "has short sleeves", "v-neck"), ``mention_holds`` checks one against
the ground truth of a (reference, target) pair. Words after "instead of", "rather than", "in
place of" or "replacing" name what is being replaced, so they are skipped up to the next clause
boundary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from cirbench.synth.attributes import CATEGORIES, COLOURS, UPPER_BODY, Garment, order_key

COLOUR_STEP = 25.0  # luminance difference (0-255) below which "darker" / "lighter" is not true


@dataclass(frozen=True)
class Mention:
    """A claim about the target: ``is`` / ``not`` a value, or ``more`` / ``less`` than the
    reference on the attribute's scale."""

    attribute: str
    relation: str
    value: str | None = None


def _is(attribute: str, value: str, *phrases: str) -> dict[str, Mention]:
    return {p: Mention(attribute, "is", value) for p in phrases}


def _rel(attribute: str, relation: str, *phrases: str) -> dict[str, Mention]:
    return {p: Mention(attribute, relation, None) for p in phrases}


_COMMON: dict[str, Mention] = {
    **{name: Mention("colour", "is", name) for name in COLOURS},
    **_is("colour", "grey", "gray"),
    **_is("colour", "burgundy", "maroon"),
    **_is("colour", "navy", "navy blue"),
    **_rel("colour", "less", "darker", "deeper color"),
    **_rel("colour", "more", "lighter", "brighter", "paler"),
    **_is("pattern", "solid", "solid", "plain", "solid color", "solid colour", "no pattern", "pure color"),
    **_is("pattern", "stripes", "stripes", "striped", "stripy"),
    **_is("pattern", "dots", "polka dots", "polka dot", "dots", "dotted", "spotted"),
    **_is("pattern", "checks", "checks", "checked", "checkered", "gingham", "lattice"),
    **_is("pattern", "floral", "floral", "flowers", "flowery"),
    **_is("pattern", "plaid", "plaid", "tartan"),
    **{p: Mention("pattern", "not", "solid") for p in ("patterned", "a pattern", "more patterned", "printed")},
    **_is("fit", "fitted", "fitted", "form fitting", "tight", "skinny", "slim", "slim fit", "bodycon"),
    **_is("fit", "regular", "regular fit", "straight cut"),
    **_is("fit", "loose", "loose", "loose fitting", "oversized", "baggy", "flowy", "wide leg"),
    **_rel("fit", "more", "looser", "more flowy", "more relaxed", "roomier"),
    **_rel("fit", "less", "tighter", "more fitted", "slimmer", "more form fitting"),
    **_rel("length", "more", "longer"),
    **_rel("length", "less", "shorter"),
}
_UPPER: dict[str, Mention] = {
    **_is("sleeve", "sleeveless", "sleeveless", "no sleeves", "without sleeves"),
    **_is("sleeve", "short", "short sleeves", "short sleeved", "short sleeve"),
    **_is("sleeve", "elbow", "elbow length sleeves", "elbow sleeves", "half sleeves", "medium sleeve"),
    **_is("sleeve", "long", "long sleeves", "long sleeved", "long sleeve"),
    **{p: Mention("sleeve", "not", "sleeveless") for p in ("has sleeves", "with sleeves")},
    **_rel("sleeve", "more", "longer sleeves"),
    **_rel("sleeve", "less", "shorter sleeves"),
    **_is("neckline", "v-neck", "v neck", "v neckline", "v shaped neckline", "deep v"),
    **_is("neckline", "square", "square neck", "square neckline"),
    **_is("neckline", "round", "round neck", "round neckline", "crew neck", "scoop neck"),
    **_is("neckline", "collar", "collar", "collared", "shirt collar", "lapels", "lapel collar"),
    **_is("neckline", "turtleneck", "turtleneck", "turtle neck", "high neck", "mock neck"),
    **_rel("neckline", "more", "higher neckline", "less revealing neckline", "more covered neckline"),
    **_rel("neckline", "less", "lower neckline", "deeper neckline", "more revealing neckline"),
}
_DRESS_LENGTH = {
    **_is("length", "mini", "mini", "mini length", "very short"),
    **_is("length", "knee", "knee length"),
    **_is("length", "midi", "midi", "midi length"),
    **_is("length", "maxi", "maxi", "maxi length", "floor length"),
}
_LENGTH_WORDS: dict[str, dict[str, Mention]] = {
    "dress": _DRESS_LENGTH,
    "skirt": _DRESS_LENGTH,
    "pants": {
        **_is("length", "shorts", "shorts", "shorts length"),
        **_is("length", "knee", "knee length", "bermuda"),
        **_is("length", "cropped", "cropped", "cropped length", "capri", "three quarter length"),
        **_is("length", "full", "full length", "ankle length"),
    },
    **{
        cat: {
            **_is("length", "cropped", "cropped", "cropped length", "crop top"),
            **_is("length", "regular", "regular length", "hip length"),
            **_is("length", "long", "longline", "longline length", "tunic length"),
        }
        for cat in ("shirt", "toptee", "jacket")
    },
}
_CLAUSE_BREAKS = {",", ";", ".", "and", "but", "with"}
_SKIP_STARTS = (("instead", "of"), ("rather", "than"), ("in", "place", "of"), ("replacing",))


@lru_cache(maxsize=None)
def lexicon(category: str) -> dict[tuple[str, ...], Mention]:
    """Phrase (as words) -> mention, for one category."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    table = {**_COMMON, **_LENGTH_WORDS[category]}
    if category in UPPER_BODY:
        table.update(_UPPER)
    return {tuple(phrase.split()): mention for phrase, mention in table.items()}


def words(text: str) -> list[str]:
    """Lower-cased words and clause punctuation; hyphens split words ("v-neck" -> "v", "neck")."""
    return re.findall(r"[a-z]+|[,;.]", text.lower().replace("-", " "))


def parse_mentions(text: str, category: str) -> list[Mention]:
    """Every claim the text makes about the target, longest phrase first, left to right."""
    table = lexicon(category)
    longest = max(len(p) for p in table)
    tokens, found, i = words(text), [], 0
    while i < len(tokens):
        marker = next((m for m in _SKIP_STARTS if tuple(tokens[i : i + len(m)]) == m), None)
        if marker:
            i += len(marker)
            while i < len(tokens) and tokens[i] not in _CLAUSE_BREAKS:
                i += 1
            continue
        for n in range(min(longest, len(tokens) - i), 0, -1):
            mention = table.get(tuple(tokens[i : i + n]))
            if mention:
                found.append(mention)
                i += n
                break
        else:
            i += 1
    return found


def direction(reference: Garment, target: Garment, attribute: str) -> str | None:
    """ "more" / "less" when the target is clearly above / below the reference on the attribute's
    scale (lighter colour, longer sleeves, higher neckline, longer, looser), else None."""
    value, old = getattr(target, attribute), getattr(reference, attribute)
    if value is None or old is None or order_key(target.category, attribute, value) is None:
        return None
    difference = order_key(target.category, attribute, value) - order_key(target.category, attribute, old)
    step = COLOUR_STEP if attribute == "colour" else 0.5
    return "more" if difference > step else "less" if difference < -step else None


def mention_holds(mention: Mention, reference: Garment, target: Garment) -> bool:
    """Whether the claim is true of the target (relative claims: compared with the reference)."""
    value = getattr(target, mention.attribute)
    if value is None:
        return False
    if mention.relation == "is":
        return value == mention.value
    if mention.relation == "not":
        return value != mention.value
    return direction(reference, target, mention.attribute) == mention.relation
