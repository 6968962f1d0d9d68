"""Fixtures of the digest tests: a fixed morning, a real SMTP server on localhost, the job runner."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from flask import Flask

from tenderpool.db import Database
from tenderpool.digests.services import DigestReport, send_due_digests

PARIS = ZoneInfo("Europe/Paris")


def morning(days_ahead: int = 2, hour: int = 7, minute: int = 30) -> dt.datetime:
    """A Paris morning a few days ahead: later than every seeded account's creation, so that the
    default 07:00 digest is due and its window (the day before) is complete."""
    day = dt.datetime.now(PARIS).date() + dt.timedelta(days=days_ahead)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=PARIS).astimezone(dt.UTC)


NOW = morning()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SmtpServer:
    """What a real SMTP server on 127.0.0.1 received; ``mode`` says how it answers DATA.

    ok: 250 and keep the message; refuse: 550 (nothing kept); drop: close the connection in the
    middle of DATA (nothing kept); a callable decides per message (returns the mode).
    """

    port: int
    mode: str | Callable[[EmailMessage], str] = "ok"
    messages: list[EmailMessage] = field(default_factory=list)
    refused: int = 0
    dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        mode = self.mode(message) if callable(self.mode) else self.mode
        with self.lock:
            if mode == "refuse":
                self.refused += 1
                return "550 5.1.1 Mailbox unavailable"
            if mode == "drop":
                self.dropped += 1
                server.transport.abort()
                return "421 4.3.0 Connection dropped"
            self.messages.append(message)
        return "250 2.0.0 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(port=free_port())
    controller = Controller(server, hostname="127.0.0.1", port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def smtp_app(overrides: dict[str, Any], database: Database, smtp: SmtpServer) -> Flask:
    """The app, sending through the SMTP server of the test."""
    from tenderpool.app import build_app

    mail = {"host": "127.0.0.1", "port": smtp.port, "security": "none", "timeout_seconds": 5}
    return build_app({**overrides, "mail": mail}, database=database)


def run_job(app: Flask, database: Database, now: dt.datetime = NOW, **kwargs: Any) -> DigestReport:
    with app.app_context():
        return send_due_digests(
            database,
            app.extensions["tenderpool.mailer"],
            settings=app.extensions["tenderpool.settings"],
            now=now,
            **kwargs,
        )
