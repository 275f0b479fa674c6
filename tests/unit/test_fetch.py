"""`fetch` against a fake FashionIQ repository on a loopback HTTP server: dead links, a 500 that
succeeds on retry, an interrupted run that resumes, and the report."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cirbench import http_client
from cirbench.data.fetch import (
    DeadLink,
    FetchSettings,
    TransientError,
    download,
    fetch_client,
    fetch_fashioniq,
    read_url_list,
)
from cirbench.errors import DataError
from cirbench.data.standins import encode_png, standin_pixels

FAST = FetchSettings(workers=4, timeout=2.0, retries=2, backoff=0.01)


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # the client hung up on a slow answer: expected
        pass


class FakeServer:
    """path -> list of (status, body) answers, the last one repeated; counts the hits per path."""

    def __init__(self):
        self.answers: dict[str, list[tuple[int, bytes]]] = {}
        self.hits: Counter = Counter()
        self.delay = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                owner.hits[self.path] += 1
                if owner.delay:
                    time.sleep(owner.delay)
                answers = owner.answers.get(self.path, [(404, b"not found")])
                status, body = answers[min(owner.hits[self.path], len(answers)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, *answers) -> None:
        self.answers[path] = [a if isinstance(a, tuple) else (200, a) for a in answers]


@pytest.fixture
def server():
    fake = FakeServer()
    thread = threading.Thread(target=fake.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def image_bytes(image_id: str) -> bytes:
    return encode_png(standin_pixels(image_id, 8))


# dress val: 3 queries; shirt val: 2 queries. Image fates on the server:
GALLERIES = {
    ("dress", "val"): ["d1", "d2", "d3", "d4"], ("dress", "train"): ["d5", "d6"], ("dress", "test"): ["d7"],
    ("shirt", "val"): ["s1", "s2", "s3"], ("shirt", "train"): ["s4", "s5"], ("shirt", "test"): ["s6"],
}
QUERIES = {
    ("dress", "val"): [("d1", "d2"), ("d3", "d4"), ("d2", "d1")], ("dress", "train"): [("d5", "d6")],
    ("shirt", "val"): [("s1", "s2"), ("s3", "s1")], ("shirt", "train"): [("s4", "s5")],
    ("dress", "test"): [("d7", None)], ("shirt", "test"): [("s6", None)],
}
DEAD_404 = {"d4", "s6"}
NOT_AN_IMAGE = {"d7"}  # answers an HTML page
NO_URL = {"s3"}  # absent from the URL list
FLAKY = {"d2"}  # 500 once, then the image
ALL_IDS = [i for ids in GALLERIES.values() for i in ids]


def publish_repository(server: FakeServer) -> None:
    for (category, split), pairs in QUERIES.items():
        entries = [{"candidate": c, **({"target": t} if t else {}), "captions": ["is red", "longer"]}
                   for c, t in pairs]
        server.serve(f"/repo/captions/cap.{category}.{split}.json", json.dumps(entries).encode())
        gallery = json.dumps(GALLERIES[category, split]).encode()
        server.serve(f"/repo/image_splits/split.{category}.{split}.json", gallery)
    for category in ("dress", "shirt"):
        ids = [i for (c, _), gallery in GALLERIES.items() if c == category for i in gallery if i not in NO_URL]
        lines = [f"{i} \t{server.url}/img/{i}.jpg" for i in ids]  # tab, padded as in the real lists
        server.serve(f"/meta/image_url/asin2url.{category}.txt", ("\n".join(lines) + "\n\n").encode())
    for image_id in ALL_IDS:
        if image_id in NOT_AN_IMAGE:
            server.serve(f"/img/{image_id}.jpg", b"<html>no image</html>")
        elif image_id in FLAKY:
            server.serve(f"/img/{image_id}.jpg", (500, b"oops"), image_bytes(image_id))
        elif image_id not in DEAD_404:
            server.serve(f"/img/{image_id}.jpg", image_bytes(image_id))


def run_fetch(server: FakeServer, root: Path, **kwargs):
    return fetch_fashioniq(root, base_url=f"{server.url}/repo", url_lists_base_url=f"{server.url}/meta",
                           categories=("dress", "shirt"), settings=FAST, **kwargs)


def test_fetch_downloads_everything_reachable_and_reports_dead_links(server, tmp_path):
    publish_repository(server)
    report = run_fetch(server, tmp_path)

    served_captions = server.answers["/repo/captions/cap.dress.val.json"][0][1]
    assert (tmp_path / "captions" / "cap.dress.val.json").read_bytes() == served_captions
    assert (tmp_path / "image_url" / "asin2url.shirt.txt").is_file()
    images = report.images
    assert (images.wanted, images.downloaded, images.already_present) == (13, 9, 0)
    assert images.dead == {"d4": "HTTP 404", "s6": "HTTP 404", "s3": "no URL in the URL lists",
                           "d7": "not a JPEG or PNG image (first bytes b'<html>no')"}
    assert images.failed == {}
    assert (tmp_path / "images" / "d2.png").read_bytes() == image_bytes("d2")  # extension from the bytes
    assert server.hits["/img/d2.jpg"] == 2  # the 500 was retried
    assert server.hits["/img/d4.jpg"] == 1  # a 404 is not
    assert not list((tmp_path / "images").glob("*.part"))
    # dress: (d1,d2) ok, (d3,d4) lost d4, (d2,d1) ok; shirt: (s1,s2) ok, (s3,s1) lost s3
    assert report.val_queries == {"dress": {"total": 3, "usable": 2}, "shirt": {"total": 2, "usable": 1}}

    saved = json.loads((tmp_path / "fetch_report.json").read_text())
    assert saved["images"]["dead_count"] == 4 and set(saved["images"]["dead"]) == {"d4", "s6", "s3", "d7"}
    assert saved["val_queries"]["dress"] == {"total": 3, "usable": 2}
    assert saved["annotation_files_downloaded"] == 12


def test_rerun_skips_complete_files_and_retries_only_the_rest(server, tmp_path):
    publish_repository(server)
    run_fetch(server, tmp_path)
    hits_before = Counter(server.hits)
    report = run_fetch(server, tmp_path)
    assert (report.annotation_files_downloaded, report.images.downloaded, report.images.already_present) == (0, 0, 9)
    assert set(report.images.dead) == {"d4", "s6", "s3", "d7"}
    new_hits = server.hits - hits_before
    assert set(new_hits) == {"/img/d4.jpg", "/img/s6.jpg", "/img/d7.jpg"}


def test_an_interrupted_run_resumes_where_it_stopped(server, tmp_path):
    publish_repository(server)
    server.delay = 0.02
    images_folder = tmp_path / "images"
    images_folder.mkdir()
    (images_folder / "d1.jpg.part").write_bytes(b"\xff\xd8\xff truncated by a crash")

    def interrupt_after_three(done, total):
        if done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_fetch(server, tmp_path, on_progress=interrupt_after_three)
    first_run = sorted(p.stem for p in images_folder.glob("*.png"))
    assert 0 < len(first_run) < 9
    assert all((images_folder / f"{i}.png").read_bytes() == image_bytes(i) for i in first_run)
    assert not (tmp_path / "fetch_report.json").exists()

    hits_before = Counter(server.hits)
    report = run_fetch(server, tmp_path)
    assert report.images.already_present == len(first_run)
    assert report.images.downloaded == 9 - len(first_run)
    assert all(server.hits[f"/img/{i}.jpg"] == hits_before[f"/img/{i}.jpg"] for i in first_run)
    assert (images_folder / "d1.png").read_bytes() == image_bytes("d1")


def test_transient_errors_that_persist_are_failures_a_rerun_retries(server, tmp_path):
    publish_repository(server)
    server.serve("/img/d1.jpg", (503, b"busy"))
    report = run_fetch(server, tmp_path)
    assert report.images.failed == {"d1": "HTTP 503 (after 2 retries)"}
    assert server.hits["/img/d1.jpg"] == FAST.retries + 1
    server.serve("/img/d1.jpg", image_bytes("d1"))
    assert run_fetch(server, tmp_path).images.failed == {}


def test_without_images_only_annotations_come(server, tmp_path):
    publish_repository(server)
    report = run_fetch(server, tmp_path, images=False)
    assert report.images is None and not (tmp_path / "images").exists()
    assert report.val_queries["dress"] == {"total": 3, "usable": 0}
    assert not any(path.startswith("/img/") or path.startswith("/meta/") for path in server.hits)


def test_a_missing_annotation_file_names_its_url(server, tmp_path):
    with pytest.raises(DataError, match=r"/repo/captions/cap.dress.train.json: download: HTTP 404"):
        run_fetch(server, tmp_path)


def test_a_malformed_annotation_file_is_refused_before_it_lands(server, tmp_path):
    publish_repository(server)
    server.serve("/repo/captions/cap.dress.val.json", b"[{\"candidate\": ")
    with pytest.raises(DataError, match="cap.dress.val.json: download: not a JSON file"):
        run_fetch(server, tmp_path)
    assert not (tmp_path / "captions" / "cap.dress.val.json").exists()


def test_http_errors_are_classified(server):
    server.serve("/gone", (404, b""))
    server.serve("/forbidden", (403, b""))
    server.serve("/broken", (502, b""))
    server.serve("/slow", b"late")
    once = fetch_client(FetchSettings(retries=0, timeout=2))
    with pytest.raises(DeadLink, match="HTTP 404"):
        download(once, f"{server.url}/gone")
    with pytest.raises(DeadLink, match="HTTP 403"):
        download(once, f"{server.url}/forbidden")
    with pytest.raises(TransientError, match="HTTP 502"):
        download(once, f"{server.url}/broken")
    with pytest.raises(DeadLink, match="bad URL"):
        download(once, "ftp://example.invalid/x.jpg")
    server.delay = 0.5
    with pytest.raises(TransientError):
        download(fetch_client(FetchSettings(retries=0, timeout=0.1)), f"{server.url}/slow")


def test_retries_back_off_exponentially(server, monkeypatch):
    server.serve("/flaky", (500, b""), (500, b""), b"ok")
    sleeps = []
    monkeypatch.setattr(http_client.time, "sleep", sleeps.append)
    assert download(fetch_client(FetchSettings(retries=3, backoff=0.5)), f"{server.url}/flaky") == b"ok"
    assert sleeps == [0.5, 1.0]


def test_url_list_lines(tmp_path):
    good = tmp_path / "asin2url.dress.txt"
    good.write_text("B001 \thttps://x/1.jpg\nB002\thttp://x/2.jpg\n\nB001\thttps://x/other.jpg\n")
    assert read_url_list(good) == {"B001": "https://x/1.jpg", "B002": "http://x/2.jpg"}
    for line, problem in [("B003", "expected '<image id> <http(s) URL>'"), ("B003 ftp://x", "expected"),
                          ("../../evil https://x/e.jpg", "not a plain file name")]:
        bad = tmp_path / "bad.txt"
        bad.write_text(f"B001\thttps://x/1.jpg\n{line}\n")
        with pytest.raises(DataError, match=f"bad.txt: line 2: .*{re.escape(problem)}"):
            read_url_list(bad)
