"""Sampling the synthetic world and writing it to a folder.

What exists is decided here from the seed: products, FashionIQ-like pairs, near-duplicates (one
fine attribute changed), shop products with several views. ``writers`` lays it out in the real
formats; ``render`` draws the images, in parallel, each from its own seeds, so the output does not
depend on the number of workers.

The FashionIQ-like part is built so that the modification text is necessary (knobs
``visible_changes``, ``targets_per_reference``, ``lookalikes``): a target differs from its
reference in colour or print (what the tiny backbones see) and in 0-2 shape attributes; a new
reference gets several targets, each unlike the others; and the val gallery holds look-alikes of
each new reference (its colour and print in another cut), which image similarity ranks above the
target. The shop sources the backbones are pre-trained on do not depend on this part.

Every random stream is seeded from (world seed, what it is for), so resizing one part of the
world leaves the others unchanged.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from cirbench import __version__
from cirbench.errors import DataError
from cirbench.synth.attributes import ATTRIBUTES, COLOURS, Garment, values_in_use
from cirbench.synth.presets import Knobs
from cirbench.synth.render import ImageSpec, render_spec, save_deterministic
from cirbench.synth.text import (
    deepfashion_caption,
    detailed_caption,
    detailed_modification,
    fashion200k_description,
    vague_caption,
)
from cirbench.synth.writers import (
    FASHION200K_FOLDERS,
    FashionIQSplit,
    ModelShot,
    ShopProduct,
    SourceOutput,
    write_deepfashion,
    write_fashion200k,
    write_fashioniq,
)

WORLD_FORMAT = 2  # bump when the same settings would draw different files
SOURCES_FORMAT = 1  # bump when the same settings would draw different shop-source files
# The knobs that decide the shop sources (Fashion200k-like, DeepFashion-MultiModal-like): the
# FashionIQ-like part is drawn from its own random streams, so the other knobs leave them as they are.
SOURCE_KNOBS = ("image_size", "n_colours", "max_values", "noise", "view_jitter", "near_duplicates",
                "f200k_products", "f200k_views", "dfmm_products", "dfmm_views")
MANIFEST, GROUND_TRUTH = "world.json", "ground_truth/attributes.jsonl"
FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
FASHIONIQ_SPLITS = ("train", "val", "test")
DEEPFASHION_CATEGORIES = {
    "dress": "Dresses",
    "shirt": "Blouses_Shirts",
    "toptee": "Tees_Tanks",
    "skirt": "Skirts",
    "pants": "Pants",
    "jacket": "Jackets_Coats",
}
_MEN_CATEGORIES = {"shirt": "Shirts_Polos", "toptee": "Tees_Tanks", "pants": "Pants", "jacket": "Jackets_Vests"}
_FINE_ATTRIBUTES = ("neckline", "fit", "sleeve", "length", "colour")
_N_CHANGES = ((1, 0.35), (2, 0.45), (3, 0.2))
_VISIBLE_ATTRIBUTES = ("colour", "pattern")
_VISIBLE_WEIGHTS = (0.5, 0.3, 0.2)  # colour, print, both
_SHAPE_CHANGES = (0.5, 0.35, 0.15)  # 0, 1, 2 shape attributes changed besides colour / print


def stable_seed(*keys: object) -> int:
    """A 63-bit seed from any keys, identical across runs and machines (unlike ``hash``)."""
    digest = hashlib.sha256("/".join(map(str, keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class GarmentSampler:
    """Draws garments from the values in use, and changed copies of them."""

    def __init__(self, knobs: Knobs, rng: random.Random):
        self.knobs, self.rng = knobs, rng

    def values(self, category: str, attribute: str) -> tuple[str, ...]:
        return values_in_use(category, attribute, self.knobs.n_colours, self.knobs.max_values)

    def changeable(self, category: str) -> list[str]:
        return [a for a in ATTRIBUTES if len(self.values(category, a)) > 1]

    def fresh(self, category: str) -> Garment:
        chosen = {
            a: self.rng.choice(self.values(category, a)) if self.values(category, a) else None for a in ATTRIBUTES
        }
        return Garment(category=category, **chosen)

    def changed(self, garment: Garment, attributes: Iterable[str]) -> Garment:
        changes = {
            a: self.rng.choice([v for v in self.values(garment.category, a) if v != getattr(garment, a)])
            for a in attributes
        }
        return garment.with_values(**changes)

    def modified(self, garment: Garment) -> Garment:
        """A FashionIQ-like target: 1 to 3 attributes changed."""
        count = self.rng.choices([n for n, _ in _N_CHANGES], weights=[w for _, w in _N_CHANGES])[0]
        options = self.changeable(garment.category)
        return self.changed(garment, self.rng.sample(options, min(count, len(options))))

    def fashioniq_target(self, garment: Garment) -> Garment:
        """A FashionIQ-like target. With probability ``visible_changes`` it differs from the
        reference in colour, print or both (what a glance, and the tiny backbones, see) and in
        0-2 shape attributes; otherwise 1-3 attributes of any kind are changed."""
        if self.rng.random() >= self.knobs.visible_changes:
            return self.modified(garment)
        options = self.changeable(garment.category)
        visible = [a for a in _VISIBLE_ATTRIBUTES if a in options]
        chosen = self.rng.choices((visible[:1], visible[1:], visible), weights=_VISIBLE_WEIGHTS)[0]
        shapes = [a for a in options if a not in _VISIBLE_ATTRIBUTES]
        count = self.rng.choices(range(len(_SHAPE_CHANGES)), weights=_SHAPE_CHANGES)[0]
        return self.changed(garment, chosen + self.rng.sample(shapes, min(count, len(shapes))))

    def lookalike(self, garment: Garment) -> Garment:
        """The same colour and print in another cut: 1 or 2 shape attributes changed. Image
        similarity ranks it next to ``garment``; only a text about colour or print tells a
        target of ``garment`` from it."""
        shapes = [a for a in self.changeable(garment.category) if a not in _VISIBLE_ATTRIBUTES]
        return self.changed(garment, self.rng.sample(shapes, min(self.rng.choice((1, 2)), len(shapes))))

    def near_duplicate(self, garment: Garment, prefer: Iterable[str] = ()) -> Garment:
        """The same garment with exactly one fine attribute changed (a neighbouring value
        where the attribute has an order, the most similar colour for colour), taken from
        ``prefer`` when one of them is fine."""
        fine = [a for a in _FINE_ATTRIBUTES if a in self.changeable(garment.category)]
        attribute = self.rng.choice([a for a in fine if a in prefer] or fine)
        values = self.values(garment.category, attribute)
        if attribute == "colour":
            rgb = COLOURS[garment.colour]
            new = min(
                (v for v in values if v != garment.colour),
                key=lambda v: sum((a - b) ** 2 for a, b in zip(COLOURS[v], rgb)),
            )
        else:
            i = values.index(getattr(garment, attribute))
            new = values[i + 1] if i == 0 or (i + 1 < len(values) and self.rng.random() < 0.5) else values[i - 1]
        return garment.with_values(**{attribute: new})


# ----------------------------------------------------------------------------- FashionIQ-like


class IdMaker:
    """Unique product ids in each source's style, drawn from the caller's random stream (so a
    part of the world keeps its ids when another part is resized)."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def _unique(self, make: Callable[[], str]) -> str:
        while (new := make()) in self.used:
            pass
        self.used.add(new)
        return new

    def asin(self, rng: random.Random) -> str:
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        return self._unique(lambda: "B00" + "".join(rng.choice(alphabet) for _ in range(7)))

    def digits(self, rng: random.Random, n: int) -> str:
        return self._unique(lambda: str(rng.randrange(10 ** (n - 1), 10**n)))


def _fashioniq_split(
    category: str, split: str, n_pairs: int, n_images: int, knobs: Knobs, seed: int, ids: IdMaker
) -> FashionIQSplit:
    rng = random.Random(stable_seed(seed, "fashioniq", category, split))
    sampler = GarmentSampler(knobs, rng)
    images: dict[str, Garment] = {}
    added: list[str] = []  # the keys of ``images``, for drawing a reused reference

    def add(garment: Garment) -> str:
        images[image_id := ids.asin(rng)] = garment
        added.append(image_id)
        return image_id

    pairs: list[tuple[str, str]] = []
    print_seeds: dict[str, int] = {}  # look-alikes wear their reference's print
    lookalikes = knobs.lookalikes if split == "val" else 0
    while len(pairs) < n_pairs:
        if added and rng.random() < knobs.reuse:
            reference, count = rng.choice(added), 1
        else:
            reference, count = add(sampler.fresh(category)), knobs.targets_per_reference
            for _ in range(lookalikes):
                print_seeds[add(sampler.lookalike(images[reference]))] = stable_seed(seed, "print", reference)
        siblings: list[Garment] = []
        for _ in range(min(count, n_pairs - len(pairs))):
            target = add(_new_target(sampler, images[reference], siblings))
            if rng.random() < knobs.near_duplicates:
                # a twin along a changed attribute: vague texts ("is darker") fit both
                add(sampler.near_duplicate(images[target], prefer=images[reference].differing(images[target])))
            pairs.append((reference, target))
    while len(images) < n_images:
        add(sampler.fresh(category))
    rng.shuffle(added)
    captions = [_annotations(images[r], images[t], knobs, seed, (category, split, i)) for i, (r, t) in enumerate(pairs)]
    seeds = {i: (print_seeds.get(i, stable_seed(seed, "print", i)), stable_seed(seed, "view", i)) for i in added}
    return FashionIQSplit(category, split, {i: images[i] for i in added}, pairs, captions, seeds)


def _new_target(sampler: GarmentSampler, reference: Garment, siblings: list[Garment]) -> Garment:
    """A target of ``reference`` unlike its earlier targets (``siblings``, appended to), when a few
    draws find one: the texts must tell the reference's targets apart."""
    for _ in range(8):
        target = sampler.fashioniq_target(reference)
        if target not in siblings:
            break
    siblings.append(target)
    return target


def _annotations(reference: Garment, target: Garment, knobs: Knobs, seed: int, key: tuple) -> list[str]:
    """The two annotators' texts of one pair, each from its own random stream."""
    return [
        vague_caption(reference, target, random.Random(stable_seed(seed, "vague", *key, annotator)), knobs.vagueness)
        for annotator in (0, 1)
    ]


def sample_fashioniq(knobs: Knobs, seed: int, ids: IdMaker) -> list[FashionIQSplit]:
    sizes = {
        "train": (knobs.fiq_train_pairs, 0),
        "val": (knobs.fiq_val_pairs, knobs.fiq_val_gallery),
        "test": (knobs.fiq_test_pairs, 0),
    }
    return [
        _fashioniq_split(cat, split, *sizes[split], knobs, seed, ids)
        for cat in FASHIONIQ_CATEGORIES
        for split in FASHIONIQ_SPLITS
    ]


# ----------------------------------------------------------------------------- shop sources


def _catalogue(category: str, n: int, sampler: GarmentSampler, knobs: Knobs) -> list[Garment]:
    """Products of one category: fresh ones, variants of earlier ones (1-3 changes) and
    near-duplicates, as shops list many similar items."""
    garments: list[Garment] = []
    for _ in range(n):
        roll = sampler.rng.random()
        if garments and roll < knobs.near_duplicates:
            garments.append(sampler.near_duplicate(sampler.rng.choice(garments)))
        elif garments and roll < knobs.near_duplicates + 0.3:
            garments.append(sampler.modified(sampler.rng.choice(garments)))
        else:
            garments.append(sampler.fresh(category))
    return garments


_F200K_SUBCATEGORIES = {
    "dress": {
        "mini": "mini_dresses",
        "knee": "casual_and_day_dresses",
        "midi": "cocktail_dresses",
        "maxi": "maxi_dresses",
    },
    "skirt": {"mini": "mini_skirts", "knee": "knee_length_skirts", "midi": "midi_skirts", "maxi": "maxi_skirts"},
    "pants": {"fitted": "skinny_pants", "regular": "straight-leg_pants", "loose": "wide-leg_and_flared_pants"},
}


def _fashion200k_subcategory(garment: Garment) -> str:
    """The product's folder, chosen like a shop would from its shape."""
    if garment.category in ("dress", "skirt"):
        return _F200K_SUBCATEGORIES[garment.category][garment.length]
    if garment.category == "pants":
        return _F200K_SUBCATEGORIES["pants"][garment.fit]
    if garment.category == "jacket":
        return (
            "vests"
            if garment.sleeve == "sleeveless"
            else "blazers"
            if garment.neckline == "collar"
            else "casual_jackets"
        )
    if garment.category == "shirt":
        return "blouses"
    return "tank_tops" if garment.sleeve == "sleeveless" else "t-shirts"


def sample_fashion200k(knobs: Knobs, seed: int, ids: IdMaker) -> list[ShopProduct]:
    products = []
    for f_category in FASHION200K_FOLDERS:
        rng = random.Random(stable_seed(seed, "fashion200k", f_category))
        sampler = GarmentSampler(knobs, rng)
        if f_category == "top":  # Fashion200k's tops hold both shirt-like and tee-like items
            garments = [
                g for c in ("shirt", "toptee") for g in _catalogue(c, (knobs.f200k_products + 1) // 2, sampler, knobs)
            ]
            rng.shuffle(garments)
        else:
            garments = _catalogue(f_category, knobs.f200k_products, sampler, knobs)
        for garment in garments[: knobs.f200k_products]:
            product_id = ids.digits(rng, 8)
            n_views = rng.randint(2, knobs.f200k_views)
            products.append(
                ShopProduct(
                    product_id=product_id,
                    category=f_category,
                    subcategory=_fashion200k_subcategory(garment),
                    split="test" if rng.random() < 0.2 else "train",
                    garment=garment,
                    description=fashion200k_description(garment, rng),
                    detection_scores=tuple(round(rng.uniform(0.55, 1.0), 4) for _ in range(n_views)),
                    pattern_seed=stable_seed(seed, "print", product_id),
                    view_seeds=tuple(stable_seed(seed, "view", product_id, v) for v in range(n_views)),
                )
            )
    return products


def sample_deepfashion(knobs: Knobs, seed: int) -> list[ModelShot]:
    rng = random.Random(stable_seed(seed, "deepfashion"))
    sampler = GarmentSampler(knobs, rng)
    garments = [g for c in DEEPFASHION_CATEGORIES for g in _catalogue(c, knobs.dfmm_products, sampler, knobs)]
    rng.shuffle(garments)
    shots = []
    for number, garment in enumerate(garments, start=1):
        men = garment.category in _MEN_CATEGORIES and rng.random() < 0.3
        gender, df_category = (
            ("MEN", _MEN_CATEGORIES[garment.category]) if men else ("WOMEN", DEEPFASHION_CATEGORIES[garment.category])
        )
        if garment.length == "shorts":
            df_category = "Shorts"
        product_id = f"{gender}-{df_category}-id_{number:08d}"
        n_views = rng.randint(2, knobs.dfmm_views)
        subject = "gentleman" if men else rng.choice(("lady", "woman"))
        shots.append(
            ModelShot(
                product_id=product_id,
                garment=garment,
                captions=tuple(deepfashion_caption(garment, subject, rng) for _ in range(n_views)),
                pattern_seed=stable_seed(seed, "print", product_id),
                view_seeds=tuple(stable_seed(seed, "view", product_id, v) for v in range(n_views)),
            )
        )
    return shots


# ----------------------------------------------------------------------------- the world


@dataclass
class WorldPlan:
    preset: str
    seed: int
    knobs: Knobs
    sources: dict[str, SourceOutput] = field(default_factory=dict)
    fashioniq: list[FashionIQSplit] = field(default_factory=list)

    def settings(self) -> dict:
        """What makes two worlds identical."""
        return {
            "preset": self.preset,
            "seed": self.seed,
            "knobs": self.knobs.to_json(),
            "world_format": WORLD_FORMAT,
            "cirbench_version": __version__,
        }

    def counts(self) -> dict:
        counts: dict = {f"{name}_images": len(out.images) for name, out in self.sources.items()}
        for s in self.fashioniq:
            counts[f"fashioniq_{s.category}_{s.split}_pairs"] = len(s.pairs)
            counts[f"fashioniq_{s.category}_{s.split}_images"] = len(s.images)
        counts["fashion200k_products"] = len({r["product_id"] for r in self.sources["fashion200k"].records})
        counts["deepfashion_mm_products"] = len({r["product_id"] for r in self.sources["deepfashion_mm"].records})
        return counts

    def images(self) -> list[ImageSpec]:
        return [spec for out in self.sources.values() for spec in out.images]


def plan_world(preset: str, seed: int, knobs: Knobs) -> WorldPlan:
    ids = IdMaker()
    plan = WorldPlan(preset, seed, knobs, fashioniq=sample_fashioniq(knobs, seed, ids))
    plan.sources["fashioniq"] = write_fashioniq(plan.fashioniq)
    plan.sources["fashion200k"] = write_fashion200k(sample_fashion200k(knobs, seed, ids))
    plan.sources["deepfashion_mm"] = write_deepfashion(sample_deepfashion(knobs, seed))
    return plan


def source_settings(settings: dict) -> dict:
    """What makes two worlds' shop sources identical, from a world's ``settings``: the seed, the
    source knobs and the sources' format (the images the tiny backbones are pre-trained on)."""
    knobs = settings.get("knobs") or {}
    return {"seed": settings["seed"], "sources_format": SOURCES_FORMAT,
            "knobs": {k: knobs[k] for k in SOURCE_KNOBS if k in knobs}}


def read_manifest(world_dir: Path) -> dict:
    path = Path(world_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(
            path, "manifest", "not a synthetic world (no world.json); write one with cirbench synth"
        ) from None
    except json.JSONDecodeError as exc:
        raise DataError(path, "manifest", f"not valid JSON: {exc}") from None


def check_target(out: Path, settings: dict) -> bool:
    """Whether ``out`` already holds this exact, complete world. Raises if writing there would
    overwrite anything else."""
    if not out.exists() or not any(out.iterdir()):
        return False
    if not (out / MANIFEST).is_file():
        raise DataError(out, "output folder", "is not empty and holds no synthetic world; choose an empty folder")
    manifest = read_manifest(out)
    there = manifest.get("settings") or {}
    if there != settings:
        flat_there, flat_asked = _flatten(there), _flatten(settings)
        differences = [
            f"{k}: {flat_there.get(k)} there, {flat_asked.get(k)} asked"
            for k in sorted(set(flat_there) | set(flat_asked))
            if flat_there.get(k) != flat_asked.get(k)
        ]
        raise DataError(
            out / MANIFEST,
            "settings",
            "the folder holds a world written with other settings ("
            + "; ".join(differences)
            + "); choose another folder",
        )
    return bool(manifest.get("complete"))


def _flatten(settings: dict) -> dict:
    flat = {k: v for k, v in settings.items() if k != "knobs"}
    return flat | dict(settings.get("knobs") or {})


def _write_manifest(out: Path, plan: WorldPlan, complete: bool) -> None:
    manifest = {
        "generator": "cirbench synth",
        "settings": plan.settings(),
        "counts": plan.counts(),
        "complete": complete,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _draw(job: tuple[ImageSpec, str, int, float, float]) -> None:
    spec, root, size, noise, jitter = job
    save_deterministic(render_spec(spec, size, noise, jitter), Path(root) / spec.path)


def write_world(
    out: Path,
    preset: str,
    seed: int,
    knobs: Knobs,
    workers: int | None = None,
    on_image: Callable[[int, int], None] | None = None,
) -> WorldPlan:
    """Write the world to ``out`` (created if needed); see ``write_plan``."""
    plan = plan_world(preset, seed, knobs)
    write_plan(Path(out), plan, workers, on_image)
    return plan


def write_plan(
    out: Path, plan: WorldPlan, workers: int | None = None, on_image: Callable[[int, int], None] | None = None
) -> bool:
    """Write a planned world. An identical complete world already there is left as is (returns
    False); an interrupted one with the same settings is rewritten identically; anything else
    in a non-empty folder is refused (DataError)."""
    if check_target(out, plan.settings()):
        return False
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(out, plan, complete=False)
    for source in plan.sources.values():
        for relative, text in source.files.items():
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            (out / relative).write_text(text)
    records = [r for source in plan.sources.values() for r in source.records]
    (out / GROUND_TRUTH).parent.mkdir(parents=True, exist_ok=True)
    (out / GROUND_TRUTH).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    for folder in sorted({(out / spec.path).parent for spec in plan.images()}):
        folder.mkdir(parents=True, exist_ok=True)
    _draw_all(out, plan, workers, on_image)
    _write_manifest(out, plan, complete=True)
    return True


def _draw_all(out: Path, plan: WorldPlan, workers: int | None, on_image: Callable[[int, int], None] | None) -> None:
    specs = plan.images()
    jobs = [(spec, str(out), plan.knobs.image_size, plan.knobs.noise, plan.knobs.view_jitter) for spec in specs]
    workers = workers or min(
        4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    # spawn, not fork: the caller may hold threads (torch, a progress bar) that fork would copy mid-state
    pool = (
        ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else _InProcess()
    )
    with pool:
        for done, _ in enumerate(pool.map(_draw, jobs, chunksize=64), start=1):
            if on_image:
                on_image(done, len(jobs))


class _InProcess:
    """The executor interface, run in this process (one worker: no process start-up cost)."""

    def __enter__(self) -> "_InProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def map(fn: Callable, items: Iterable, chunksize: int = 1) -> Iterable:
        return map(fn, items)


# ----------------------------------------------------------------------------- reading a world back


def load_ground_truth(world_dir: Path) -> list[dict]:
    path = Path(world_dir) / GROUND_TRUTH
    if not path.is_file():
        raise DataError(path, "ground truth", "missing; is this a world written by cirbench synth?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def garment_of(record: dict) -> Garment:
    return Garment(category=record["category"], **record["attributes"])


def image_caption_pairs(world_dir: Path) -> list[tuple[Path, str]]:
    """Every image of the world's Fashion200k-like and DeepFashion-like sources with a detailed
    caption of its attributes (for pre-training tiny backbones)."""
    world_dir = Path(world_dir)
    seed = read_manifest(world_dir)["settings"]["seed"]
    return [
        (world_dir / r["path"], detailed_caption(garment_of(r), random.Random(stable_seed(seed, "caption", r["path"]))))
        for r in load_ground_truth(world_dir)
        if r["source"] in ("fashion200k", "deepfashion_mm")
    ]


def pair_detailed_text(seed: int, category: str, split: str, index: int, reference: Garment, target: Garment) -> str:
    """The detailed (FACap-like) modification text of pair ``index`` of a FashionIQ-like split."""
    return detailed_modification(
        reference, target, random.Random(stable_seed(seed, "detailed", category, split, index))
    )


def fashioniq_detailed_texts(world_dir: Path, category: str, split: str) -> list[str]:
    """The detailed text of every pair of a FashionIQ-like caption file, in file order."""
    world_dir = Path(world_dir)
    seed = read_manifest(world_dir)["settings"]["seed"]
    garments = {r["image_id"]: garment_of(r) for r in load_ground_truth(world_dir) if r["source"] == "fashioniq"}
    path = world_dir / "fashioniq" / "captions" / f"cap.{category}.{split}.json"
    texts = []
    for index, entry in enumerate(json.loads(path.read_text())):
        if "target" not in entry:
            raise DataError(path, f"entry {index}", "has no target (test split): no detailed text can be made")
        texts.append(
            pair_detailed_text(seed, category, split, index, garments[entry["candidate"]], garments[entry["target"]])
        )
    return texts
