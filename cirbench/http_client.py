"""The one HTTP client (httpx) with one retry policy, and URLs that are safe to record.

Retry policy (``RetryPolicy``), the same for every caller (dataset downloads, chat backends):

- retried: transport errors (timeouts, refused, reset or dropped connections) and the answers in
  ``RETRY_STATUSES`` (408, 425, 429 and every 5xx), and a reply the caller's ``parse`` refuses
  with ``RetryableReply`` (e.g. a chat server's malformed JSON);
- waits ``backoff_s * 2 ** (attempt - 1)`` seconds before the next try, or the server's
  ``Retry-After`` (seconds, at most ``MAX_RETRY_AFTER_S``) when it sends one;
- at most ``max_attempts`` tries in all, each with a ``timeout_s`` limit per network operation;
- not retried: 401 and 403 (``Refused``: the key or the access is wrong, and asking again only
  sends more of the same), other 4xx answers and URLs that cannot be requested (``HTTPFailure``).

Secrets never reach a file or a message: ``redact_url`` drops the user name, password, query
string and fragment of a URL before it is recorded or shown, and no error message holds a URL
the caller did not redact. ``join_url`` adds a path to a base URL that may carry a query string.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

RETRY_STATUSES = frozenset({408, 425, 429})  # and every 5xx
REFUSED_STATUSES = frozenset({401, 403})
MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4  # tries in all, the first included
    backoff_s: float = 1.0  # before the second try; doubled for each next one
    timeout_s: float = 30.0  # per connect / read / write


class HTTPFailure(Exception):
    """A request that did not succeed. The message is the last error (e.g. "HTTP 404"); also:
    ``status`` (None: no answer), ``attempts`` made, ``errors`` (one per attempt), ``body`` (the
    start of an error answer) and ``transient`` (worth retrying later: a later run may succeed)."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1, transient: bool = False,
                 errors: list[str] | None = None, body: str = ""):
        super().__init__(message)
        self.status, self.attempts, self.transient, self.body = status, attempts, transient, body
        self.errors = errors or [message]


class Refused(HTTPFailure):
    """401 / 403: the server refused the credentials or the access."""


class RetryableReply(Exception):
    """Raised by a ``parse`` callback: the answer was 200 but unusable; ask again."""


def _retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRY_STATUSES


class HttpClient:
    """One connection pool shared by the threads of a download or a build; ``sleep`` is the
    wait between tries (tests pass a recorder)."""

    def __init__(
        self,
        policy: RetryPolicy = RetryPolicy(),
        *,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 16,
        sleep: Callable[[float], None] | None = None,
    ):
        import httpx

        self.policy = policy
        self.sleep = sleep or time.sleep
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.Client(headers=dict(headers or {}), timeout=httpx.Timeout(policy.timeout_s),
                                    limits=limits, follow_redirects=True)

    def __enter__(self) -> "HttpClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def get(self, url: str) -> bytes:
        return self.request("GET", url)

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        parse: Callable[[bytes], Any] = lambda body: body,
    ) -> Any:
        """``parse(body)`` of the first successful answer, under the retry policy; raises
        ``Refused`` or ``HTTPFailure`` (its message names the last error, never the URL)."""
        errors: list[str] = []
        for attempt in range(1, self.policy.max_attempts + 1):
            wait = None
            try:
                return self._once(method, url, json, headers, parse, attempt)
            except _Retry as retry:
                errors.append(str(retry))
                wait = retry.retry_after
            if attempt < self.policy.max_attempts:
                self.sleep(wait if wait is not None else self.policy.backoff_s * 2 ** (attempt - 1))
        raise HTTPFailure(errors[-1], attempts=len(errors), transient=True, errors=errors)

    def _once(self, method, url, json, headers, parse, attempt) -> Any:
        import httpx

        try:
            response = self._client.request(method, url, json=json, headers=headers)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, ValueError) as exc:
            raise HTTPFailure(f"bad URL ({type(exc).__name__})", attempts=attempt) from None
        except httpx.TransportError as exc:  # timeouts, connection errors, broken answers
            raise _Retry(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
        status = response.status_code
        if status in REFUSED_STATUSES:
            raise Refused(f"HTTP {status}", status=status, attempts=attempt)
        if _retryable_status(status):
            raise _Retry(f"HTTP {status}", _retry_after(response.headers.get("Retry-After")))
        if status >= 400:
            raise HTTPFailure(f"HTTP {status}", status=status, attempts=attempt, body=response.text[:300])
        try:
            return parse(response.content)
        except RetryableReply as exc:
            raise _Retry(str(exc)) from None


class _Retry(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    try:
        return min(float(value), MAX_RETRY_AFTER_S) if value is not None else None
    except ValueError:  # an HTTP date: use our own backoff
        return None


def redact_url(url: str | None) -> str | None:
    """``url`` without user name, password, query string and fragment: what may be recorded.

    >>> redact_url("https://user:key@host:8443/v1?api-key=secret#x")
    'https://host:8443/v1'
    """
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def join_url(base: str, path: str) -> str:
    """``path`` appended to the path of ``base``, keeping the base's query string after it.

    >>> join_url("https://h/v1?api-version=x", "/chat/completions")
    'https://h/v1/chat/completions?api-version=x'
    """
    parts = urlsplit(base)
    joined = parts.path.rstrip("/") + "/" + path.lstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, joined, parts.query, parts.fragment))
