"""The HTTP client every source adapter uses.

* one :class:`requests.Session` per client, with an honest ``User-Agent`` (say who
  you are and how to reach you: ``"TenderPool/0.1 (+https://example.org; ops@example.org)"``);
* a (connect, read) timeout on every request;
* retries with exponential back-off and jitter on HTTP 429, any 5xx, connection
  errors, timeouts, broken bodies and — when JSON is expected — bodies that are
  not valid JSON (a truncated response); ``Retry-After`` (seconds or HTTP date) is
  honoured, capped by ``max_wait``;
* HTTP 400 is never retried: it is a bug in our query, raised as
  :class:`~scrapers.base.QueryError` carrying the source's own message (ODS
  ``message``, TED ``message``/``type``) and code;
* other 4xx are not retried either (:class:`~scrapers.base.FetchError`);
* after the last try, :class:`~scrapers.base.FetchError` with the status (or
  ``None`` for network errors) and the URL;
* a politeness delay between two requests of the same client (one request at a
  time per client; the client is not meant to be shared between threads).

``sleep``, ``jitter``, ``clock`` and ``now`` are injectable so tests never wait.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from .base import FetchError, QueryError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)

_RETRYABLE_EXCEPTIONS: tuple[type[Exception], ...] = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def make_session(user_agent: str, *, accept: str = "application/json") -> requests.Session:
    """A session that announces itself honestly."""
    if not user_agent or not user_agent.strip():
        raise ValueError("a User-Agent naming the service and a contact is required")
    session = requests.Session()
    session.headers["User-Agent"] = user_agent.strip()
    session.headers["Accept"] = accept
    return session


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful response, already read."""

    status: int
    url: str  # final URL, query string included
    content: bytes
    headers: Mapping[str, str]
    data: Any = None  # decoded JSON when it was asked for


class _Retry(Exception):
    """Internal: this try failed in a way worth retrying."""

    def __init__(self, reason: str, status: int | None, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.wait = wait


class HttpClient:
    """A polite, retrying wrapper around one :class:`requests.Session`."""

    def __init__(
        self,
        user_agent: str,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_tries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_wait: float = 300.0,
        politeness_delay: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if max_tries < 1:
            raise ValueError("max_tries must be at least 1")
        self.session = session if session is not None else make_session(user_agent)
        if session is not None:
            session.headers["User-Agent"] = user_agent
        self.timeout = timeout
        self.max_tries = max_tries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_wait = max_wait
        self.politeness_delay = politeness_delay
        self._sleep = sleep
        self._jitter = jitter
        self._clock = clock
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._last_request_at: float | None = None
        self.request_count = 0

    # ------------------------------------------------------------------ API

    def get(self, url: str, *, params: Mapping[str, Any] | None = None, accept: str | None = None) -> Reply:
        headers = {"Accept": accept} if accept else None
        return self.request("GET", url, params=params, headers=headers)

    def get_json(self, url: str, *, params: Mapping[str, Any] | None = None) -> Reply:
        return self.request("GET", url, params=params, want_json=True)

    def post_json(self, url: str, body: Any) -> Reply:
        return self.request("POST", url, json_body=body, want_json=True)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- internals

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        want_json: bool = False,
    ) -> Reply:
        """Send one logical request, retrying as described in the module docstring."""
        last: _Retry | None = None
        for attempt in range(1, self.max_tries + 1):
            self._polite_wait()
            try:
                return self._try_once(method, url, params, json_body, headers, want_json)
            except _Retry as retry:
                last = retry
                if attempt == self.max_tries:
                    break
                wait = retry.wait if retry.wait is not None else self._backoff(attempt)
                log.warning(
                    "%s %s failed (%s), try %d/%d, waiting %.1f s",
                    method, url, retry.reason, attempt, self.max_tries, wait,
                )  # fmt: skip
                self._sleep(wait)
        reason = last.reason if last is not None else "no try made"
        raise FetchError(
            f"{method} {url} failed after {self.max_tries} tries: {reason}",
            status=last.status if last is not None else None,
            url=url,
        )

    def _try_once(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
        want_json: bool,
    ) -> Reply:
        self.request_count += 1
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=json_body,
                headers=dict(headers) if headers else None,
                timeout=self.timeout,
            )
        except _RETRYABLE_EXCEPTIONS as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}", None) from exc
        except requests.RequestException as exc:
            raise FetchError(f"{method} {url} failed: {type(exc).__name__}: {exc}", url=url) from exc
        finally:
            self._last_request_at = self._clock()

        status = response.status_code
        final_url = response.url or url
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}", status, self._retry_after(response))
        if status == 400:
            message, code = source_error(response)
            raise QueryError(
                f"the source refused the query (HTTP 400): {message} [{method} {final_url}]",
                status=400,
                url=final_url,
                code=code,
            )
        if status >= 400:
            message, code = source_error(response)
            raise FetchError(
                f"HTTP {status} for {method} {final_url}: {message}", status=status, url=final_url, code=code
            )
        if not 200 <= status < 300:
            raise FetchError(
                f"unexpected HTTP {status} for {method} {final_url}", status=status, url=final_url
            )

        content = response.content
        data: Any = None
        if want_json:
            try:
                data = json.loads(content)
            except (ValueError, UnicodeDecodeError) as exc:
                raise _Retry(
                    f"response is not valid JSON (truncated?): {exc} — {len(content)} bytes received",
                    status,
                ) from exc
        return Reply(status=status, url=final_url, content=content, headers=dict(response.headers), data=data)

    def _polite_wait(self) -> None:
        if self._last_request_at is None or self.politeness_delay <= 0:
            return
        remaining = self.politeness_delay - (self._clock() - self._last_request_at)
        if remaining > 0:
            self._sleep(remaining)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return float(ceiling * (0.5 + 0.5 * self._jitter()))

    def _retry_after(self, response: requests.Response) -> float | None:
        value = response.headers.get("Retry-After")
        if not value:
            return None
        seconds = parse_retry_after(value, self._now())
        if seconds is None:
            return None
        return min(seconds, self.max_wait)


def parse_retry_after(value: str, now: dt.datetime) -> float | None:
    """``Retry-After`` as seconds to wait: ``"120"`` or an HTTP date; ``None`` if unreadable."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def source_error(response: requests.Response) -> tuple[str, str | None]:
    """The source's own error message and code from an error body.

    Understands ODS (``{"error_code", "message"}``), TED (``{"message", "error":
    {"type"}}`` or a bare ``{"type", "location", …}``) and jpbenga's wrapper
    (``{"error", "details"}``); falls back to the start of the body.
    """
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return (text[:500] or response.reason or "no message"), None
    if not isinstance(body, dict):
        return json.dumps(body, ensure_ascii=False)[:500], None
    code: str | None = None
    message: str | None = None
    for key in ("error_code", "type", "errorCode"):
        if isinstance(body.get(key), str):
            code = body[key]
            break
    for key in ("message", "details", "error_description", "detail"):
        if isinstance(body.get(key), str) and body[key].strip():
            message = body[key].strip()
            break
    error = body.get("error")
    if isinstance(error, dict):
        if code is None and isinstance(error.get("type"), str):
            code = error["type"]
        if message is None and isinstance(error.get("message"), str):
            message = error["message"]
    elif isinstance(error, str) and code is None:
        code = error
    if message is None:
        message = json.dumps(body, ensure_ascii=False)[:500]
    elif code and code not in message:
        message = f"{message} ({code})"
    return message, code
