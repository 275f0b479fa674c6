"""Seeded garment renderer (PIL + numpy): a flat-lay drawing whose attributes are visible.

The silhouette carries category, sleeve length, neckline, garment length and fit; a texture in
garment coordinates carries the pattern; the main colour fills the garment. A view (rotation,
scale, shift, lighting, background, sensor noise) is drawn from its own seed, so several views
of one product are different images of the same item, and the same seeds give the same pixels.

Shapes are laid out in garment coordinates (u right, v down, both in [0, 1]), framed so the
garment fills the picture as in a product photo, and mapped to pixels by the view. Shapes are
drawn at twice the output size and box-filtered down (anti-aliased edges).
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cirbench.synth.attributes import COLOURS, Garment

SUPERSAMPLE = 2
FILL = 0.84  # share of the picture the garment's longer side takes before view jitter
NECK_Y, NECK_HALF_WIDTH = 0.16, 0.07
BACKGROUNDS = ((246, 246, 246), (238, 235, 228), (228, 232, 238), (240, 236, 242), (214, 214, 210))
FLOWER_COLOURS = ((250, 250, 245), (245, 200, 60), (230, 90, 130), (150, 200, 240), (120, 190, 110))

Point = tuple[float, float]


@dataclass(frozen=True)
class ImageSpec:
    """One image file to draw: which garment, its print (fixed per product) and its view."""

    path: str  # relative to the world folder; .png or .jpeg/.jpg
    garment: Garment
    pattern_seed: int
    view_seed: int


@dataclass(frozen=True)
class View:
    """How one photo of a product is taken."""

    rotation_deg: float
    scale: float
    shift: Point  # fraction of the canvas
    light_angle: float
    light_strength: float
    brightness: float
    background: tuple[int, int, int]


def sample_view(seed: int, jitter: float) -> View:
    """A random view; ``jitter`` in [0, 1] scales pose, crop, lighting and background changes."""
    rng = random.Random(seed)
    base = BACKGROUNDS[rng.randrange(len(BACKGROUNDS))]
    background = tuple(int(min(255, max(0, c + rng.randint(-8, 8) * jitter))) for c in base)
    return View(
        rotation_deg=rng.uniform(-8, 8) * jitter,
        scale=1.0 - rng.uniform(0, 0.2) * jitter,
        shift=(rng.uniform(-0.06, 0.06) * jitter, rng.uniform(-0.05, 0.05) * jitter),
        light_angle=rng.uniform(0, 2 * math.pi),
        light_strength=rng.uniform(0.0, 0.18) * jitter,
        brightness=1.0 + rng.uniform(-0.08, 0.08) * jitter,
        background=background,  # type: ignore[arg-type]
    )


@dataclass
class Layers:
    """Garment-space shapes: ``body`` is fabric, ``cuts`` show the background (necklines),
    ``trims`` are collar flaps and waistbands in a plain shade, ``lines`` are seams and buttons."""

    body: list[list[Point]]
    cuts: list[list[Point]]
    trims: list[list[Point]]
    lines: list[list[Point]]


def _mirror(points: list[Point]) -> list[Point]:
    return [(1.0 - u, v) for u, v in points]


def _ellipse(cu: float, cv: float, ru: float, rv: float, n: int = 24) -> list[Point]:
    return [(cu + ru * math.cos(2 * math.pi * k / n), cv + rv * math.sin(2 * math.pi * k / n)) for k in range(n)]


def _rect(u0: float, v0: float, u1: float, v1: float) -> list[Point]:
    return [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]


_FIT_EXTRA = {"fitted": 0.0, "regular": 0.03, "loose": 0.07}


def _torso(garment: Garment, hem_v: float, hem_half: float, waist_v: float) -> list[Point]:
    extra = _FIT_EXTRA[garment.fit]
    shoulder = 0.19 + extra * 0.4 - (0.06 if garment.sleeve == "sleeveless" else 0.0)
    armpit = 0.17 + extra * 0.5
    waist = 0.125 + extra
    left = [
        (0.5 - NECK_HALF_WIDTH, NECK_Y),
        (0.5 - shoulder, 0.2),
        (0.5 - armpit, 0.33),
        (0.5 - waist, waist_v),
        (0.5 - hem_half, hem_v),
    ]
    return left + _mirror(left)[::-1]


def _sleeve(garment: Garment) -> list[Point]:
    """The left sleeve: a quad from the shoulder seam, angled down and out."""
    extra = _FIT_EXTRA[garment.fit]
    length = {"short": 0.12, "elbow": 0.24, "long": 0.40}[garment.sleeve]
    cuff = 0.07 + extra * 0.5
    shoulder = (0.5 - 0.19 - extra * 0.4, 0.2)
    armpit = (0.5 - 0.17 - extra * 0.5, 0.33)
    angle = math.radians(35)
    down = (-math.sin(angle), math.cos(angle))
    inward = (math.cos(angle), math.sin(angle))
    end_outer = (shoulder[0] + down[0] * length, shoulder[1] + down[1] * length)
    end_inner = (end_outer[0] + inward[0] * cuff, end_outer[1] + inward[1] * cuff)
    return [shoulder, end_outer, end_inner, armpit]


def _neckline(layers: Layers, neckline: str) -> None:
    top = NECK_Y - 0.005
    if neckline == "round":
        layers.cuts.append(_ellipse(0.5, NECK_Y, NECK_HALF_WIDTH, 0.06))
    elif neckline == "v-neck":
        layers.cuts.append([(0.5 - 0.075, top), (0.5 + 0.075, top), (0.5, 0.3)])
    elif neckline == "square":
        layers.cuts.append(_rect(0.5 - NECK_HALF_WIDTH, top, 0.5 + NECK_HALF_WIDTH, 0.24))
    elif neckline == "turtleneck":
        layers.body.append(_rect(0.5 - 0.055, 0.09, 0.5 + 0.055, NECK_Y + 0.01))
        layers.lines.append([(0.5 - 0.055, 0.125), (0.5 + 0.055, 0.125)])
    elif neckline == "collar":
        layers.cuts.append([(0.5 - 0.045, top), (0.5 + 0.045, top), (0.5, 0.225)])
        flap = [(0.5 - 0.08, 0.145), (0.5 - 0.005, 0.215), (0.5 - 0.06, 0.245), (0.5 - 0.105, 0.19)]
        layers.trims += [flap, _mirror(flap)]


def _upper_layers(garment: Garment, hem_v: float, hem_half: float, waist_v: float) -> Layers:
    layers = Layers(body=[_torso(garment, hem_v, hem_half, waist_v)], cuts=[], trims=[], lines=[])
    if garment.sleeve != "sleeveless":
        sleeve = _sleeve(garment)
        layers.body += [sleeve, _mirror(sleeve)]
    _neckline(layers, garment.neckline)
    return layers


def _buttons(layers: Layers, u: float, v0: float, v1: float, count: int) -> None:
    for k in range(count):
        v = v0 + (v1 - v0) * (k + 0.5) / count
        layers.lines.append(_ellipse(u, v, 0.008, 0.008, n=8))


def _top_layers(garment: Garment) -> Layers:
    extra = _FIT_EXTRA[garment.fit]
    hem_v = {"cropped": 0.5, "regular": 0.66, "long": 0.8}[garment.length]
    layers = _upper_layers(garment, hem_v, 0.16 + extra * 1.4, min(0.46, hem_v - 0.03))
    if garment.category == "shirt":
        layers.lines.append([(0.5, 0.24), (0.5, hem_v)])
        _buttons(layers, 0.52, 0.24, hem_v, 5)
    elif garment.category == "jacket":
        layers.lines.append([(0.5, 0.22), (0.5, hem_v)])
        _buttons(layers, 0.53, 0.3, hem_v, 3)
        if garment.neckline == "collar":  # lapels instead of a shirt collar
            layers.trims = [
                [(0.5 - 0.075, 0.15), (0.5 - 0.01, 0.3), (0.5 - 0.12, 0.24)],
                [(0.5 + 0.075, 0.15), (0.5 + 0.01, 0.3), (0.5 + 0.12, 0.24)],
            ]
    return layers


def _dress_layers(garment: Garment) -> Layers:
    waist_v = 0.44
    hem_v = {"mini": 0.6, "knee": 0.72, "midi": 0.83, "maxi": 0.94}[garment.length]
    hem_half = {"fitted": 0.17, "regular": 0.24, "loose": 0.32}[garment.fit]
    layers = _upper_layers(garment, waist_v, 0.125 + _FIT_EXTRA[garment.fit], waist_v)
    waist_half = 0.125 + _FIT_EXTRA[garment.fit]
    layers.body.append(
        [
            (0.5 - waist_half, waist_v - 0.01),
            (0.5 + waist_half, waist_v - 0.01),
            (0.5 + hem_half, hem_v),
            (0.5, hem_v + 0.015),
            (0.5 - hem_half, hem_v),
        ]
    )
    if garment.neckline == "collar":
        layers.lines.append([(0.5, 0.23), (0.5, waist_v)])
    return layers


def _skirt_layers(garment: Garment) -> Layers:
    hem_v = {"mini": 0.45, "knee": 0.62, "midi": 0.75, "maxi": 0.9}[garment.length]
    hem_half = {"fitted": 0.17, "regular": 0.25, "loose": 0.33}[garment.fit]
    waist_half = 0.14
    body = [
        (0.5 - waist_half, 0.14),
        (0.5 + waist_half, 0.14),
        (0.5 + hem_half, hem_v),
        (0.5, hem_v + 0.02),
        (0.5 - hem_half, hem_v),
    ]
    return Layers(body=[body], cuts=[], trims=[_rect(0.5 - waist_half, 0.14, 0.5 + waist_half, 0.19)], lines=[])


def _pants_layers(garment: Garment) -> Layers:
    hem_v = {"shorts": 0.42, "knee": 0.6, "cropped": 0.75, "full": 0.92}[garment.length]
    leg_half = {"fitted": 0.045, "regular": 0.065, "loose": 0.1}[garment.fit]
    crotch_v = min(0.38, hem_v - 0.07)
    hip, leg_centre = 0.165, 0.5 - 0.1 - leg_half * 0.4
    left = [(0.5 - 0.16, 0.1), (0.5 - hip, 0.3), (leg_centre - leg_half, hem_v), (leg_centre + leg_half, hem_v)]
    body = left + [(0.5, crotch_v)] + _mirror(left)[::-1]
    return Layers(
        body=[body],
        cuts=[],
        trims=[_rect(0.5 - 0.16, 0.1, 0.5 + 0.16, 0.14)],
        lines=[[(0.5, 0.14), (0.5, crotch_v - 0.04)]],
    )


def garment_layers(garment: Garment) -> Layers:
    """The garment's shapes, framed: centred, its longer side filling FILL of the picture."""
    if garment.category == "dress":
        layers = _dress_layers(garment)
    elif garment.category == "skirt":
        layers = _skirt_layers(garment)
    elif garment.category == "pants":
        layers = _pants_layers(garment)
    else:
        layers = _top_layers(garment)
    return _framed(layers)


def _framed(layers: Layers) -> Layers:
    points = [p for shape in layers.body + layers.trims for p in shape]
    us, vs = [p[0] for p in points], [p[1] for p in points]
    centre_u, centre_v = (min(us) + max(us)) / 2, (min(vs) + max(vs)) / 2
    zoom = FILL / max(max(us) - min(us), max(vs) - min(vs))

    def frame(shapes: list[list[Point]]) -> list[list[Point]]:
        return [[(0.5 + (u - centre_u) * zoom, 0.5 + (v - centre_v) * zoom) for u, v in shape] for shape in shapes]

    return Layers(frame(layers.body), frame(layers.cuts), frame(layers.trims), frame(layers.lines))


# ----------------------------------------------------------------------------- textures


def _pattern_mask(pattern: str, u: np.ndarray, v: np.ndarray, rng: random.Random) -> np.ndarray:
    """Where the pattern's secondary ink goes, as values in [0, 1] over garment coordinates.
    For floral the value also selects a flower colour (1 and 2)."""
    if pattern == "solid":
        return np.zeros_like(u)
    if pattern == "stripes":
        along = v if rng.random() < 0.6 else u
        return (((along * rng.uniform(9, 12) + rng.random()) % 1.0) < 0.35).astype(np.float32)
    if pattern == "dots":
        period = 1.0 / rng.uniform(8, 10)
        du = (u + rng.random() * period) % period - period / 2
        dv = (v + 0.5 * period * (np.floor(u / period) % 2)) % period - period / 2
        return (np.hypot(du, dv) < period * 0.28).astype(np.float32)
    if pattern == "checks":
        freq = rng.uniform(7, 9)
        return ((np.floor(u * freq) + np.floor(v * freq)) % 2).astype(np.float32)
    if pattern == "plaid":
        freq = rng.uniform(5, 6.5)
        bands = 0.5 * ((u * freq) % 1.0 < 0.3) + 0.5 * ((v * freq) % 1.0 < 0.3)
        thin = ((u * freq + 0.6) % 1.0 < 0.1) | ((v * freq + 0.6) % 1.0 < 0.1)
        return np.where(thin, 1.0, bands * 0.6).astype(np.float32)
    if pattern == "floral":
        return _floral_mask(u, v, rng)
    raise ValueError(f"unknown pattern {pattern!r}")


def _floral_mask(u: np.ndarray, v: np.ndarray, rng: random.Random) -> np.ndarray:
    period = 1.0 / rng.uniform(4.5, 5.5)
    cell_u, cell_v = np.floor(u / period), np.floor(v / period)
    # a per-cell pseudo-random offset and colour, so flowers do not sit on a visible grid
    hashed = np.sin(cell_u * 12.9898 + cell_v * 78.233 + rng.random() * 10) * 43758.5453
    jitter = hashed - np.floor(hashed)
    du = (u % period) - period * (0.35 + 0.3 * jitter)
    dv = (v % period) - period * (0.65 - 0.3 * jitter)
    radius, angle = np.hypot(du, dv), np.arctan2(dv, du)
    petals = radius < period * 0.32 * (0.55 + 0.45 * np.abs(np.cos(2.5 * angle)))
    centre = radius < period * 0.09
    return np.where(centre, 2.0, np.where(petals, 1.0 + (jitter > 0.5), 0.0)).astype(np.float32)


def _contrast_ink(main: np.ndarray) -> np.ndarray:
    light = luminance_rgb(main) < 140
    return np.array((236, 236, 230) if light else (44, 44, 50), dtype=np.float32)


def luminance_rgb(rgb: np.ndarray) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _fabric(garment: Garment, mask: np.ndarray, rng: random.Random) -> np.ndarray:
    """Per-pixel fabric colour [H, W, 3] for the garment's pattern and main colour."""
    main = np.array(COLOURS[garment.colour], dtype=np.float32)
    out = np.broadcast_to(main, (*mask.shape, 3)).copy()
    if garment.pattern in ("stripes", "dots"):
        out += (_contrast_ink(main) - main) * mask[..., None]
    elif garment.pattern == "checks":
        out *= 1.0 - 0.45 * mask[..., None]
    elif garment.pattern == "plaid":
        darker = main * 0.55
        lines = _contrast_ink(main)
        out = np.where((mask == 1.0)[..., None], lines, out + (darker - main) * (mask / 0.6)[..., None])
    elif garment.pattern == "floral":
        petal_a, petal_b = np.array(rng.sample(FLOWER_COLOURS, 2), dtype=np.float32)
        out = np.where((mask == 1.0)[..., None], petal_a, out)
        out = np.where((mask == 2.0)[..., None], petal_b, out)
    return out


# ----------------------------------------------------------------------------- drawing


def _to_canvas(points: list[Point], view: View, canvas: int) -> list[Point]:
    """Garment coordinates -> pixel coordinates on a square canvas of ``canvas`` pixels."""
    cos, sin = math.cos(math.radians(view.rotation_deg)), math.sin(math.radians(view.rotation_deg))
    out = []
    for u, v in points:
        x, y = (u - 0.5) * view.scale, (v - 0.5) * view.scale
        xr, yr = cos * x - sin * y, sin * x + cos * y
        out.append(((xr + 0.5 + view.shift[0]) * canvas, (yr + 0.5 + view.shift[1]) * canvas))
    return out


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-0.5, 0.5), shared by every image of one size."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return (xs + 0.5) / size - 0.5, (ys + 0.5) / size - 0.5


def _garment_coords(view: View, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel, the garment coordinates it shows (inverse of ``_to_canvas``)."""
    xs, ys = _pixel_grid(size)
    x, y = xs - view.shift[0], ys - view.shift[1]
    cos, sin = math.cos(math.radians(view.rotation_deg)), math.sin(math.radians(view.rotation_deg))
    u = (cos * x + sin * y) / view.scale + 0.5
    v = (-sin * x + cos * y) / view.scale + 0.5
    return u, v


def _draw_mask(shapes: list[list[Point]], view: View, size: int, outline: bool = False) -> np.ndarray:
    """Coverage in [0, 1] at ``size``: drawn at SUPERSAMPLE x the size and box-filtered, so
    edges are anti-aliased."""
    canvas = size * SUPERSAMPLE
    image = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(image)
    for shape in shapes:
        points = _to_canvas(shape, view, canvas)
        if outline and len(shape) == 2:
            draw.line(points, fill=255, width=SUPERSAMPLE)
        else:
            draw.polygon(points, fill=255)
    image = image.resize((size, size), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32) / 255.0


def _lighting(view: View, size: int) -> np.ndarray:
    xs, ys = _pixel_grid(size)
    ramp = xs * math.cos(view.light_angle) + ys * math.sin(view.light_angle)
    return (view.brightness * (1.0 + 2 * view.light_strength * ramp))[..., None]


def _shade(rgb: np.ndarray) -> np.ndarray:
    """A plain trim colour that stands out from the fabric: lighter on dark, darker on light."""
    return rgb * 0.62 if luminance_rgb(rgb) > 150 else rgb + (255 - rgb) * 0.45


def render(garment: Garment, view: View, size: int, noise: float, pattern_seed: int, noise_seed: int) -> Image.Image:
    """Draw one view of a garment as an RGB image of ``size`` x ``size`` pixels."""
    layers = garment_layers(garment)
    fabric_mask = _draw_mask(layers.body, view, size) * (1.0 - _draw_mask(layers.cuts, view, size))
    trim = _draw_mask(layers.trims, view, size)
    main = np.array(COLOURS[garment.colour], dtype=np.float32)

    u, v = _garment_coords(view, size)
    print_rng = random.Random(pattern_seed)  # the same print on every view of the product
    colour = _fabric(garment, _pattern_mask(garment.pattern, u, v, print_rng), print_rng)
    if layers.trims:
        colour = _blend(colour, _shade(main), trim)
    if layers.lines:
        colour = _blend(colour, main * 0.45, _draw_mask(layers.lines, view, size, outline=True))
    coverage = np.maximum(fabric_mask, trim)
    background = np.array(view.background, dtype=np.float32)
    image = _blend(np.broadcast_to(background, colour.shape), colour, coverage)
    image *= _lighting(view, size) * (1.0 - 0.3 * _edge(coverage))[..., None]
    return _to_image(image, noise, noise_seed)


def _blend(base: np.ndarray, over: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return base + (over - base) * alpha[..., None]


def _edge(mask: np.ndarray) -> np.ndarray:
    """A thin outline around a mask, so light garments stay visible on light backgrounds."""
    grown = mask.copy()
    np.maximum(grown[1:], mask[:-1], out=grown[1:])
    np.maximum(grown[:-1], mask[1:], out=grown[:-1])
    np.maximum(grown[:, 1:], mask[:, :-1], out=grown[:, 1:])
    np.maximum(grown[:, :-1], mask[:, 1:], out=grown[:, :-1])
    return grown - mask


def _to_image(pixels: np.ndarray, noise: float, seed: int) -> Image.Image:
    if noise > 0:
        pixels = pixels + np.random.default_rng(seed).standard_normal(pixels.shape, dtype=np.float32) * (noise * 255.0)
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), "RGB")


def render_spec(spec: ImageSpec, size: int, noise: float, jitter: float) -> Image.Image:
    view = sample_view(spec.view_seed, jitter)
    return render(spec.garment, view, size, noise, spec.pattern_seed, spec.view_seed + 1)


def save_deterministic(image: Image.Image, path: Path) -> None:
    """PNG or JPEG with fixed settings and no metadata: the same pixels give the same bytes.
    Encoded in memory and written in one call (many small writes cost more than the encoding)."""
    buffer = io.BytesIO()
    if path.suffix.lower() == ".png":
        image.save(buffer, format="PNG", compress_level=6)
    else:
        image.save(buffer, format="JPEG", quality=92, optimize=False, progressive=False, subsampling=0)
    path.write_bytes(buffer.getvalue())
