"""Difficulty knobs of the synthetic world and the named presets.

Sizes are per category. ``default`` is sized for the CPU demo: tiny models train at about 100
samples/s on two cores and the whole demo (several trainings) should take about ten minutes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from cirbench.errors import DataError


@dataclass(frozen=True)
class Knobs:
    image_size: int = 64  # pixels per side (64 to 224 is the intended range)
    n_colours: int = 12  # colour names in use (of 17)
    max_values: int = 6  # values in use for every other attribute (at most what it has)
    noise: float = 0.03  # sensor noise, std as a fraction of 255
    view_jitter: float = 1.0  # pose / scale / crop / lighting / background changes, 0 to 1
    vagueness: float = 0.5  # FashionIQ-like texts, 0 to 1: omissions, relative words, errors
    near_duplicates: float = 0.25  # share of pairs whose target gets a one-attribute twin in its split,
    # and of shop products made as a one-attribute twin of an earlier product
    reuse: float = 0.4  # share of pairs whose reference is an image already in the split
    visible_changes: float = 1.0  # share of FashionIQ-like pairs whose target differs in colour or print
    lookalikes: int = 5  # val images per new reference with its colour and print in another cut
    targets_per_reference: int = 3  # pairs drawn for each new reference, each with another target
    fiq_train_pairs: int = 800  # FashionIQ-like, per category (dress, shirt, toptee)
    fiq_val_pairs: int = 200
    fiq_test_pairs: int = 100
    fiq_val_gallery: int = 450  # val images per category; at least the pairs' own images
    f200k_products: int = 120  # Fashion200k-like products per category (dress, jacket, pants, skirt, top)
    f200k_views: int = 3  # views per product: 2 to this
    dfmm_products: int = 70  # DeepFashion-MultiModal-like products per category
    dfmm_views: int = 3

    def __post_init__(self) -> None:
        problems = []
        if not 32 <= self.image_size <= 512:
            problems.append("image_size must be within 32..512")
        for name in ("noise", "view_jitter", "vagueness", "near_duplicates", "reuse", "visible_changes"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be within 0..1")
        if not 2 <= self.n_colours <= 17 or not 2 <= self.max_values:
            problems.append("n_colours must be within 2..17 and max_values at least 2")
        if not (2 <= self.f200k_views and 2 <= self.dfmm_views <= 5):
            problems.append("f200k_views must be at least 2, dfmm_views within 2..5")
        if (
            min(self.fiq_train_pairs, self.fiq_val_pairs, self.fiq_test_pairs, self.f200k_products, self.dfmm_products,
                self.targets_per_reference)
            < 1
        ):
            problems.append("pair, product and target counts must be at least 1")
        if min(self.fiq_val_gallery, self.lookalikes) < 0:
            problems.append("fiq_val_gallery and lookalikes must be at least 0")
        if problems:
            raise ValueError("; ".join(problems))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, Knobs] = {
    "tiny": Knobs(
        fiq_train_pairs=12,
        fiq_val_pairs=8,
        fiq_test_pairs=4,
        fiq_val_gallery=24,
        f200k_products=3,
        f200k_views=2,
        dfmm_products=2,
        dfmm_views=2,
        near_duplicates=0.5,
    ),
    "default": Knobs(),
    "large": Knobs(
        image_size=128,
        n_colours=17,
        fiq_train_pairs=3000,
        fiq_val_pairs=600,
        fiq_test_pairs=300,
        fiq_val_gallery=1500,
        f200k_products=600,
        f200k_views=4,
        dfmm_products=400,
        dfmm_views=4,
    ),
}


def resolve_knobs(preset: str, overrides: list[str] = (), image_size: int | None = None) -> Knobs:
    """The preset's knobs with ``knob=value`` overrides applied (values typed like the knob)."""
    if preset not in PRESETS:
        raise DataError("--preset", preset, f"unknown preset; known: {', '.join(PRESETS)}")
    types = {f.name: f.type for f in fields(Knobs)}
    changes: dict[str, Any] = {}
    for text in overrides:
        name, sep, raw = text.partition("=")
        name = name.strip()
        if not sep or name not in types:
            raise DataError("--set", text, f"expected knob=value with a knob among: {', '.join(types)}")
        try:
            changes[name] = int(raw) if types[name] == "int" else float(raw)
        except ValueError:
            raise DataError("--set", text, f"{name} takes a {types[name]}") from None
    if image_size is not None:
        changes["image_size"] = image_size
    try:
        return replace(PRESETS[preset], **changes)
    except ValueError as exc:
        raise DataError("--set", ", ".join(overrides) or preset, str(exc)) from None
