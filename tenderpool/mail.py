"""Outgoing email.

Services *queue* messages on the database session; they leave only after that
session's transaction commits (a rolled-back approval must not email anyone).
Transport: SMTP when ``mail.host`` is set, otherwise ``.eml`` files in the
instance outbox, so that development needs no mail server.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import ssl
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from flask import current_app, render_template
from jinja2 import TemplateNotFound
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from tenderpool.config import MailSettings

log = logging.getLogger(__name__)
_QUEUE_KEY = "tenderpool.outgoing_mail"


@dataclass
class OutgoingMail:
    to: list[str]
    subject: str
    text: str
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def compose(template: str, to: str | list[str], subject: str, **context: Any) -> OutgoingMail:
    """Render ``templates/email/<template>.txt`` (and ``.html`` if it exists) into a message."""
    recipients = [to] if isinstance(to, str) else list(to)
    context.setdefault("subject", subject)
    text = render_template(f"email/{template}.txt", **context)
    html: str | None = None
    try:
        current_app.jinja_env.get_template(f"email/{template}.html")
    except TemplateNotFound:
        pass
    else:
        html = render_template(f"email/{template}.html", **context)
    return OutgoingMail(to=recipients, subject=subject, text=text, html=html)


def queue(session: Session, mail: OutgoingMail) -> None:
    """Send ``mail`` once ``session`` commits; drop it if the session rolls back."""
    if not session.in_transaction():
        session.begin()  # tie the message to a transaction, so that a rollback drops it
    session.info.setdefault(_QUEUE_KEY, []).append(mail)


class Mailer:
    """Sends messages over SMTP, or writes them to the file outbox."""

    def __init__(self, settings: MailSettings, outbox: Path) -> None:
        self.settings = settings
        self.outbox = outbox

    def build(self, mail: OutgoingMail) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.sender
        msg["To"] = ", ".join(mail.to)
        msg["Subject"] = mail.subject
        msg["Date"] = formatdate(localtime=False)
        domain = self.settings.sender.rsplit("@", 1)[-1].strip(">").strip() or "tenderpool.local"
        msg["Message-ID"] = make_msgid(domain=domain)
        for name, value in mail.headers.items():
            msg[name] = value
        msg.set_content(mail.text)
        if mail.html is not None:
            msg.add_alternative(mail.html, subtype="html")
        return msg

    def send(self, mail: OutgoingMail) -> EmailMessage:
        """Deliver one message now; raises on SMTP failure."""
        msg = self.build(mail)
        if not self.settings.host:
            self.outbox.mkdir(parents=True, exist_ok=True)
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
            path = self.outbox / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
            path.write_bytes(bytes(msg))
            log.info("mail written to %s (to %s: %s)", path, msg["To"], mail.subject)
            return msg
        s = self.settings
        smtp: smtplib.SMTP
        if s.security == "tls":
            smtp = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout_seconds, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        with smtp:
            if s.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if s.username:
                smtp.login(s.username, s.password)
            smtp.send_message(msg)
        log.info("mail sent to %s: %s", msg["To"], mail.subject)
        return msg


def send_queued_after_commit(factory: sessionmaker[Session], mailer: Mailer) -> None:
    """Wire ``factory``'s sessions so queued mail leaves after commit and is dropped on rollback."""

    def after_commit(session: Session) -> None:
        messages = session.info.pop(_QUEUE_KEY, [])
        for mail in messages:
            try:
                mailer.send(mail)
            except (OSError, smtplib.SMTPException):
                # The transaction is already committed: losing this message must not
                # turn the user's successful action into an error page.
                log.exception("could not send mail to %s: %s", mail.to, mail.subject)

    def after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
        # A rolled-back savepoint inside a larger transaction keeps the outer queue.
        if previous_transaction.parent is None:
            session.info.pop(_QUEUE_KEY, None)

    event.listen(factory, "after_commit", after_commit)
    event.listen(factory, "after_soft_rollback", after_soft_rollback)
