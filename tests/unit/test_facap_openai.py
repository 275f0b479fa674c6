"""The OpenAI-compatible backend against a local chat-completions server on loopback that injects
429, 500, timeouts and malformed replies: every request ends answered or recorded as failed, a
later run retries the failures, nothing is lost, and the API key is written nowhere."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from facap_fixtures import write_image

from cirbench.errors import DataError
from cirbench.facap.backends import BackendOptions, CaptionRequest, ModificationRequest, build_captioner, build_modifier
from cirbench.facap.pipeline import annotate_stage
from cirbench.facap.store import JsonlStore

SECRET = "sk-test-not-to-be-written-anywhere"
# Faults each request meets before it is answered, chosen by a hash of its text.
FAULT_PLANS = [[], ["429"], ["500", "malformed"], ["timeout"], ["malformed", "429", "500"], ["empty"]]
SLOW_S, CLIENT_TIMEOUT_S = 1.0, 0.3


class FaultyChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.attempts: Counter = Counter()
        self.hopeless: set[str] = set()  # texts that get 503 until healed
        self.refusals: Counter = Counter()  # 401 answers
        self.queries: list[str] = []  # query strings of answered requests
        self.lock = threading.Lock()

    def handle_error(self, request, client_address):  # the client hung up on a slow reply: expected
        pass


class ChatHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        path, _, query = self.path.partition("?")
        if path != "/v1/chat/completions":
            return self._send(404, b'{"error": "no such route"}')
        if self.headers.get("Authorization") != f"Bearer {SECRET}":
            with self.server.lock:
                self.server.refusals[path] += 1
            return self._send(401, b'{"error": "unauthorised"}')
        if query:
            self.server.queries.append(query)
        text = _prompt_text(body["messages"])
        with self.server.lock:
            attempt = self.server.attempts[text]
            self.server.attempts[text] += 1
        if any(marker in text for marker in self.server.hopeless):
            return self._send(503, b"overloaded")
        plan = FAULT_PLANS[int(hashlib.sha256(text.encode()).hexdigest(), 16) % len(FAULT_PLANS)]
        fault = plan[attempt] if attempt < len(plan) else None
        if fault == "timeout":
            time.sleep(SLOW_S)
        if fault in ("429", "500"):
            return self._send(int(fault), b"try again", {"Retry-After": "0"} if fault == "429" else {})
        if fault == "malformed":
            return self._send(200, b'{"choices": []}')
        quoted = re.search(r'"([^"]*)"', text)  # the item's description: which request this answers
        content = "" if fault == "empty" else f"ANSWER[{quoted.group(1) if quoted else text[-20:]}]"
        self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode())

    def _send(self, status, payload, headers=None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _prompt_text(messages) -> str:
    content = messages[0]["content"]
    if isinstance(content, str):
        return content
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    return content[1]["text"]


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CIRBENCH_TEST_KEY", SECRET)
    server = FaultyChatServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def _base(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def _thumbnails():
    from cirbench.facap.embedding import make_embedder

    return make_embedder("thumbnail")


def _options(server, **overrides) -> BackendOptions:
    values = dict(model="test-model", base_url=f"{_base(server)}/v1",
                  api_key_env="CIRBENCH_TEST_KEY", timeout_s=CLIENT_TIMEOUT_S, backoff_s=0.01,
                  max_attempts=5, concurrency=4)
    return BackendOptions(**{**values, **overrides})


def test_captions_survive_every_fault_and_hopeless_ones_are_retried_later(server, tmp_path):
    image = tmp_path / "img.png"
    write_image(image, "red")
    requests = [CaptionRequest(f"img{i}", image, "dress", f"item number {i}") for i in range(24)]
    server.hopeless = {"item number 7\"", "item number 13\""}
    store = JsonlStore(tmp_path / "captions.jsonl")

    first = annotate_stage(store, requests, build_captioner("openai", _options(server)).caption, "captions", False)
    assert set(first) == {r.key for r in requests}  # every request is in the store, answered or failed
    failed = {k for k, r in first.items() if "error" in r}
    assert failed == {"img7", "img13"}
    assert all(first[k]["attempts"] == 5 and "HTTP 503" in first[k]["error"] for k in failed)
    for request in requests:
        if request.key not in failed:
            assert first[request.key]["text"] == f"ANSWER[{request.description}]"
    faults = Counter(f for text in server.attempts for f in FAULT_PLANS[int(hashlib.sha256(text.encode()).hexdigest(), 16) % len(FAULT_PLANS)])
    assert all(faults[f] for f in ("429", "500", "timeout", "malformed", "empty"))  # each fault was met

    server.hopeless = set()  # the server recovers; the next run retries only the failures
    before = sum(server.attempts.values())
    second = annotate_stage(store, requests, build_captioner("openai", _options(server)).caption, "captions", False)
    assert {k: r.get("text") for k, r in second.items()} == {r.key: f"ANSWER[{r.description}]" for r in requests}
    assert sum(server.attempts.values()) - before <= 2 * 5  # only img7 and img13 were asked again
    assert not any(SECRET in p.read_text() for p in tmp_path.iterdir() if p.suffix == ".jsonl")


def test_modifier_sends_text_only_and_permanent_errors_fail_without_retries(server, tmp_path):
    modifier = build_modifier("openai", _options(server))
    results = modifier.modify([ModificationRequest("r", "top", "A red top.", "A blue top.")])
    assert results[0].startswith("ANSWER[") and modifier.description["prompt"]["name"] == "modification_v1"
    assert SECRET not in json.dumps(modifier.description)
    wrong_path = build_modifier("openai", _options(server, base_url=f"{_base(server)}/v2"))
    failure = wrong_path.modify([ModificationRequest("r", "top", "A red top.", "A blue top.")])[0]
    assert failure.attempts == 1 and "HTTP 404" in failure.error


def test_a_refused_key_stops_the_build_at_once_and_keeps_the_work_so_far(server, tmp_path):
    image = tmp_path / "img.png"
    write_image(image, "red")
    requests = [CaptionRequest(f"img{i}", image, "dress", f"item number {i}") for i in range(24)]
    store = JsonlStore(tmp_path / "captions.jsonl")
    annotate_stage(store, requests[:3], build_captioner("openai", _options(server)).caption, "captions", False)
    before = sum(server.attempts.values())
    wrong_key = build_captioner("openai", _options(server, api_key_env="CIRBENCH_NO_SUCH_KEY", concurrency=4))
    with pytest.raises(DataError, match="the endpoint refused the key") as refused:
        annotate_stage(store, requests, wrong_key.caption, "captions", False)
    assert refused.value.entry == "HTTP 401" and "rerun" in refused.value.problem
    assert sum(server.refusals.values()) <= 4  # only the requests already in flight (concurrency 4)
    assert sum(server.attempts.values()) == before  # a refused request never reached the model
    assert set(store.load()) == {"img0", "img1", "img2"}  # the work so far is kept


def test_a_query_string_on_the_api_base_is_kept_after_the_path_and_never_recorded(server, tmp_path):
    base = f"{_base(server)}/v1?api-version=2026-01&api-key={SECRET}"
    modifier = build_modifier("openai", _options(server, base_url=base))
    assert modifier.modify([ModificationRequest("r", "top", "A red top.", "A blue top.")])[0].startswith("ANSWER[")
    assert server.queries == [f"api-version=2026-01&api-key={SECRET}"]
    assert modifier.description["base_url"] == f"{_base(server)}/v1" and SECRET not in json.dumps(modifier.description)
    with_user = build_modifier("openai", _options(server, base_url=f"http://user:{SECRET}@127.0.0.1:{server.server_address[1]}/v1"))
    assert SECRET not in json.dumps(with_user.description)


def test_build_records_the_server_without_its_secret(server, tmp_path):
    from facap_fixtures import write_folder

    from cirbench.facap.build import FacapBuildConfig, SourceSpec, build_facap
    from cirbench.facap.pipeline import PipelineSettings

    folder = write_folder(tmp_path / "shop")
    options = _options(server, base_url=f"{_base(server)}/v1?api-key={SECRET}")
    config = FacapBuildConfig(out=tmp_path / "out", sources=(SourceSpec("folder", folder, folder / "meta.jsonl"),),
                              captioner="openai", modifier="openai", captioner_options=options,
                              modifier_options=options, settings=PipelineSettings(progress=False))
    build_facap(config, embedder=_thumbnails())
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert {"manifest.json", "build.json"} <= {p.name for p in written}
    assert not [p for p in written if SECRET.encode() in p.read_bytes()]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["captioner"]["base_url"] == f"{_base(server)}/v1"
