"""OpenAI-compatible chat-completions backends (vLLM, SGLang, a hosted API) over plain HTTP.

Timeouts, connection errors, HTTP 429 and 5xx and malformed replies are retried with exponential
backoff (``Retry-After`` honoured); past ``max_attempts`` the request comes back as a ``Failure``
that the build records and the next run retries. Other HTTP errors (400, 401, 404) fail at once.
The API key is read from the environment variable named in the options at each request and is
never stored.
"""

from __future__ import annotations

import base64
import http.client
import json
import mimetypes
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from cirbench.facap.backends import (
    BackendOptions, CaptionRequest, Failure, ModificationRequest, Result, format_attributes, stage_prompt,
)


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Permanent(Exception):
    pass


class ChatClient:
    def __init__(self, options: BackendOptions, sleep: Callable[[float], None] = time.sleep):
        if not options.base_url or not options.model:
            raise ValueError("the openai backend needs a server URL and a model name (--api-base, --captioner-model/--modifier-model)")
        self.options = options
        self.url = options.base_url.rstrip("/") + "/chat/completions"
        self.sleep = sleep

    def complete(self, messages: list[dict]) -> Result:
        errors: list[str] = []
        for attempt in range(1, self.options.max_attempts + 1):
            try:
                return self._post(messages)
            except _Permanent as exc:
                return Failure(str(exc), attempt)
            except _Retryable as exc:
                errors.append(str(exc))
                if attempt < self.options.max_attempts:
                    self.sleep(exc.retry_after if exc.retry_after is not None else self.options.backoff_s * 2 ** (attempt - 1))
        return Failure(f"gave up after {len(errors)} attempts: {'; '.join(errors)}", len(errors))

    def _post(self, messages: list[dict]) -> str:
        body = {"model": self.options.model, "messages": messages, "max_tokens": self.options.max_new_tokens, "temperature": 0}
        request = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"), headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.options.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}", _retry_after(exc.headers)) from None
            raise _Permanent(f"HTTP {exc.code}: {exc.read()[:300].decode('utf-8', 'replace')}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        return _reply_text(payload)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.options.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers else None
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


def _reply_text(payload: bytes) -> str:
    try:
        content = json.loads(payload)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Retryable(f"malformed reply: {payload[:200]!r}") from None
    if not isinstance(content, str) or not content.strip():
        raise _Retryable("malformed reply: empty content")
    return content.strip()


def image_data_url(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


class _ChatBackend:
    stage = ""

    def __init__(self, options: BackendOptions, sleep: Callable[[float], None] = time.sleep):
        self.client = ChatClient(options, sleep)
        self.prompt = stage_prompt(self.stage, options)
        self.description = {
            "backend": "openai", "model": options.model, "base_url": options.base_url,
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
        text = self.prompt.render(
            category=request.category, description=request.description or "(none)",
            attributes=format_attributes(request.attributes),
        )
        content = [{"type": "image_url", "image_url": {"url": image_data_url(request.image_path)}}, {"type": "text", "text": text}]
        return [{"role": "user", "content": content}]


class OpenAIModifier(_ChatBackend):
    stage = "modifier"

    def modify(self, requests: Sequence[ModificationRequest]) -> list[Result]:
        return self._run(requests, self._messages)

    def _messages(self, request: ModificationRequest) -> list[dict]:
        text = self.prompt.render(
            category=request.category, reference_caption=request.reference_caption, target_caption=request.target_caption,
        )
        return [{"role": "user", "content": text}]


def build_captioner(options: BackendOptions) -> OpenAICaptioner:
    return OpenAICaptioner(options)


def build_modifier(options: BackendOptions) -> OpenAIModifier:
    return OpenAIModifier(options)
