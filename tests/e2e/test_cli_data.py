"""`cirbench fetch` and `cirbench make-standins` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cirbench.cli import app
from cirbench.data.fashioniq import load_eval_splits
from cirbench.data.standins import write_standin_images

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_FASHIONIQ = REPO_ROOT / ".." / "shared" / "data" / "fashioniq"
runner = CliRunner()

GALLERY = [f"B00{n:04d}" for n in range(12)]
DEAD = {"B000003", "B000007"}  # listed with a URL, but the server has no such file


class SlowQuietHandler(SimpleHTTPRequestHandler):
    delay = 0.0

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.startswith("/remote/images/"):
            time.sleep(self.delay)
        super().do_GET()

    def log_message(self, *args):
        pass


class QuietServer(ThreadingHTTPServer):
    """A client that hangs up early (the CLI stopping at the first error) is not a test failure;
    the default handler prints a traceback to stderr, which CliRunner captures into the output."""

    def handle_error(self, request, client_address):
        pass


@pytest.fixture
def remote(tmp_path):
    """A loopback server holding a one-category FashionIQ repository, URL lists and images."""
    served = tmp_path / "served"
    for split, pairs in {"val": [(0, 1), (2, 3), (4, 5), (6, 7)], "train": [(8, 9), (10, 11)]}.items():
        ids = [GALLERY[i] for pair in pairs for i in pair]
        captions = [{"candidate": GALLERY[c], "target": GALLERY[t], "captions": ["is red", "longer"]} for c, t in pairs]
        for folder, name, data in [("captions", f"cap.dress.{split}.json", captions),
                                   ("image_splits", f"split.dress.{split}.json", ids)]:
            (served / "repo" / folder).mkdir(parents=True, exist_ok=True)
            (served / "repo" / folder / name).write_text(json.dumps(data))
    write_standin_images(served / "remote", [i for i in GALLERY if i not in DEAD])
    handler = type("Handler", (SlowQuietHandler,), {})
    httpd = QuietServer(("127.0.0.1", 0), partial(handler, directory=str(served)))
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    (served / "meta" / "image_url").mkdir(parents=True)
    (served / "meta" / "image_url" / "asin2url.dress.txt").write_text(
        "".join(f"{i}\t{url}/remote/images/{i}.png\n" for i in GALLERY)
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield url, handler
    httpd.shutdown()
    httpd.server_close()


def fetch_args(url: str, root: Path) -> list[str]:
    return ["fetch", "fashioniq", "--root", str(root), "--base-url", f"{url}/repo",
            "--url-lists-base-url", f"{url}/meta", "--category", "dress", "--split", "val", "--split", "train",
            "--workers", "1", "--timeout", "5"]


def test_fetch_reports_dead_links_and_surviving_queries(remote, tmp_path):
    url, _ = remote
    root = tmp_path / "fiq"
    result = runner.invoke(app, fetch_args(url, root))
    assert result.exit_code == 0, result.output
    assert "images: 10 downloaded, 0 already present, 2 dead links, 0 failed of 12" in result.output
    assert "val dress: 2 of 4 queries have both images" in result.output
    report = json.loads((root / "fetch_report.json").read_text())
    assert sorted(report["images"]["dead"]) == sorted(DEAD)

    (dress,) = load_eval_splits(root, missing="skip")
    assert (len(dress.queries), dress.n_queries_total, sorted(dress.missing_images)) == (2, 4, sorted(DEAD))

    again = runner.invoke(app, fetch_args(url, root))
    assert "images: 0 downloaded, 10 already present, 2 dead links" in again.output


def test_a_killed_fetch_resumes(remote, tmp_path):
    url, handler = remote
    handler.delay = 0.15
    root = tmp_path / "fiq"
    process = subprocess.Popen([sys.executable, "-m", "cirbench", *fetch_args(url, root)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 30
        while len(list((root / "images").glob("*.png"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    survivors = len(list((root / "images").glob("*.png")))
    assert 2 <= survivors < 10

    handler.delay = 0.0
    result = runner.invoke(app, fetch_args(url, root))
    assert result.exit_code == 0, result.output
    assert f"images: {10 - survivors} downloaded, {survivors} already present, 2 dead links" in result.output
    assert len(list((root / "images").glob("*.png"))) == 10


def test_fetch_refuses_what_it_cannot_fetch(tmp_path):
    result = runner.invoke(app, ["fetch", "enhfashioniq", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "build-enhfiq" in result.output


def test_fetch_stops_with_one_clear_line_when_the_repository_is_unreachable(remote, tmp_path):
    url, _ = remote
    result = runner.invoke(app, ["fetch", "fashioniq", "--root", str(tmp_path), "--base-url", f"{url}/nowhere",
                                 "--retries", "0"])
    assert result.exit_code == 1
    assert "error:" in result.output and "/nowhere/captions/cap.dress.train.json: download: HTTP 404" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["fetch", "make-standins"])
def test_help_ends_with_an_example(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and f"Example: cirbench {command}" in result.output


def test_make_standins_on_the_real_annotations_gives_the_val_counts(tmp_path):
    if not (REAL_FASHIONIQ / "captions").is_dir():
        pytest.skip(f"real FashionIQ annotations not found at {REAL_FASHIONIQ.resolve()}")
    root = tmp_path / "dry_run"
    args = ["make-standins", "--root", str(root), "--annotations", str(REAL_FASHIONIQ), "--split", "val"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "18 annotation files copied; 15415 stand-in images written" in result.output  # 121 ids in two categories
    splits = load_eval_splits(root)
    assert [(s.category, len(s.queries), len(s.gallery)) for s in splits] == [
        ("dress", 2017, 3817), ("shirt", 2038, 6346), ("toptee", 1961, 5373)
    ]
    again = runner.invoke(app, args).output
    assert "0 annotation files copied; 0 stand-in images written, 15415 already present" in again


def test_make_standins_keeps_real_images_and_differing_annotations(tmp_path):
    source, root = tmp_path / "source", tmp_path / "root"
    query = {"candidate": "a", "target": "b", "captions": ["x"]}
    for folder, name, data in [("captions", "cap.dress.val.json", [query]),
                               ("image_splits", "split.dress.val.json", ["a", "b"])]:
        (source / folder).mkdir(parents=True)
        (source / folder / name).write_text(json.dumps(data))
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.jpg").write_bytes(b"a real photo")
    result = runner.invoke(app, ["make-standins", "--root", str(root), "--annotations", str(source), "--size", "16"])
    assert result.exit_code == 0, result.output
    assert (root / "images" / "a.jpg").read_bytes() == b"a real photo" and not (root / "images" / "a.png").exists()
    assert (root / "images" / "b.png").is_file()

    (root / "captions" / "cap.dress.val.json").write_text("[]")
    result = runner.invoke(app, ["make-standins", "--root", str(root), "--annotations", str(source)])
    assert result.exit_code == 1 and "exists and differs" in result.output
    assert (root / "captions" / "cap.dress.val.json").read_text() == "[]"


def test_make_standins_without_annotations_names_the_folder(tmp_path):
    result = runner.invoke(app, ["make-standins", "--root", str(tmp_path), "--annotations", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no captions/ folder" in result.output
