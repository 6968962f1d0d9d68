"""Logging: readable lines in development, one JSON object a line in production.

Every line says what it belongs to: the request id in the web app (taken from the
``X-Request-ID`` header when it looks like one, generated otherwise, and echoed in the
response), the job, its run and the scheduler instance in the scheduler
(:func:`log_context`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tenderpool.config import Settings

# A request id from outside is copied into every log line: only a short, plain token is accepted
# (no spaces, quotes or newlines that could forge a log line).
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_context: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "tenderpool_log_context", default=()
)


def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-ID`` when it is a plain token of at most 64 characters, else a new id."""
    if header and _REQUEST_ID_RE.match(header):
        return header
    return secrets.token_hex(8)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add ``fields`` (job, run, instance…) to every log line written inside the block, in this thread."""
    merged = {**dict(_context.get()), **{k: str(v) for k, v in fields.items()}}
    token = _context.set(tuple(merged.items()))
    try:
        yield
    finally:
        _context.reset(token)


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` and the :func:`log_context` fields on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = "-"
        try:
            from flask import g, has_request_context

            if has_request_context():
                request_id = g.get("request_id", "-")
        except ImportError:  # pragma: no cover - flask is a dependency
            pass
        fields = dict(_context.get())
        record.request_id = request_id
        record.context = fields
        tags = [] if request_id == "-" else [request_id]
        tags += [f"{key}={value}" for key, value in fields.items()]
        record.tags = " ".join(tags) or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        payload.update(getattr(record, "context", {}) or {})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


_configured = False


def configure(settings: Settings) -> None:
    """Install the handler once per process (create_app may run several times in tests)."""
    global _configured
    root = logging.getLogger("tenderpool")
    root.setLevel(settings.log_level)
    if _configured:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(tags)s] %(message)s"))
    root.addHandler(handler)
    root.propagate = settings.env == "test"  # let pytest capture logs
    # APScheduler's own warnings (a missed run, a job still running) belong in the same stream.
    aps = logging.getLogger("apscheduler")
    aps.setLevel(logging.WARNING)
    aps.addHandler(handler)
    aps.propagate = settings.env == "test"
    _configured = True
