"""Qualitative retrieval grids in the style of the FACap paper's Figure 6.

One row per query: the reference image, the query text as the protocol forms it, then the top-k
retrieved gallery images, best first, with the target framed in green when it is among them.

The selected queries are scored through the model interface only (``preprocess``,
``encode_query``, ``encode_candidates``, ``similarity``), with the
gallery features taken from the evaluator's feature cache when it holds them. The displayed order
follows the evaluator's tie rule (the target is placed last among equal scores), so the shown
position of the target is the rank the evaluator reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from cirbench.data.images import open_rgb
from cirbench.errors import DataError
from cirbench.data.schema import CIRQuery, EvalSplit
from cirbench.eval.evaluator import eval_mode
from cirbench.eval.protocols import EvalProtocol

if TYPE_CHECKING:
    import torch
    from PIL import Image, ImageDraw, ImageFont

    from cirbench.interface import CIRModel

FRAME_COLOUR = (0, 170, 0)
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (110, 110, 110)


@dataclass(frozen=True)
class GridRow:
    query: CIRQuery
    text: str  # the query text the model was given
    retrieved: tuple[str, ...]  # top-k gallery ids, best first
    target_rank: int  # 0-based, the evaluator's tie rule


@dataclass(frozen=True)
class GridLayout:
    tile: int = 112  # square cell per image, pixels
    text_width: int = 240
    gap: int = 6
    header: int = 22
    frame: int = 4  # width of the target's frame
    font_size: int = 13

    def size(self, n_rows: int, k: int) -> tuple[int, int]:
        width = self.gap + self.tile + self.gap + self.text_width + self.gap + k * (self.tile + self.gap)
        return width, self.header + n_rows * (self.tile + self.gap)

    def row_top(self, row: int) -> int:
        return self.header + row * (self.tile + self.gap)

    def reference_left(self) -> int:
        return self.gap

    def text_left(self) -> int:
        return self.gap + self.tile + self.gap

    def result_left(self, position: int) -> int:
        return self.text_left() + self.text_width + self.gap + position * (self.tile + self.gap)


def qualitative_grid(
    model: "CIRModel",
    split: EvalSplit,
    protocol: EvalProtocol,
    query_indices: Sequence[int],
    *,
    out_path: str | Path,
    k: int = 5,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    layout: GridLayout = GridLayout(),
) -> Path:
    """Retrieve the top-k for the chosen queries of ``split`` and write the grid as a PNG."""
    rows = retrieve_top_k(model, split, protocol, query_indices, k=k, cache_dir=cache_dir, device=device)
    return render_grid(rows, split, out_path, k=k, layout=layout)


# ---- choosing queries ------------------------------------------------------------------------


def pick_queries(
    split: EvalSplit, ranks_row: Mapping[str, Any], *, k: int = 5, n_hits: int = 2, n_misses: int = 2, seed: int = 0
) -> list[int]:
    """Indices into ``split.queries`` of up to ``n_hits`` queries whose target ranked in the top
    k and up to ``n_misses`` whose target did not, drawn with ``seed``; hits first.

    ``ranks_row`` is a ranks.jsonl row of this split (its query ids and 0-based target ranks)."""
    import numpy as np

    position = {query.query_id: index for index, query in enumerate(split.queries)}
    unknown = [query_id for query_id in ranks_row["query_ids"] if query_id not in position]
    if unknown:
        raise DataError(split.source, unknown[0], f"ranks name {len(unknown)} query id(s) that this split does not hold")
    ranked = list(zip(ranks_row["query_ids"], ranks_row["ranks"]))
    hits = [position[query_id] for query_id, rank in ranked if rank < k]
    misses = [position[query_id] for query_id, rank in ranked if rank >= k]
    rng = np.random.default_rng(seed)
    return _draw(rng, hits, n_hits) + _draw(rng, misses, n_misses)


def _draw(rng, indices: list[int], n: int) -> list[int]:
    chosen = rng.choice(len(indices), size=min(n, len(indices)), replace=False)
    return sorted(indices[i] for i in chosen)


# ---- retrieval through the model interface ---------------------------------------------------


def retrieve_top_k(
    model: "CIRModel",
    split: EvalSplit,
    protocol: EvalProtocol,
    query_indices: Sequence[int],
    *,
    k: int = 5,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 32,
) -> list[GridRow]:
    """The top-k gallery ids and the target's rank for each chosen query."""
    from cirbench.eval.retrieval import ranks_from_scores

    queries = [_query(split, index) for index in query_indices]
    texts = [protocol.query_text(q.captions) for q in queries]
    columns = {image_id: column for column, image_id in enumerate(split.gallery)}
    for query in queries:
        if query.target_id not in columns:
            raise DataError(split.source, query.query_id, f"target {query.target_id!r} is not in the gallery")
    with eval_mode(model):
        candidates = _gallery_features(model, split, cache_dir, device, batch_size).to(device)
        references = _load_images(model, split, [q.reference_id for q in queries]).to(device)
        scores = model.similarity(model.encode_query(references, texts), candidates).float().cpu()
    targets, excluded = _target_and_excluded_columns(queries, columns, protocol)
    ranks = ranks_from_scores(scores, targets, excluded)
    return [
        GridRow(query, text, _top_ids(split, row_scores, int(target), int(skip), k), int(rank))
        for query, text, row_scores, target, skip, rank in zip(queries, texts, scores, targets, excluded, ranks)
    ]


def _query(split: EvalSplit, index: int) -> CIRQuery:
    if not 0 <= index < len(split.queries):
        raise DataError(split.source, f"query index {index}", f"out of range (the split has {len(split.queries)} queries)")
    query = split.queries[index]
    if query.target_id is None:
        raise DataError(split.source, query.query_id, "query has no target (a test split has none to show)")
    return query


def _target_and_excluded_columns(queries, columns, protocol) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Target column per query, and the column left out of its ranking (-1: none)."""
    import torch

    targets = torch.tensor([columns[q.target_id] for q in queries], dtype=torch.long)
    excluded = [columns.get(q.reference_id, -1) if protocol.remove_reference else -1 for q in queries]
    return targets, torch.tensor(excluded, dtype=torch.long)


def _top_ids(split: EvalSplit, scores: "torch.Tensor", target: int, excluded: int, k: int) -> tuple[str, ...]:
    """Best first; among equal scores the target comes last (the evaluator's tie rule)."""
    import numpy as np

    values = scores.numpy()
    is_target = np.zeros(len(values), dtype=bool)
    is_target[target] = True
    order = [c for c in np.lexsort((is_target, -values)) if c != excluded or c == target]
    return tuple(split.gallery[c] for c in order[:k])


def _gallery_features(model: "CIRModel", split: EvalSplit, cache_dir, device: str, batch_size: int) -> "torch.Tensor":
    """The evaluator's cached gallery features when present, else encoded here (and cached)."""
    from cirbench.eval.retrieval import FeatureCache, gallery_key

    _image_paths(split, split.gallery)  # every gallery image has a file, before keying on them
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    checkpoint = model.checkpoint_hash()
    key = gallery_key(model.meta.spec, checkpoint, split.gallery, split.image_paths)
    cached = cache.load(key, len(split.gallery)) if cache else None
    if cached is not None:
        return cached
    features = _encode_gallery(model, split, device, batch_size)
    if cache:
        cache.save(key, features, {"model": model.meta.spec, "checkpoint_hash": checkpoint, "dataset": split.dataset,
                                   "category": split.category, "split": split.split, "n_gallery": str(len(split.gallery))})
    return features


def _encode_gallery(model: "CIRModel", split: EvalSplit, device: str, batch_size: int) -> "torch.Tensor":
    import torch

    outputs = []
    for start in range(0, len(split.gallery), batch_size):
        images = _load_images(model, split, split.gallery[start : start + batch_size]).to(device)
        outputs.append(model.encode_candidates(images).float().cpu())
    return torch.cat(outputs)


def _image_paths(split: EvalSplit, image_ids: Sequence[str]) -> list[Path]:
    missing = [i for i in image_ids if i not in split.image_paths]
    if missing:
        raise DataError(split.source, missing[0], f"no image file for {len(missing)} image(s) of {split.category}/{split.split}")
    return [Path(split.image_paths[i]) for i in image_ids]


def _load_images(model: "CIRModel", split: EvalSplit, image_ids: Sequence[str]) -> "torch.Tensor":
    import torch

    return torch.stack([model.preprocess(open_rgb(path)) for path in _image_paths(split, image_ids)])


# ---- drawing ---------------------------------------------------------------------------------


def render_grid(
    rows: Sequence[GridRow], split: EvalSplit, out_path: str | Path, *, k: int, layout: GridLayout = GridLayout()
) -> Path:
    """Draw the rows (reference, text, top-k with the target framed) and save a PNG."""
    from PIL import Image, ImageDraw, ImageFont

    if not rows:
        raise ValueError("no queries to show in the grid")
    canvas = Image.new("RGB", layout.size(len(rows), k), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=layout.font_size)
    _draw_header(draw, font, layout, k)
    for index, row in enumerate(rows):
        _draw_row(canvas, draw, font, layout, split, index, row)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path, format="PNG")
    return out_path


def _draw_header(draw: "ImageDraw.ImageDraw", font: "ImageFont.FreeTypeFont", layout: GridLayout, k: int) -> None:
    labels = [(layout.reference_left(), "reference"), (layout.text_left(), "query text")]
    labels += [(layout.result_left(p), f"#{p + 1}") for p in range(k)]
    for left, label in labels:
        draw.text((left, 3), label, fill=MUTED, font=font)


def _draw_row(canvas, draw, font, layout: GridLayout, split: EvalSplit, index: int, row: GridRow) -> None:
    top = layout.row_top(index)
    _paste_tile(canvas, split, row.query.reference_id, layout.reference_left(), top, layout.tile)
    line_height = layout.font_size + 4
    text_lines = _wrap(draw, font, row.text, layout.text_width)
    room = max(1, layout.tile // line_height - 1)  # the last line is kept for the target's rank
    if len(text_lines) > room:
        text_lines = text_lines[: room - 1] + [text_lines[room - 1] + " …"]
    for number, line in enumerate(text_lines):
        draw.text((layout.text_left(), top + number * line_height), line, fill=INK, font=font)
    shown = "" if row.target_rank < len(row.retrieved) else " (not shown)"
    rank_line = f"target at #{row.target_rank + 1}{shown}"
    draw.text((layout.text_left(), top + len(text_lines) * line_height), rank_line, fill=MUTED, font=font)
    for position, image_id in enumerate(row.retrieved):
        left = layout.result_left(position)
        _paste_tile(canvas, split, image_id, left, top, layout.tile)
        if image_id == row.query.target_id:
            box = (left, top, left + layout.tile - 1, top + layout.tile - 1)
            draw.rectangle(box, outline=FRAME_COLOUR, width=layout.frame)


def _paste_tile(canvas: "Image.Image", split: EvalSplit, image_id: str, left: int, top: int, tile: int) -> None:
    """The image scaled to fit the tile, centred, aspect ratio kept."""
    from PIL import ImageOps

    image = ImageOps.contain(open_rgb(_image_paths(split, [image_id])[0]), (tile, tile))
    canvas.paste(image, (left + (tile - image.width) // 2, top + (tile - image.height) // 2))


def _wrap(draw, font, text: str, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels (a word longer than the width gets its own line)."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and draw.textlength(candidate, font=font) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines
