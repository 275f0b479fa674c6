"""Result records (schema, provenance, JSONL in and out) and Table-3 tables in four formats."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from datetime import datetime

import numpy as np
import pytest

from cirbench.errors import DataError
from cirbench.eval.evaluator import EvalResult, SplitRanks
from cirbench.eval.metrics import recall_at_k, recall_with_ci, summarize
from cirbench.eval.protocols import FASHIONIQ_V1, PROTOCOLS
from cirbench.report.table_formats import render, to_latex, write_tables
from cirbench.report.tables import build_tables
from cirbench.results import (
    PRECISION_FIELD,
    RECORD_FIELDS,
    eval_records,
    git_commit,
    rank_rows,
    read_ranks,
    read_records,
    record_precision,
    write_run,
)

CATEGORIES = ("dress", "shirt", "toptee")


def make_result(model="clip_sum:test_tiny", checkpoint="abc123def456", categories=CATEGORIES, n=200, seed=0,
                protocol="fashioniq/v1", used=None):
    rng = np.random.default_rng(seed)
    splits = []
    for c in categories:
        kept = used.get(c, n) if used else n
        ids = [f"{c}/val/{i}" for i in range(kept)]
        splits.append(SplitRanks("fashioniq", c, "val", ids, rng.integers(0, 120, kept), 500, n))
    return EvalResult(model, checkpoint, protocol, "cpu", splits)


def records_of(result, run_id="run1", seed=0, protocol=FASHIONIQ_V1, config_hash=None):
    return eval_records(result, protocol, run_id=run_id, seed=seed, config_hash=config_hash)


def saved_run(folder, result, run_id="run1", seed=0):
    write_run(folder, records_of(result, run_id, seed), rank_rows(result, run_id=run_id, seed=seed))
    return folder


# ---- records ---------------------------------------------------------------------------------


def test_records_and_ranks_carry_the_precision_and_older_records_read_as_fp32(tmp_path):
    result = make_result()
    result.precision = "bf16"
    records = records_of(result)
    ranks = rank_rows(result, run_id="r", seed=0)
    assert {r[PRECISION_FIELD] for r in records} == {"bf16"} and {r[PRECISION_FIELD] for r in ranks} == {"bf16"}
    older = {key: value for key, value in records[0].items() if key != PRECISION_FIELD}
    write_run(tmp_path, [older], [])
    [read] = read_records([tmp_path])
    assert record_precision(read) == "fp32" and record_precision(records[0]) == "bf16"


def test_one_record_per_category_and_cutoff_with_every_field():
    result = make_result()
    records = records_of(result, config_hash="cfg0123")
    assert len(records) == 3 * len(FASHIONIQ_V1.ks)
    assert all(tuple(r) == (*RECORD_FIELDS, PRECISION_FIELD) for r in records)
    assert {r[PRECISION_FIELD] for r in records} == {"fp32"}
    shirt10 = next(r for r in records if r["category"] == "shirt" and r["metric"] == "recall@10")
    estimate = recall_with_ci(result.splits[1].ranks, [10], "shirt", seed=0)[10]
    assert shirt10["value"] == recall_at_k(result.splits[1].ranks, 10) == estimate.value
    assert (shirt10["ci_low"], shirt10["ci_high"]) == (estimate.ci_low, estimate.ci_high)
    assert {r["metric"] for r in records} == {"recall@1", "recall@5", "recall@10", "recall@50"}
    assert "avg" not in json.dumps(records)  # averages are never stored
    first = records[0]
    assert (first["model"], first["checkpoint_hash"], first["config_hash"]) == ("clip_sum:test_tiny", "abc123def456", "cfg0123")
    assert (first["protocol"], first["dataset"], first["split"], first["device"], first["seed"]) == ("fashioniq/v1", "fashioniq", "val", "cpu", 0)
    assert (first["n_queries"], first["n_queries_total"]) == (200, 200)
    assert first["package_version"] == __import__("cirbench").__version__
    assert datetime.fromisoformat(first["created"]).tzinfo is not None


def test_git_commit_is_a_hash_marked_dirty_or_null_outside_git():
    commit = git_commit()
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)


def test_an_empty_split_writes_null_never_nan(tmp_path):
    result = make_result(categories=("dress",), used={"dress": 0})
    saved_run(tmp_path, result)
    text = (tmp_path / "results.jsonl").read_text()
    assert "NaN" not in text
    assert all(r["value"] is None and r["ci_low"] is None for r in read_records([tmp_path]))


def test_writing_appends_and_reading_accepts_files_folders_and_globs(tmp_path):
    saved_run(tmp_path / "a", make_result(), run_id="r1")
    saved_run(tmp_path / "a", make_result(seed=1), run_id="r2")
    saved_run(tmp_path / "b" / "nested", make_result(model="sprc:test_tiny"), run_id="r3")
    assert len(read_records([tmp_path / "a" / "results.jsonl"])) == 24
    assert {r["run_id"] for r in read_records([tmp_path])} == {"r1", "r2", "r3"}
    assert len(read_records([str(tmp_path / "*" / "results.jsonl")])) == 24
    assert len(read_records([tmp_path / "a", tmp_path / "a" / "results.jsonl"])) == 24  # no double count
    ranks = read_ranks([tmp_path / "b"])
    assert len(ranks) == 3 and ranks[0]["query_ids"][:2] == ["dress/val/0", "dress/val/1"]
    assert ranks[0]["ranks"] == make_result().splits[0].ranks.tolist()


@pytest.mark.parametrize("line, problem", [
    ("{not json", "not a valid JSON record"),
    ('{"run_id": "x"}', "missing fields: model"),
    ('{"value": NaN}', "NaN is not allowed"),
])
def test_bad_result_lines_name_the_file_and_line(tmp_path, line, problem):
    saved_run(tmp_path, make_result(categories=("dress",)))
    path = tmp_path / "results.jsonl"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(DataError, match=problem) as error:
        read_records([tmp_path])
    assert error.value.file == str(path) and error.value.entry == "line 5"


@pytest.mark.parametrize("name", ["results.jsonl", "ranks.jsonl"])
def test_a_torn_last_line_is_left_out_then_cut_off_by_the_next_write(tmp_path, name, caplog):
    saved_run(tmp_path, make_result(categories=("dress",)), run_id="r1")
    path = tmp_path / name
    read = read_records if name == "results.jsonl" else read_ranks
    whole, n_rows = path.read_bytes(), len(read([tmp_path]))
    with open(path, "ab") as handle:  # what a kill in the middle of an append leaves
        handle.write(b'{"run_id": "r2", "model": "clip_s')
    assert len(read([tmp_path])) == n_rows
    assert f"{name}: line {n_rows + 1} is torn" in caplog.text
    saved_run(tmp_path, make_result(categories=("dress",), seed=1), run_id="r3")
    assert path.read_bytes().startswith(whole) and b'"r2"' not in path.read_bytes()
    assert [r["run_id"] for r in read([tmp_path])] == ["r1"] * n_rows + ["r3"] * n_rows


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path):
    saved_run(tmp_path, make_result(categories=("dress",)), run_id="r1")
    path = tmp_path / "results.jsonl"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # a hand-edited file
    assert len(read_records([tmp_path])) == 4
    saved_run(tmp_path, make_result(categories=("dress",), seed=1), run_id="r2")
    assert [r["run_id"] for r in read_records([tmp_path])] == ["r1"] * 4 + ["r2"] * 4


def test_result_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path):
    saved_run(tmp_path, make_result(categories=("dress",)))
    path = tmp_path / "results.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2] + [lines[2].replace(b"dress", b"dr\xffss")] + lines[3:]))
    with pytest.raises(DataError, match=r"results.jsonl: line 3: not UTF-8 text"):
        read_records([tmp_path])


def test_a_path_with_no_results_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        read_records([tmp_path / "nothing-here"])
    with pytest.raises(DataError, match="no results.jsonl found"):
        read_records([tmp_path])


# ---- tables ----------------------------------------------------------------------------------


def test_table3_layout_with_averages_and_headline():
    result = make_result()
    [table] = build_tables(records_of(result))
    assert table.title == "fashioniq val — protocol fashioniq/v1"
    assert table.column_keys() == [
        "dress_r10", "dress_r50", "shirt_r10", "shirt_r50", "toptee_r10", "toptee_r50", "avg_r10", "avg_r50", "avg",
    ]
    [row] = table.rows
    summary = summarize({s.category: s.ranks for s in result.splits}, (10, 50), (10, 50))
    assert row.cells["avg_r10"].value == pytest.approx(summary.average[10].value)
    assert row.cells["avg"].value == pytest.approx(summary.headline.value)
    sizes = ", ".join(f"{s.category} {s.n_queries_total:,}" for s in result.splits)
    assert row.source == "measured" and table.notes == [f"queries: {sizes}"]


def test_benchmark_sizes_are_stated_with_gallery_sizes_when_ranks_are_given():
    result = make_result(n=2017)
    [table] = build_tables(records_of(result), rank_rows(result, run_id="r", seed=0))
    galleries = ", ".join(f"{s.category} 2,017 / {s.n_gallery:,}" for s in result.splits)
    assert table.notes == [f"queries / gallery images: {galleries}"]


def test_averages_need_every_category():
    [table] = build_tables(records_of(make_result(categories=("dress", "shirt"))))
    [row] = table.rows
    assert "shirt_r50" in row.cells and "avg_r10" not in row.cells and "avg" not in row.cells
    assert "| — | — | — | — |" in render(table, "markdown")  # toptee R@10/R@50, avg R@10/R@50 ... empty


def test_fewer_queries_than_annotated_are_counted_in_a_note():
    result = make_result(n=2017, used={"dress": 1203})
    [table] = build_tables(records_of(result))
    assert table.notes[1:] == ["clip_sum:test_tiny: evaluated on fewer queries than annotated (dress n=1,203/2,017)"]
    assert "dress n=1,203/2,017" in render(table, "markdown") and "dress n=1,203/2,017" in render(table, "rich")


def test_one_table_per_protocol_and_the_latest_run_wins():
    other = "fashioniq/test-v0"
    if other not in PROTOCOLS:
        PROTOCOLS.register(other, dataclasses.replace(FASHIONIQ_V1, version="test-v0"))
    old, new = make_result(seed=1), make_result(seed=2)
    records = records_of(old, "r1") + records_of(new, "r2") + records_of(make_result(protocol=other), "r3")
    for r in records:
        r["created"] = {"r1": "2026-01-01T00:00:00+00:00"}.get(r["run_id"], "2026-02-01T00:00:00+00:00")
    tables = build_tables(records)
    assert [t.protocol for t in tables] == ["fashioniq/test-v0", "fashioniq/v1"]
    [row] = tables[1].rows
    assert row.cells["dress_r10"].value == recall_at_k(new.splits[0].ranks, 10)


def test_the_same_model_at_two_checkpoints_gets_two_rows():
    records = records_of(make_result(checkpoint="aaaa1111bbbb")) + records_of(make_result(checkpoint="cccc2222dddd"), "r2")
    [table] = build_tables(records)
    assert [r.label for r in table.rows] == ["clip_sum:test_tiny @aaaa1111", "clip_sum:test_tiny @cccc2222"]


def test_reported_rows_are_printed_as_is_marked_and_flagged():
    [table] = build_tables(records_of(make_result()), reported=True)
    reported = [r for r in table.rows if r.source == "reported"]
    measured = [r for r in table.rows if r.source == "measured"]
    assert len(reported) == 15 and len(measured) == 1 and table.rows[-1] is measured[0]
    fti = next(r for r in reported if r.label == "FTI4CIR")
    assert fti.cells["avg_r10"].printed == "20.39" and fti.cells["avg_r10"].flagged
    assert fti.origin == "reported (zero_shot)"
    assert not fti.cells["avg_r50"].flagged and not fti.cells["avg"].flagged
    assert any("FTI4CIR avg R@10: printed 20.39" in n and "29.39" in n for n in table.notes)
    context = next(r for r in reported if r.label == "Context-I2W")
    assert context.cells["dress_r10"].text(ci=False) == "23.1"  # the paper's own digits
    markdown = render(table, "markdown")
    assert "| FTI4CIR | reported (zero_shot) |" in markdown and "20.39†" in markdown


def test_reported_rows_only_join_the_papers_protocol_dataset_and_split():
    tables = build_tables([], reported=True)
    assert [(t.protocol, t.dataset, t.split) for t in tables] == [("fashioniq/v1", "fashioniq", "val")]
    other = [dict(r, split="test") for r in records_of(make_result())]
    by_split = {t.split: t for t in build_tables(other, reported=True)}
    assert all(r.source == "measured" for r in by_split["test"].rows)
    assert all(r.source == "reported" for r in by_split["val"].rows)


def test_intervals_of_averages_come_from_the_stored_ranks(tmp_path):
    result = make_result()
    saved_run(tmp_path, result, seed=3)
    [table] = build_tables(read_records([tmp_path]), read_ranks([tmp_path]), ci=True)
    summary = summarize({s.category: s.ranks for s in result.splits}, (10, 50), (10, 50), seed=3)
    cell = table.rows[0].cells["avg"]
    assert (cell.ci_low, cell.ci_high) == (summary.headline.ci_low, summary.headline.ci_high)
    assert re.search(r"\d+\.\d\d \[\d+\.\d, \d+\.\d\]", render(table, "markdown", ci=True))
    [without_ranks] = build_tables(read_records([tmp_path]), [], ci=True)
    assert without_ranks.rows[0].cells["avg"].ci_low is None


def test_csv_is_machine_readable():
    [table] = build_tables(records_of(make_result(n=2017, used={"dress": 1203})), reported=True)
    rows = list(csv.DictReader(io.StringIO(render(table, "csv", ci=True))))
    measured = rows[-1]
    assert measured["source"] == "measured" and measured["model"] == "clip_sum:test_tiny"
    assert (measured["dress_n_queries"], measured["dress_n_queries_total"]) == ("1203", "2017")
    assert float(measured["dress_r10_ci_low"]) <= float(measured["dress_r10"]) <= float(measured["dress_r10_ci_high"])
    fti = next(r for r in rows if r["model"] == "FTI4CIR")
    assert (fti["avg_r10"], fti["flagged"], fti["setting"]) == ("20.39", "avg_r10", "zero_shot")


def test_latex_escapes_and_has_the_two_level_header():
    [table] = build_tables(records_of(make_result()), reported=True)
    latex = to_latex(table)
    assert r"\multicolumn{2}{c}{dress}" in latex and r"\multicolumn{3}{c}{average}" in latex
    assert r"clip\_sum:test\_tiny & measured" in latex and r"reported (zero\_shot)" in latex
    assert r"20.39$^\dagger$" in latex and latex.count(r"\\") > 16


def test_write_tables_writes_every_format(tmp_path):
    tables = build_tables(records_of(make_result()), reported=True)
    written = write_tables(tables, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        f"fashioniq-val-fashioniq_v1{s}" for s in (".txt", ".md", ".csv", ".tex")
    )
    assert "dress R@10" in (tmp_path / "fashioniq-val-fashioniq_v1.txt").read_text()


def test_a_failed_evaluation_is_an_error_row_until_it_succeeds(tmp_path):
    from cirbench.report.tables import load_tables

    run = saved_run(tmp_path / "run", make_result())
    failure = {"label": "sprc:synth_tiny", "model": "sprc:synth_tiny", "dataset": "fashioniq", "split": "val",
               "protocol": "fashioniq/v1", "error": "FileNotFoundError: no backbone\nmore", "traceback": "..."}
    (run / "errors.jsonl").write_text(json.dumps(failure) + "\n")
    [table] = load_tables([run])
    error = table.rows[-1]
    assert (error.label, error.source, error.setting) == ("sprc:synth_tiny", "error", "FileNotFoundError: no backbone")
    assert not error.cells and any("errors.jsonl" in note for note in table.notes)
    assert "sprc:synth_tiny | error (FileNotFoundError: no backbone) | — |" in render(table, "markdown")

    fixed = {**failure, "label": table.rows[0].label}  # the same label evaluated fine: no error row
    assert [r.source for r in build_tables(records_of(make_result()), errors=[fixed])[0].rows] == ["measured"]
