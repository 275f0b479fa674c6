"""The synthetic world's vocabulary: garment categories, attributes, their values and which
attribute applies to which category.

Ordered attributes (sleeve, neckline, length, fit, and colour by lightness) let texts say
"shorter sleeves" or "is darker" and let the stats check such claims against the ground truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

CATEGORIES = ("dress", "shirt", "toptee", "skirt", "pants", "jacket")
ATTRIBUTES = ("colour", "pattern", "sleeve", "neckline", "length", "fit")

# Priority order: a world using n colours uses the first n, chosen to stay far apart.
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 30),
    "white": (238, 238, 232),
    "red": (200, 32, 40),
    "blue": (40, 92, 200),
    "green": (40, 140, 62),
    "yellow": (236, 204, 52),
    "pink": (240, 150, 182),
    "grey": (128, 128, 132),
    "navy": (28, 38, 92),
    "beige": (218, 198, 158),
    "purple": (112, 52, 150),
    "orange": (238, 130, 32),
    "brown": (118, 74, 40),
    "burgundy": (112, 22, 42),
    "light blue": (142, 186, 234),
    "olive": (110, 112, 40),
    "teal": (0, 128, 128),
}
PATTERNS = ("solid", "stripes", "dots", "checks", "floral", "plaid")
SLEEVES = ("sleeveless", "short", "elbow", "long")  # short -> long
FITS = ("fitted", "regular", "loose")  # tight -> loose

# Necklines ordered from most open to most closed ("higher neckline" = later in this order).
NECKLINE_ORDER = ("v-neck", "square", "round", "collar", "turtleneck")
NECKLINES = {
    "dress": ("round", "v-neck", "collar", "square", "turtleneck"),
    "shirt": ("collar", "v-neck", "round", "turtleneck"),
    "toptee": ("round", "v-neck", "square", "turtleneck"),
    "jacket": ("collar", "round", "v-neck"),
}
_DRESS_LENGTHS = ("mini", "knee", "midi", "maxi")
_TOP_LENGTHS = ("cropped", "regular", "long")
LENGTHS = {  # short -> long, per category
    "dress": _DRESS_LENGTHS,
    "skirt": _DRESS_LENGTHS,
    "pants": ("shorts", "knee", "cropped", "full"),
    "shirt": _TOP_LENGTHS,
    "toptee": _TOP_LENGTHS,
    "jacket": _TOP_LENGTHS,
}
UPPER_BODY = ("dress", "shirt", "toptee", "jacket")  # the ones with sleeves and a neckline


def valid_values(category: str, attribute: str) -> tuple[str, ...]:
    """Every value the attribute can take for this category, in priority order; () if it does
    not apply (pants have no neckline)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
    if attribute == "colour":
        return tuple(COLOURS)
    if attribute == "pattern":
        return PATTERNS
    if attribute == "fit":
        return FITS
    if attribute == "length":
        return LENGTHS[category]
    if attribute == "sleeve":
        return SLEEVES if category in UPPER_BODY else ()
    if attribute == "neckline":
        return NECKLINES.get(category, ())
    raise ValueError(f"unknown attribute {attribute!r}; known: {', '.join(ATTRIBUTES)}")


def values_in_use(category: str, attribute: str, n_colours: int, max_values: int) -> tuple[str, ...]:
    """The values a world samples from: the first ``n_colours`` colours, and at most
    ``max_values`` values of every other attribute."""
    values = valid_values(category, attribute)
    return values[: n_colours if attribute == "colour" else max_values]


def luminance(colour: str) -> float:
    r, g, b = COLOURS[colour]
    return 0.299 * r + 0.587 * g + 0.114 * b


def order_key(category: str, attribute: str, value: str) -> float | None:
    """Position of a value on its attribute's scale (None for pattern, which has no order)."""
    if attribute == "colour":
        return luminance(value)
    if attribute == "neckline":
        return float(NECKLINE_ORDER.index(value))
    if attribute == "pattern":
        return None
    return float(valid_values(category, attribute).index(value))


def nearest_colour(colour: str) -> str:
    """The palette colour most easily confused with this one (for annotators' wrong names)."""
    rgb = COLOURS[colour]
    others = [c for c in COLOURS if c != colour]
    return min(others, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLOURS[c], rgb)))


@dataclass(frozen=True)
class Garment:
    """One product's ground truth. Attributes that do not apply to the category are None."""

    category: str
    colour: str
    pattern: str
    fit: str
    length: str
    sleeve: str | None = None
    neckline: str | None = None

    def __post_init__(self) -> None:
        for attribute in ATTRIBUTES:
            value, allowed = getattr(self, attribute), valid_values(self.category, attribute)
            if (value is None) != (not allowed) or (value is not None and value not in allowed):
                raise ValueError(f"{self.category}: {attribute}={value!r} is not valid (allowed: {allowed or 'none'})")

    def attributes(self) -> dict[str, str | None]:
        return {a: getattr(self, a) for a in ATTRIBUTES}

    def differing(self, other: "Garment") -> list[str]:
        """The attributes whose values differ, in ATTRIBUTES order."""
        return [a for a in ATTRIBUTES if getattr(self, a) != getattr(other, a)]

    def with_values(self, **changes: str) -> "Garment":
        return replace(self, **changes)

    def to_json(self) -> dict:
        return asdict(self)
