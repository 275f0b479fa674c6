"""The HTML report: self-contained and escaped; a summary table first (with the difference from
the text-blind baseline), the plots, the findings as a table with verdicts, the paper tables of
the report plan, the per-category detail, provenance; every table built from the records (never
parsed back from a rendered file). Where a Chromium is installed (CI installs one), the page is
rendered headless at laptop width: nothing overflows to the right and the summary comes first."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_fixtures import CATEGORIES, eval_result, hit_ranks, write_result_run

import cirbench
from cirbench.errors import DataError
from cirbench.experiments.plan import FULL
from cirbench.report.html import write_html_report
from cirbench.report.paper_tables import MeasuredRow
from cirbench.report.report_plan import FindingsSpec, PaperTableSpec, record_plan
from cirbench.report.table_formats import write_tables
from cirbench.report.tables import load_tables

MAGENTA = (255, 0, 255)
TABLE_HEADER = (0xDB, 0xE7, 0xF3)  # the report's CSS colour of table header cells
BASELINE, STRONG, ODD = "CLIP image only (zero-shot)", "FashionBLIP-2 (FACap -> FIQ)", "<b>clip</b>"


def solid_png(path: Path, rgb, size=(300, 200)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)
    return path


@pytest.fixture
def results_dir(tmp_path) -> Path:
    """A run folder as the demo leaves it: records, ranks, tables, a report plan, plots, grids, command."""
    folder = tmp_path / "run"
    strong = {category: hit_ranks(40, hits) for category, hits in zip(CATEGORIES, (10, 20, 30))}
    weak = {category: hit_ranks(40, 4) for category in CATEGORIES}
    results = [eval_result("clip_image_only:synth_tiny", "c0", weak, dataset="fashioniq"),
               eval_result("fashionblip2:synth_tiny", "c1", strong, dataset="fashioniq"),
               eval_result("clip_sum:synth_tiny", "c2", weak, dataset="fashioniq")]
    write_result_run(folder, results, labels=[BASELINE, STRONG, ODD])
    write_tables(load_tables([folder], ci=True), folder / "tables", ci=True)
    (folder / "tables" / "table5_components.md").write_text("| row | x |\n|---|---:|\n| NOT-FROM-MARKDOWN | 1 |\n")
    table4 = PaperTableSpec("table4_pretraining", (MeasuredRow(("FashionBLIP-2", "yes", "yes"), {"fiq_avg": STRONG}),),
                            ("measured: <tiny> models",))
    asked = ("adapters vs none", "multi-head vs global matching")
    record_plan(folder, paper_tables=[table4],
                findings=[FindingsSpec("findings", (("adapters vs none", STRONG, ODD),), asked, ("fashioniq",))])
    solid_png(folder / "plots" / "data_size.png", MAGENTA)
    (folder / "plots" / "data_size.pdf").write_bytes(b"%PDF-1.4 not inlined")
    solid_png(folder / "grids" / "dress.png", (10, 120, 10), size=(40, 20))
    (folder / "command.txt").write_text("cirbench demo --quick --out 'a<b>&c'\n")
    return folder


def images_in(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def section(page: str, heading: str) -> str:
    start = page.index(f"<h2>{heading}")
    end = page.find("<h2>", start + 4)
    return page[start:end if end > 0 else len(page)]


def test_report_is_self_contained_with_every_image_inlined(results_dir, tmp_path):
    extra = solid_png(tmp_path / "extra.png", (0, 0, 200), size=(12, 12))
    out = write_html_report(results_dir, tmp_path / "out" / "report.html", title="Demo", extra_images=[extra])
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    sources = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http" not in page and "url(" not in page and "<link" not in page and "<script" not in page
    expected = [results_dir / "plots" / "data_size.png", results_dir / "grids" / "dress.png", extra]
    assert images_in(page) == [p.read_bytes() for p in expected]
    assert page.index("plots/data_size.png") < page.index("grids/dress.png")


def test_the_page_leads_with_the_summary_then_plots_findings_and_the_detail(results_dir, tmp_path):
    page = write_html_report(results_dir, tmp_path / "report.html", title="Demo").read_text(encoding="utf-8")
    headings = re.findall(r"<h2>([^<]*)</h2>", page)
    assert headings == ["Summary", "Plots", "Findings (paired tests on the same queries)", "The paper&#x27;s ablation tables",
                        "Per-category results", "Qualitative grids", "Provenance"]
    assert page.index("<table") == page.index('<table id="summary">')  # the first table is the summary


def test_the_summary_gives_mean_recall_and_the_difference_from_the_text_blind_baseline(results_dir, tmp_path):
    page = write_html_report(results_dir, tmp_path / "report.html", title="Demo").read_text(encoding="utf-8")
    summary = section(page, "Summary")
    rows = {html.unescape(m[0]): re.findall(r'<td class="num">([^<]*)</td>', m[1])
            for m in re.findall(r'<tr class="measured"><td class="label">([^<]*)</td>(.*?)</tr>', summary)}
    # strong: 10, 20, 30 of 40 hits at R@10 and R@50 -> 50.00; baseline and "<b>clip</b>": 4 of 40 -> 10.00
    assert rows[STRONG] == ["50.00", "50.00", "+40.00", "+40.00"]
    assert rows[BASELINE] == ["10.00", "10.00", "+0.00", "+0.00"] and rows[ODD] == rows[BASELINE]
    assert "text-blind baseline, CLIP image only (zero-shot): it ranks by the reference image alone" in summary


def test_findings_are_a_table_with_verdicts_from_the_findings_objects(results_dir, tmp_path):
    page = write_html_report(results_dir, tmp_path / "report.html", title="Demo").read_text(encoding="utf-8")
    findings = section(page, "Findings")
    assert "<pre>" not in findings and "<table>" in findings
    assert "<td class=\"label\">A vs B: better</td>" in findings  # 50 vs 10 points on 120 paired queries
    assert "+40.00<span class=\"ci\">[+" in findings and "&lt; 0.001" in findings
    assert "multi-head vs global matching</td>" in findings and "not measured in this run" in findings


def test_tables_come_from_the_records_and_the_plan_never_from_rendered_files(results_dir, tmp_path):
    page = write_html_report(results_dir, tmp_path / "report.html", title="Demo").read_text(encoding="utf-8")
    detail = section(page, "Per-category results")
    table = load_tables([results_dir], ci=True)[0]
    for row in table.rows:
        cell = row.cells["avg"]
        assert f"{cell.text(ci=False)}<span class=\"ci\">{cell.interval_text()}</span>" in detail
    assert "25.00<span class=\"ci\">[" in detail  # dress R@10 of the strong model: 10 of 40
    paper = section(page, "The paper&#x27;s ablation tables")
    assert "Table 4" in paper and "measured: &lt;tiny&gt; models" in paper and "<td class=\"label\">UniFashion</td>" in paper
    assert "NOT-FROM-MARKDOWN" not in page
    assert cirbench.__version__ in page and "fashioniq/v1" in page and "run-0, run-1, run-2" in page
    assert "--out &#x27;a&lt;b&gt;&amp;c&#x27;" in page


def test_report_escapes_every_text(results_dir, tmp_path):
    page = write_html_report(results_dir, tmp_path / "r.html", title="<i>Demo</i> & co").read_text(encoding="utf-8")
    assert "<title>&lt;i&gt;Demo&lt;/i&gt; &amp; co</title>" in page
    assert "&lt;b&gt;clip&lt;/b&gt;" in page and "<b>" not in page
    assert page.count("<pre>") == 1  # command.txt


def test_report_of_a_folder_without_results_still_shows_its_images(tmp_path):
    solid_png(tmp_path / "plots" / "p.png", MAGENTA, size=(8, 8))
    page = write_html_report(tmp_path, tmp_path / "report.html", title="t").read_text(encoding="utf-8")
    assert len(images_in(page)) == 1 and "No result records in this folder." in page
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: report: nothing to report"):
        write_html_report(tmp_path / "empty", tmp_path / "empty" / "report.html", title="t")
    assert not (tmp_path / "empty" / "report.html").exists()


def test_report_refuses_a_missing_folder_a_non_png_image_or_a_bad_plan(tmp_path):
    with pytest.raises(DataError, match="no such results folder"):
        write_html_report(tmp_path / "absent", tmp_path / "r.html", title="t")
    (tmp_path / "plot.svg").write_text("<svg/>")
    with pytest.raises(DataError, match="not a PNG"):
        write_html_report(tmp_path, tmp_path / "r.html", title="t", extra_images=[tmp_path / "plot.svg"])
    (tmp_path / "report_plan.json").write_text(json.dumps({"paper_tables": {"table9": {"rows": [], "notes": []}},
                                                           "findings": {}}))
    with pytest.raises(DataError, match="report_plan.json: paper_tables: unknown layout 'table9'"):
        write_html_report(tmp_path, tmp_path / "r.html", title="t")
    assert not (tmp_path / "r.html").exists()


def test_report_command_writes_the_page_of_any_results_folder(results_dir):
    from typer.testing import CliRunner

    from cirbench.cli import app

    record_plan(results_dir, findings=[FindingsSpec("findings_table5_components", (("CIR+CTR vs CIR only", ODD, STRONG),),
                                                    ("CIR+CTR vs CIR only",), ("fashioniq",))])
    result = CliRunner().invoke(app, ["report", str(results_dir), "--title", "ablations"])
    assert result.exit_code == 0, result.output
    page = (results_dir / "report.html").read_text()
    assert "<title>ablations</title>" in page
    findings = section(page, "Findings")
    assert "adapters vs none" in findings and "CIR+CTR vs CIR only" in findings  # every recorded findings entry
    assert "A vs B: worse" in findings
    missing = CliRunner().invoke(app, ["report", str(results_dir / "nope")])
    assert missing.exit_code != 0 and "no such results folder" in missing.output


# ---- in a browser ----------------------------------------------------------------------------

LAPTOP = (1400, 900)
MEASURE = """<pre id="layout-probe"></pre><script>
const tables = [...document.querySelectorAll("table")];
document.getElementById("layout-probe").textContent = JSON.stringify({
  width: window.innerWidth, scrollWidth: document.documentElement.scrollWidth,
  tables: tables.map(t => ({id: t.id, right: Math.ceil(t.getBoundingClientRect().right),
                            top: t.getBoundingClientRect().top, title: (t.previousElementSibling || {}).textContent || ""}))});
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
        "--hide-scrollbars", "--force-device-scale-factor=1", *extra, page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture
def demo_like_dir(tmp_path) -> Path:
    """Every row the full demo evaluates, on both benchmarks, with its report plan, as the demo records it."""
    from cirbench.experiments.demo import _findings_spec, _paper_table_specs

    rng = np.random.default_rng(0)
    labels = [label for label, _ in FULL.zero_shot] + [t.label for t in FULL.trainings]
    specs = [spec for _, spec in FULL.zero_shot] + [t.model for t in FULL.trainings]
    folder = tmp_path / "demo"
    for dataset in ("fashioniq", "enhfashioniq"):
        results = [eval_result(spec, f"{number:08x}deadbeef", {c: rng.integers(0, 300, 300) for c in CATEGORIES},
                               dataset=dataset) for number, spec in enumerate(specs)]
        write_result_run(folder, results, run_prefix=f"20261101-{dataset}", labels=labels)
    plan_labels = {t.key: t.label for t in FULL.trainings}
    record_plan(folder, paper_tables=_paper_table_specs(FULL), findings=[_findings_spec(FULL, plan_labels)])
    solid_png(folder / "plots" / "data_size.png", MAGENTA, size=(1300, 400))
    (folder / "command.txt").write_text("cirbench demo --out runs/demo\n")
    return folder


@pytest.mark.skipif(chromium() is None, reason="no Chromium binary (chromium / chromium-browser) on PATH")
def test_at_laptop_width_nothing_overflows_and_the_summary_comes_first(demo_like_dir, tmp_path):
    report = write_html_report(demo_like_dir, tmp_path / "report.html", title="cirbench demo (full)")
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", MEASURE + "\n</body>"), encoding="utf-8")
    done = run_chromium(probe, tmp_path / "profile", f"--window-size={LAPTOP[0]},{LAPTOP[1]}", "--dump-dom")
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', done.stdout, re.S)
    assert found and found.group(1), done.stdout[-2000:]
    layout = json.loads(html.unescape(found.group(1)))
    assert layout["width"] == LAPTOP[0]
    assert layout["scrollWidth"] <= layout["width"], layout
    too_wide = [(t["title"], t["right"]) for t in layout["tables"] if t["right"] > layout["width"]]
    assert not too_wide, f"tables wider than {layout['width']} px: {too_wide}"
    tables = layout["tables"]
    assert len(tables) >= 6 and tables[0]["id"] == "summary"  # summary, findings, Table 4, data size, two Table-3
    assert tables[0]["top"] == min(t["top"] for t in tables)


@pytest.mark.skipif(chromium() is None, reason="no Chromium binary (chromium / chromium-browser) on PATH")
def test_report_screenshot_in_headless_chromium_shows_the_table_and_images(results_dir, tmp_path):
    report = write_html_report(results_dir, tmp_path / "report.html", title="Demo")
    shot = tmp_path / "shot.png"
    run_chromium(report, tmp_path / "profile", "--window-size=1400,2600", f"--screenshot={shot}")
    assert shot.is_file()
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    header = np.all(pixels == TABLE_HEADER, axis=-1)
    assert header.sum() > 2000, "no table header cells visible"
    rows, columns = np.nonzero(header)
    table_area = pixels[rows.min() : rows.max() + 60, columns.min() : columns.max() + 1]
    assert len(np.unique(table_area.reshape(-1, 3), axis=0)) > 20, "the table area is blank"  # text, borders
    assert np.all(pixels == MAGENTA, axis=-1).sum() >= 0.9 * 300 * 200, "the inlined plot is not visible"


def test_without_a_text_blind_row_the_summary_has_no_difference_and_says_why(tmp_path):
    from cirbench.report.summary import summary_table

    write_result_run(tmp_path, [eval_result("clip_sum:synth_tiny", "c", {c: hit_ranks(10, 3) for c in CATEGORIES},
                                            dataset="fashioniq")])
    summary = summary_table(load_tables([tmp_path]))
    assert summary.column_keys() == ["fashioniq-val-fashioniq_v1:avg_r10", "fashioniq-val-fashioniq_v1:avg_r50"]
    assert any("no text-blind baseline (clip_image_only) was evaluated" in note for note in summary.notes)
