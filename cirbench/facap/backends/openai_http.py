"""OpenAI-compatible chat-completions backends (vLLM, SGLang, a hosted API) over HTTP.

Requests go through the one HTTP client and its retry policy (``cirbench.http_client``):
timeouts, connection errors, HTTP 408/425/429 and 5xx and malformed replies are retried with
exponential backoff (``Retry-After`` honoured); past ``max_attempts`` the request comes back as a
``Failure`` that the build records and the next run retries. Other 4xx answers (400, 404) fail at
once as a ``Failure``. 401 and 403 stop the build at once (``DataError``: "the endpoint refused
the key"): no further request is sent, and what the build has stored so far is kept.

The API key is read from the environment variable named in the options and sent only in the
``Authorization`` header; it is never stored. What is recorded of the server (``description``,
which goes to manifest.json and build.json) is its URL without credentials or query string.
"""

from __future__ import annotations

import json
import mimetypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from cirbench.errors import DataError
from cirbench.facap.backends import (
    BackendOptions, CaptionRequest, Failure, ModificationRequest, Result, caption_prompt, modification_prompt, stage_prompt,
)
from cirbench.files import data_url
from cirbench.http_client import HTTPFailure, HttpClient, Refused, RetryableReply, RetryPolicy, join_url, redact_url

REFUSED = "the endpoint refused the key"


class ChatClient:
    def __init__(self, options: BackendOptions, sleep: Callable[[float], None] | None = None):
        if not options.base_url or not options.model:
            raise ValueError("the openai backend needs a server URL and a model name (--api-base, --captioner-model/--modifier-model)")
        self.options = options
        self.url = join_url(options.base_url, "chat/completions")
        policy = RetryPolicy(max_attempts=options.max_attempts, backoff_s=options.backoff_s, timeout_s=options.timeout_s)
        self.http = HttpClient(policy, max_connections=max(1, options.concurrency), sleep=sleep)
        self._refused: DataError | None = None  # once set, nothing more is sent
        self._lock = threading.Lock()

    def complete(self, messages: list[dict]) -> Result:
        """The reply's text, or a ``Failure``; raises ``DataError`` once the server refused the key."""
        if self._refused is not None:
            raise self._refused
        body = {"model": self.options.model, "messages": messages, "max_tokens": self.options.max_new_tokens, "temperature": 0}
        try:
            return self.http.request("POST", self.url, json=body, headers=self._headers(), parse=_reply_text)
        except Refused as exc:
            raise self._refuse(exc) from None
        except HTTPFailure as exc:
            if exc.transient:
                return Failure(f"gave up after {exc.attempts} attempts: {'; '.join(exc.errors)}", exc.attempts)
            return Failure(f"{exc}: {exc.body}" if exc.body else str(exc), exc.attempts)

    def _refuse(self, exc: Refused) -> DataError:
        with self._lock:
            if self._refused is None:
                self._refused = DataError(
                    redact_url(self.url), f"HTTP {exc.status}",
                    f"{REFUSED} (read from ${self.options.api_key_env}); no further request was sent and "
                    "the work done so far is kept: set the right key and rerun the same command")
            return self._refused

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.options.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}


def _reply_text(payload: bytes) -> str:
    try:
        content = json.loads(payload)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise RetryableReply(f"malformed reply: {payload[:200]!r}") from None
    if not isinstance(content, str) or not content.strip():
        raise RetryableReply("malformed reply: empty content")
    return content.strip()


def image_data_url(path: Path) -> str:
    mime = mimetypes.guess_type(Path(path).name)[0] or "image/jpeg"
    return data_url(Path(path).read_bytes(), mime)


class _ChatBackend:
    stage = ""

    def __init__(self, options: BackendOptions, sleep: Callable[[float], None] | None = None):
        self.client = ChatClient(options, sleep)
        self.prompt = stage_prompt(self.stage, options)
        self.description = {
            "backend": "openai", "model": options.model, "base_url": redact_url(options.base_url),
            "api_key_env": options.api_key_env, "max_new_tokens": options.max_new_tokens,
            "prompt": self.prompt.record(),
        }

    def _run(self, requests: Sequence, messages: Callable) -> list[Result]:
        with ThreadPoolExecutor(max_workers=max(1, self.client.options.concurrency)) as pool:
            return list(pool.map(lambda r: self.client.complete(messages(r)), requests))


class OpenAICaptioner(_ChatBackend):
    stage = "captioner"

    def caption(self, requests: Sequence[CaptionRequest]) -> list[Result]:
        return self._run(requests, self._messages)

    def _messages(self, request: CaptionRequest) -> list[dict]:
        text = caption_prompt(self.prompt, request)
        content = [{"type": "image_url", "image_url": {"url": image_data_url(request.image_path)}}, {"type": "text", "text": text}]
        return [{"role": "user", "content": content}]


class OpenAIModifier(_ChatBackend):
    stage = "modifier"

    def modify(self, requests: Sequence[ModificationRequest]) -> list[Result]:
        return self._run(requests, self._messages)

    def _messages(self, request: ModificationRequest) -> list[dict]:
        return [{"role": "user", "content": modification_prompt(self.prompt, request)}]


def build_captioner(options: BackendOptions) -> OpenAICaptioner:
    return OpenAICaptioner(options)


def build_modifier(options: BackendOptions) -> OpenAIModifier:
    return OpenAIModifier(options)
