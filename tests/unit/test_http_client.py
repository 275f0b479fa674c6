"""The one HTTP client against a loopback server: which answers are retried, how long it waits,
how many tries, and URLs that carry no secret into records."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cirbench.http_client import (
    HTTPFailure,
    HttpClient,
    Refused,
    RetryableReply,
    RetryPolicy,
    join_url,
    redact_url,
)


class ScriptedServer(ThreadingHTTPServer):
    """path -> list of (status, body, headers) answers, the last one repeated."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: dict[str, list] = {}
        self.hits: Counter = Counter()

    def handle_error(self, request, client_address):  # the client hung up on a slow answer
        pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.hits[self.path] += 1
        answers = self.server.script.get(self.path, [(404, b"", {})])
        status, body, headers = answers[min(self.server.hits[self.path], len(answers)) - 1]
        if status == "slow":
            time.sleep(0.5)
            status = 200
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    scripted = ScriptedServer()
    threading.Thread(target=scripted.serve_forever, args=(0.05,), daemon=True).start()
    yield scripted
    scripted.shutdown()
    scripted.server_close()


def client(sleeps: list, **policy) -> HttpClient:
    return HttpClient(RetryPolicy(**{"max_attempts": 4, "backoff_s": 0.5, "timeout_s": 2.0, **policy}), sleep=sleeps.append)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503])
def test_transient_statuses_are_retried_with_exponential_backoff(server, status):
    server.script["/x"] = [(status, b"", {}), (status, b"", {}), (200, b"ok", {})]
    sleeps = []
    assert client(sleeps).get(f"{server.url}/x") == b"ok"
    assert sleeps == [0.5, 1.0] and server.hits["/x"] == 3


def test_retry_after_replaces_the_backoff_and_is_capped(server):
    server.script["/x"] = [(429, b"", {"Retry-After": "3"}), (503, b"", {"Retry-After": "9999"}),
                           (503, b"", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), (200, b"ok", {})]
    sleeps = []
    assert client(sleeps).get(f"{server.url}/x") == b"ok"
    assert sleeps == [3.0, 60.0, 2.0]  # a date is not a number of seconds: the policy's backoff


def test_after_the_last_try_the_failure_says_what_each_try_met(server):
    server.script["/x"] = [(500, b"", {}), (502, b"", {})]
    sleeps = []
    with pytest.raises(HTTPFailure) as failure:
        client(sleeps, max_attempts=3).get(f"{server.url}/x")
    assert failure.value.transient and failure.value.attempts == 3 and server.hits["/x"] == 3
    assert failure.value.errors == ["HTTP 500", "HTTP 502", "HTTP 502"] and str(failure.value) == "HTTP 502"
    assert len(sleeps) == 2


@pytest.mark.parametrize("status, kind", [(401, Refused), (403, Refused), (404, HTTPFailure), (400, HTTPFailure)])
def test_client_errors_are_not_retried(server, status, kind):
    server.script["/x"] = [(status, b"details", {})]
    sleeps = []
    with pytest.raises(kind) as failure:
        client(sleeps).get(f"{server.url}/x")
    assert not failure.value.transient and failure.value.status == status and server.hits["/x"] == 1 and not sleeps
    assert str(failure.value) == f"HTTP {status}"


def test_timeouts_are_retried_and_a_reply_the_caller_refuses_too(server):
    server.script["/slow"] = [("slow", b"late", {}), (200, b"fast", {})]
    sleeps = []
    assert client(sleeps, timeout_s=0.1).get(f"{server.url}/slow") == b"fast" and len(sleeps) == 1
    server.script["/json"] = [(200, b"{broken", {}), (200, b"good", {})]

    def parse(body: bytes) -> str:
        if body.startswith(b"{"):
            raise RetryableReply("malformed reply")
        return body.decode()

    assert client(sleeps).request("GET", f"{server.url}/json", parse=parse) == "good"


def test_unreachable_servers_and_bad_urls(server):
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    sleeps = []
    with pytest.raises(HTTPFailure) as refused:
        client(sleeps, max_attempts=2).get(f"http://127.0.0.1:{port}/x")
    assert refused.value.transient and "ConnectError" in str(refused.value) and sleeps == [0.5]
    with pytest.raises(HTTPFailure, match="bad URL") as bad:
        client(sleeps).get("ftp://example.invalid/file")
    assert not bad.value.transient


def test_recorded_urls_carry_no_credentials_query_or_fragment():
    assert redact_url("https://user:sk-secret@host:8443/v1?api-key=sk-secret#frag") == "https://host:8443/v1"
    assert redact_url("http://[::1]:8000/v1/") == "http://[::1]:8000/v1/"
    assert redact_url(None) is None


@pytest.mark.parametrize("base, expected", [
    ("https://h/v1", "https://h/v1/chat/completions"),
    ("https://h/v1/", "https://h/v1/chat/completions"),
    ("https://h/v1?api-version=x", "https://h/v1/chat/completions?api-version=x"),
    ("https://h/openai/v1/?api-version=x&k=1", "https://h/openai/v1/chat/completions?api-version=x&k=1"),
])
def test_request_urls_keep_the_query_string_after_the_path(base, expected):
    assert join_url(base, "/chat/completions") == expected
