"""The HTML report: self-contained, escaped, gathering tables, findings, images and provenance; and,
where a Chromium is installed, a headless screenshot that shows the table and the images."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_fixtures import CATEGORIES, eval_result, hit_ranks, write_result_run

import cirbench
from cirbench.data.schema import DataError
from cirbench.report.html import write_html_report
from cirbench.report.tables import load_tables, write_tables

MAGENTA = (255, 0, 255)
TABLE_HEADER = (0xDB, 0xE7, 0xF3)  # the report's CSS colour of table header cells


def solid_png(path: Path, rgb, size=(300, 200)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)
    return path


@pytest.fixture
def results_dir(tmp_path) -> Path:
    """A run folder as the demo leaves it: records, ranks, tables, findings, plots, grids, command."""
    folder = tmp_path / "run"
    strong = {category: hit_ranks(40, hits) for category, hits in zip(CATEGORIES, (10, 20, 30))}
    weak = {category: hit_ranks(40, 4) for category in CATEGORIES}
    write_result_run(folder, [eval_result("fashionblip2:synth_tiny", "c1", strong), eval_result("<b>clip</b>", "c2", weak)])
    write_tables(load_tables([folder], ci=True), folder / "tables", ci=True)
    (folder / "tables" / "table5_components.md").write_text(
        "### Table 5 <ablation>\n\n| row | matching \\| heads |\n|---|---:|\n| adapters | 12.5 & up |\n\n- a note\n"
    )
    (folder / "tables" / "table4.csv").write_text("model,fiq_avg\nsprc <pre>,64.85\n")
    (folder / "findings.txt").write_text("adapters vs none: A <better> & more\n")
    solid_png(folder / "plots" / "data_size.png", MAGENTA)
    (folder / "plots" / "data_size.pdf").write_bytes(b"%PDF-1.4 not inlined")
    solid_png(folder / "grids" / "dress.png", (10, 120, 10), size=(40, 20))
    (folder / "command.txt").write_text("cirbench demo --quick --out 'a<b>&c'\n")
    return folder


def images_in(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


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


def test_report_shows_the_tables_with_intervals_findings_and_provenance(results_dir, tmp_path):
    page = write_html_report(results_dir, tmp_path / "report.html", title="Demo").read_text(encoding="utf-8")
    table = load_tables([results_dir], ci=True)[0]
    for row in table.rows:
        assert f"<td>{row.cells['avg'].text(ci=True)}</td>" in page  # e.g. "41.67 [35.0, 48.3]"
        assert row.cells["avg"].ci_low is not None
    assert "<td>25.00 [" in page  # dress R@10 of the strong model: 10 of 40
    other = page[page.index("Other tables"):page.index("Findings")]
    assert "table5_components.md" in other and "table4.csv" in other
    assert table.slug not in other  # the records' own table is shown once, with its intervals
    assert "<td>matching | heads</td>" not in other and "<th>matching | heads</th>" in other
    assert "<td>12.5 &amp; up</td>" in other and "<td>sprc &lt;pre&gt;</td>" in other
    assert "A &lt;better&gt; &amp; more" in page
    assert cirbench.__version__ in page and "fashioniq/v1" in page and "run-0, run-1" in page
    assert "--out &#x27;a&lt;b&gt;&amp;c&#x27;" in page


def test_report_escapes_every_text(results_dir, tmp_path):
    page = write_html_report(results_dir, tmp_path / "r.html", title="<i>Demo</i> & co").read_text(encoding="utf-8")
    assert "<title>&lt;i&gt;Demo&lt;/i&gt; &amp; co</title>" in page
    assert "&lt;b&gt;clip&lt;/b&gt;" in page and "<b>" not in page
    assert page.count("<pre>") == 2  # findings and command.txt; the CSV's "<pre>" is escaped
    assert "<ablation>" not in page and "Table 5 &lt;ablation&gt;" in page


def test_report_of_a_folder_without_results_still_shows_its_images(tmp_path):
    solid_png(tmp_path / "plots" / "p.png", MAGENTA, size=(8, 8))
    page = write_html_report(tmp_path, tmp_path / "report.html", title="t").read_text(encoding="utf-8")
    assert len(images_in(page)) == 1 and "No result records in this folder." in page


def test_report_refuses_a_missing_folder_or_a_non_png_image(tmp_path):
    with pytest.raises(DataError, match="no such results folder"):
        write_html_report(tmp_path / "absent", tmp_path / "r.html", title="t")
    (tmp_path / "plot.svg").write_text("<svg/>")
    with pytest.raises(DataError, match="not a PNG"):
        write_html_report(tmp_path, tmp_path / "r.html", title="t", extra_images=[tmp_path / "plot.svg"])
    assert not (tmp_path / "r.html").exists()


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="no Chromium binary (chromium / chromium-browser) on PATH")
def test_report_screenshot_in_headless_chromium_shows_the_table_and_images(results_dir, tmp_path):
    report = write_html_report(results_dir, tmp_path / "report.html", title="Demo")
    shot = tmp_path / "shot.png"
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars", "--force-device-scale-factor=1", "--window-size=1400,2600",
        f"--screenshot={shot}", report.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    header = np.all(pixels == TABLE_HEADER, axis=-1)
    assert header.sum() > 2000, "no table header cells visible"
    rows, columns = np.nonzero(header)
    table_area = pixels[rows.min() : rows.max() + 60, columns.min() : columns.max() + 1]
    assert len(np.unique(table_area.reshape(-1, 3), axis=0)) > 20, "the table area is blank"  # text, borders
    assert np.all(pixels == MAGENTA, axis=-1).sum() >= 0.9 * 300 * 200, "the inlined plot is not visible"


def test_report_command_writes_the_page_of_any_results_folder(results_dir):
    from typer.testing import CliRunner

    from cirbench.cli import app

    (results_dir / "findings_table5_components.txt").write_text("CIR+CTR vs CIR only: no significant difference\n")
    result = CliRunner().invoke(app, ["report", str(results_dir), "--title", "ablations"])
    assert result.exit_code == 0, result.output
    page = (results_dir / "report.html").read_text()
    assert "<title>ablations</title>" in page or ">ablations<" in page
    assert "adapters vs none: A &lt;better&gt;" in page and "CIR+CTR vs CIR only" in page  # every findings file
    missing = CliRunner().invoke(app, ["report", str(results_dir / "nope")])
    assert missing.exit_code != 0 and "no such results folder" in missing.output
