"""The data-size curve (PNG + PDF, deterministic) and the qualitative grids (layout, target frame,
ranks that agree with the evaluator)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_cir import FakeCIRModel, make_split
from PIL import Image
from report_fixtures import CATEGORIES, eval_result, hit_ranks, write_result_run

from cirbench.data.schema import CIRQuery, EvalSplit
from cirbench.eval.evaluator import evaluate
from cirbench.eval.protocols import FASHIONIQ_V1
from cirbench.interface import ModelMeta
from cirbench.report.grids import FRAME_COLOUR, GridLayout, pick_queries, qualitative_grid, retrieve_top_k
from cirbench.report.plots import CurvePoint, curve_points, plot_data_size_curve
from cirbench.report.tables import load_tables
from cirbench.results import rank_rows

# ---- data-size curve -------------------------------------------------------------------------


def curve(datasets=("synth_fashioniq", "synth_enhfashioniq"), fractions=(0.1, 0.5, 1.0)):
    return [
        CurvePoint(fraction, dataset, metric, base + 10 * fraction, base + 10 * fraction - 2, base + 10 * fraction + 2)
        for dataset in datasets
        for metric, base in (("avg_r10", 20.0), ("avg_r50", 40.0), ("avg", 30.0))
        for fraction in fractions
    ]


def test_curve_writes_non_empty_png_and_pdf_with_identical_bytes_on_rerun(tmp_path):
    first = plot_data_size_curve(curve(), tmp_path / "one" / "data_size")
    again = plot_data_size_curve(curve(), tmp_path / "two" / "data_size")
    assert [p.name for p in first] == ["data_size.png", "data_size.pdf"]
    png, pdf = (p.read_bytes() for p in first)
    assert png.startswith(b"\x89PNG") and pdf.startswith(b"%PDF") and len(png) > 10_000 and len(pdf) > 5_000
    assert [p.read_bytes() for p in again] == [png, pdf]
    with Image.open(first[0]) as image:  # two panels side by side
        assert image.width > 1.5 * image.height


def test_curve_refuses_empty_ambiguous_or_out_of_range_points(tmp_path):
    with pytest.raises(ValueError, match="no points"):
        plot_data_size_curve([], tmp_path / "x")
    with pytest.raises(ValueError, match="two points at fraction 0.5"):
        plot_data_size_curve(curve() + curve(fractions=(0.5,)), tmp_path / "x")
    with pytest.raises(ValueError, match="not in"):
        plot_data_size_curve(curve(fractions=(0.0, 1.0)), tmp_path / "x")


def test_curve_points_take_the_tables_averages_and_intervals(tmp_path):
    ranks = {category: hit_ranks(100, hits) for category, hits in zip(CATEGORIES, (20, 40, 60))}
    write_result_run(tmp_path, [eval_result("fashionblip2:synth_tiny", "c1", ranks)])
    tables = load_tables([tmp_path], ci=True)
    points = {p.metric: p for p in curve_points(0.25, tables)}
    assert sorted(points) == ["avg", "avg_r10", "avg_r50"]
    assert points["avg_r10"].value == pytest.approx(40.0) and points["avg"].value == pytest.approx(40.0)
    assert all(p.fraction == 0.25 and p.dataset == "synth_fashioniq" for p in points.values())
    assert all(p.ci_low < p.value < p.ci_high for p in points.values())


def test_curve_points_need_one_row_or_a_named_model(tmp_path):
    ranks = {category: hit_ranks(50, 10) for category in CATEGORIES}
    write_result_run(tmp_path, [eval_result("a:tiny", "c1", ranks), eval_result("b:tiny", "c2", ranks)])
    tables = load_tables([tmp_path], ci=True)
    with pytest.raises(ValueError, match="exactly one measured row"):
        curve_points(1.0, tables)
    assert {p.metric for p in curve_points(1.0, tables, model="b:tiny")} == {"avg", "avg_r10", "avg_r50"}


# ---- qualitative grids -----------------------------------------------------------------------

PALETTE = {"red": (220, 30, 30), "blue": (30, 40, 220), "yellow": (230, 220, 40),
           "grey": (128, 128, 128), "purple": (130, 40, 160), "orange": (240, 140, 20)}


class ColourModel:
    """Candidates: an image's mean colour; query: the colour its text names. A query whose text
    names its target's colour ranks the target first."""

    meta = ModelMeta("colour", "test", "cosine", (3,), (3,), image_size=8)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image.resize((8, 8)), dtype=np.float32) / 255).permute(2, 0, 1)

    def encode_candidates(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))

    def encode_query(self, ref_images: torch.Tensor, texts) -> torch.Tensor:
        return torch.tensor([PALETTE[text.split()[-1]] for text in texts], dtype=torch.float32) / 255

    def similarity(self, q, c):  # the grid scores through the model's similarity (here: cosine)
        return torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(c, dim=-1).T

    def checkpoint_hash(self) -> str:
        return "colour-test"


def colour_split(root: Path) -> EvalSplit:
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rgb in PALETTE.items():
        paths[name] = root / f"{name}.png"
        Image.new("RGB", (20, 30), rgb).save(paths[name])  # not square: tiles keep the aspect ratio
    queries = [
        CIRQuery("q0", "dress", "grey", "red", ("is in red",)),  # text names the target: rank 0
        CIRQuery("q1", "dress", "yellow", "blue", ("is in orange",)),  # blue is far from orange
    ]
    return EvalSplit("colours", "dress", "val", queries, list(PALETTE), paths, root / "cap.dress.val.json")


def test_grid_has_its_layout_and_frames_the_target_only_where_retrieved(tmp_path):
    split, model, layout, k = colour_split(tmp_path / "img"), ColourModel(), GridLayout(), 3
    rows = retrieve_top_k(model, split, FASHIONIQ_V1, [0, 1], k=k)
    assert rows[0].retrieved[0] == "red" and rows[0].target_rank == 0
    assert "blue" not in rows[1].retrieved and rows[1].target_rank >= k
    assert rows[1].text == "Is in orange" and rows[1].retrieved[0] == "orange"

    out = qualitative_grid(model, split, FASHIONIQ_V1, [0, 1], k=k, out_path=tmp_path / "grid.png", layout=layout)
    with Image.open(out) as image:
        grid = np.asarray(image.convert("RGB"))
    assert (grid.shape[1], grid.shape[0]) == layout.size(2, k)
    top0, top1, middle = layout.row_top(0), layout.row_top(1), layout.tile // 2
    first = layout.result_left(0)
    assert tuple(grid[top0 + 1, first + middle]) == FRAME_COLOUR  # frame on the hit's first tile
    assert tuple(grid[top0 + middle, first + middle]) == PALETTE["red"]  # the image inside it
    assert tuple(grid[top0 + middle, layout.reference_left() + middle]) == PALETTE["grey"]
    assert tuple(grid[top1 + middle, first + middle]) == PALETTE["orange"]
    miss_strip = grid[top1 : top1 + layout.tile, first:]
    assert not np.all(miss_strip == FRAME_COLOUR, axis=-1).any()  # the missed target is not shown


@pytest.mark.parametrize("remove_reference", [False, True])
def test_grid_ranks_agree_with_the_evaluator_and_reuse_its_gallery_cache(tmp_path, remove_reference):
    protocol = dataclasses.replace(FASHIONIQ_V1, version="test", remove_reference=remove_reference)
    split, model = make_split(tmp_path / "split"), FakeCIRModel()
    result = evaluate(model, [split], protocol, cache_dir=tmp_path / "cache", progress=False)
    encoded = model.candidate_calls
    everything = list(range(len(split.queries)))
    rows = retrieve_top_k(model, split, protocol, everything, k=5, cache_dir=tmp_path / "cache")
    assert [row.target_rank for row in rows] == result.splits[0].ranks.tolist()
    assert model.candidate_calls == encoded
    for row in rows:
        assert len(row.retrieved) == 5 and (row.query.target_id in row.retrieved) == (row.target_rank < 5)
        if remove_reference and row.query.reference_id != row.query.target_id:
            assert row.query.reference_id not in row.retrieved


def test_pick_queries_draws_hits_and_misses_reproducibly(tmp_path):
    split = make_split(tmp_path / "split", n_queries=30)
    ranks = [i % 10 for i in range(30)]  # ranks 0..4 are hits at k=5
    row = rank_rows(eval_result("m:t", "c", {"dress": ranks}), run_id="r", seed=0)[0]
    row["query_ids"] = [q.query_id for q in split.queries]
    chosen = pick_queries(split, row, k=5, n_hits=3, n_misses=2, seed=7)
    assert chosen == pick_queries(split, row, k=5, n_hits=3, n_misses=2, seed=7)
    assert [ranks[i] < 5 for i in chosen] == [True] * 3 + [False] * 2
    assert len(pick_queries(split, row, k=1, n_hits=10, n_misses=0)) == 3  # only three rank-0 queries
