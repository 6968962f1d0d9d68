"""The shared workspace of a consortium: discussion, documents, mémoire technique, checklist.

Only active members write here; chamber staff of the members' chambers may post in the
discussion (they help, they do not act in a firm's name). Access to read is checked by
:func:`tenderpool.consortia.services.workspace_for` in the views.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenderpool.accounts.models import User
from tenderpool.consortia.models import (
    ChecklistItem,
    Consortium,
    ConsortiumMessage,
    MemoireSection,
    SectionStatus,
    SharedDocument,
    SharedDocumentVersion,
    Status,
)
from tenderpool.consortia.services import (
    EditConflict,
    acting_member,
    active_member,
    chambers_of,
    clean_text,
    deadline_text,
    due_on,
    firm_id_of,
    flush_or_conflict,
    record_event,
    refresh_status,
)
from tenderpool.errors import Conflict, NotFound, ValidationError
from tenderpool.firms.documents import forget_stored, inspect_upload
from tenderpool.storage import Storage

MAX_MESSAGE = 5000
MAX_BODY = 200_000  # a section of the mémoire: about 60 pages of text

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
MARKDOWN_TAGS = {
    "p", "br", "hr", "ul", "ol", "li", "strong", "em", "h2", "h3", "h4", "h5", "h6", "table", "thead",
    "tbody", "tr", "th", "td", "blockquote", "pre", "code", "a",
}  # fmt: skip


def render_markdown(text: str) -> Markup:
    """Markdown written by members, rendered then sanitised: raw HTML is not interpreted, and an
    allow-list drops anything else (images, iframes, scripts, event handlers, javascript: links)."""
    # Members' level-1 titles would compete with the page's: shift them one level down.
    html = _markdown.render(text or "").replace("<h1>", "<h2>").replace("</h1>", "</h2>")
    clean = nh3.clean(
        html,
        tags=MARKDOWN_TAGS,
        attributes={"a": {"href", "title"}, "th": {"style"}, "td": {"style"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )
    return Markup(clean)  # nh3 output is sanitised HTML  # noqa: S704  # nosec B704


def _writable(session: Session, user: User, consortium: Consortium) -> Any:
    """The acting member, if the workspace is still open to writing. The mémoire and documents
    stay editable after submission (offer, negotiation): they are not the frozen composition."""
    member = acting_member(session, user, consortium)
    if consortium.status == Status.WITHDRAWN:
        raise Conflict("Ce groupement a été abandonné : son espace est en lecture seule.")
    return member


# --------------------------------------------------------------------------- discussion


def post_message(
    session: Session, consortium: Consortium, *, body: str, by: User, now: dt.datetime
) -> ConsortiumMessage:
    """A member, or a staff member of a member's chamber, posts in the discussion."""
    firm_id = None
    if by.is_staff or by.is_admin:
        if not (by.is_admin or by.chamber_slug in chambers_of(consortium)):
            raise NotFound("Ce groupement n'existe pas.")
    else:
        firm_id = _writable(session, by, consortium).firm_id
    text = clean_text(body, label="Message", field_name="body", max_length=MAX_MESSAGE)
    if not text:
        raise ValidationError("Écrivez un message.", field="body")
    message = ConsortiumMessage(
        consortium_id=consortium.id, author_id=by.id, firm_id=firm_id, body=text, created_at=now
    )
    session.add(message)
    consortium.updated_at = now
    session.flush()
    return message


def messages_of(session: Session, consortium: Consortium, *, limit: int = 200) -> list[ConsortiumMessage]:
    rows = session.scalars(
        select(ConsortiumMessage)
        .where(ConsortiumMessage.consortium_id == consortium.id)
        .order_by(ConsortiumMessage.created_at.desc(), ConsortiumMessage.id.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))


# --------------------------------------------------------------------------- documents


def upload_shared_document(
    session: Session,
    storage: Storage,
    consortium: Consortium,
    *,
    title: str | None,
    document_id: int | None,
    filename: str | None,
    data: bytes,
    max_bytes: int,
    by: User,
    now: dt.datetime,
) -> SharedDocumentVersion:
    """Add a document, or a new version of one (``document_id``). Same checks as firm uploads."""
    member = _writable(session, by, consortium)
    checked = inspect_upload(filename, data, max_bytes=max_bytes)
    if document_id is not None:
        document = session.get(SharedDocument, document_id)
        if document is None or document.consortium_id != consortium.id:
            raise NotFound("Ce document n'existe pas.")
    else:
        name = " ".join((title or "").split()) or checked.original_name
        if len(name) > 200:
            raise ValidationError("L'intitulé compte 200 caractères au plus.", field="title")
        document = SharedDocument(consortium_id=consortium.id, title=name, created_at=now)
        session.add(document)
    number = (document.versions[-1].number + 1) if document.versions else 1
    key = storage.save(data)
    try:
        version = SharedDocumentVersion(
            number=number,
            original_name=checked.original_name,
            storage_key=key,
            content_type=checked.content_type,
            size=checked.size,
            sha256=checked.sha256,
            uploaded_by_id=by.id,
            firm_id=member.firm_id,
            uploaded_at=now,
        )
        document.versions.append(version)
        session.flush()
        what = (
            f"la version {number} de « {document.title} »"
            if number > 1
            else f"le document « {document.title} »"
        )
        record_event(session, consortium, "document", f"{member.firm.name} dépose {what}.", by=by, now=now)
        session.flush()
    except BaseException:
        forget_stored(storage, key)
        raise
    return version


def documents_of(session: Session, consortium: Consortium) -> list[SharedDocument]:
    return list(
        session.scalars(
            select(SharedDocument)
            .where(SharedDocument.consortium_id == consortium.id)
            .order_by(SharedDocument.created_at.desc(), SharedDocument.id.desc())
        )
    )


def document_version(session: Session, consortium: Consortium, version_id: int) -> SharedDocumentVersion:
    version = session.get(SharedDocumentVersion, version_id)
    if version is None or version.document.consortium_id != consortium.id:
        raise NotFound("Ce document n'existe pas.")
    return version


# --------------------------------------------------------------------------- mémoire technique


def _section(consortium: Consortium, section_id: int) -> MemoireSection:
    section = next((s for s in consortium.sections if s.id == section_id), None)
    if section is None:
        raise NotFound("Cette section n'existe pas.")
    return section


def _assignee(consortium: Consortium, firm_id: int | None) -> int | None:
    if firm_id is None:
        return None
    if active_member(consortium, firm_id) is None:
        raise ValidationError("Confiez la section à un membre actif du groupement.", field="assignee_firm_id")
    return firm_id


def add_section(
    session: Session,
    consortium: Consortium,
    *,
    title: str,
    assignee_firm_id: int | None,
    by: User,
    now: dt.datetime,
) -> MemoireSection:
    """Add a section at the end of the mémoire."""
    member = _writable(session, by, consortium)
    clean = " ".join((title or "").split())
    if not clean or len(clean) > 200:
        raise ValidationError("Donnez un titre de 200 caractères au plus.", field="title")
    section = MemoireSection(
        consortium_id=consortium.id,
        title=clean,
        position=max((s.position for s in consortium.sections), default=-1) + 1,
        assignee_firm_id=_assignee(consortium, assignee_firm_id),
        status=SectionStatus.TODO.value,
        body="",
        updated_at=now,
        updated_by_id=by.id,
    )
    consortium.sections.append(section)
    session.flush()
    record_event(
        session,
        consortium,
        "section",
        f"{member.firm.name} ajoute la section « {clean} » au mémoire.",
        by=by,
        now=now,
    )
    refresh_status(session, consortium, by=by, now=now)
    session.flush()
    return section


def save_section(
    session: Session,
    consortium: Consortium,
    section_id: int,
    *,
    version: int,
    title: str,
    body: str,
    status: str,
    assignee_firm_id: int | None,
    by: User,
    now: dt.datetime,
) -> MemoireSection:
    """Save a section. If another member saved it since ``version`` was loaded, nothing is
    written and :class:`EditConflict` carries the saved text, so the member can merge."""
    member = _writable(session, by, consortium)
    section = _section(consortium, section_id)
    if version != section.version:
        who = section.updated_by.full_name if section.updated_by else "un autre membre"
        raise EditConflict(
            f"{who} a enregistré cette section pendant que vous la modifiiez. Rien n'a été écrasé : "
            "comparez avec la version enregistrée ci-dessous, puis enregistrez de nouveau.",
            current={
                "version": section.version,
                "title": section.title,
                "body": section.body,
                "status": section.status,
            },
        )
    clean_title = " ".join((title or "").split())
    if not clean_title or len(clean_title) > 200:
        raise ValidationError("Donnez un titre de 200 caractères au plus.", field="title")
    if len(body or "") > MAX_BODY:
        raise ValidationError(
            f"Une section compte {MAX_BODY:,} caractères au plus.".replace(",", " "), field="body"
        )
    if status not in set(SectionStatus):
        raise ValidationError("Choisissez l'état de la section.", field="status")
    before = section.status
    section.title = clean_title
    section.body = body or ""
    section.status = status
    section.assignee_firm_id = _assignee(consortium, assignee_firm_id)
    section.updated_at = now  # the row changes, so its version goes up (version_id_col)
    section.updated_by_id = by.id
    text = f"{member.firm.name} met à jour la section « {clean_title} »"
    if before != status:
        text += f" ({SectionStatus(status).label.lower()})"
    record_event(session, consortium, "section", text + ".", by=by, now=now, section=section.id)
    flush_or_conflict(session, "Un autre membre vient d'enregistrer cette section.")
    refresh_status(session, consortium, by=by, now=now)
    session.flush()
    return section


def delete_section(
    session: Session, consortium: Consortium, section_id: int, *, by: User, now: dt.datetime
) -> None:
    member = _writable(session, by, consortium)
    section = _section(consortium, section_id)
    consortium.sections.remove(section)
    record_event(
        session,
        consortium,
        "section",
        f"{member.firm.name} supprime la section « {section.title} ».",
        by=by,
        now=now,
    )
    session.flush()
    refresh_status(session, consortium, by=by, now=now)
    session.flush()


def move_section(session: Session, consortium: Consortium, section_id: int, *, up: bool, by: User) -> None:
    _writable(session, by, consortium)
    sections = sorted(consortium.sections, key=lambda s: s.position)
    index = next((i for i, s in enumerate(sections) if s.id == section_id), None)
    if index is None:
        raise NotFound("Cette section n'existe pas.")
    other = index - 1 if up else index + 1
    if 0 <= other < len(sections):
        sections[index], sections[other] = sections[other], sections[index]
    for position, section in enumerate(sections):
        section.position = position
    session.flush()


# --------------------------------------------------------------------------- checklist


def add_checklist_item(
    session: Session,
    consortium: Consortium,
    *,
    title: str,
    days_before: int | None,
    due: dt.date | None,
    assignee_firm_id: int | None,
    by: User,
) -> ChecklistItem:
    """A step with a due date counted back from the deadline, or a fixed date."""
    _writable(session, by, consortium)
    clean = " ".join((title or "").split())
    if not clean or len(clean) > 200:
        raise ValidationError("Donnez un intitulé de 200 caractères au plus.", field="title")
    if days_before is not None and not 0 <= days_before <= 365:
        raise ValidationError("Indiquez un nombre de jours entre 0 et 365.", field="days_before")
    if days_before is not None and due is not None:
        raise ValidationError(
            "Choisissez soit un nombre de jours avant la date limite, soit une date.", field="due_on"
        )
    item = ChecklistItem(
        consortium_id=consortium.id,
        title=clean,
        days_before=days_before,
        due_on=due,
        assignee_firm_id=_assignee(consortium, assignee_firm_id),
        position=max((i.position for i in consortium.checklist), default=-1) + 1,
    )
    consortium.checklist.append(item)
    session.flush()
    return item


def toggle_checklist_item(
    session: Session, consortium: Consortium, item_id: int, *, by: User, now: dt.datetime
) -> ChecklistItem:
    member = _writable(session, by, consortium)
    item = next((i for i in consortium.checklist if i.id == item_id), None)
    if item is None:
        raise NotFound("Cette étape n'existe pas.")
    if item.done_at is None:
        item.done_at, item.done_by_id = now, by.id
        record_event(
            session, consortium, "checklist", f"{member.firm.name} coche « {item.title} ».", by=by, now=now
        )
    else:
        item.done_at = item.done_by_id = None
    session.flush()
    return item


def checklist_rows(consortium: Consortium, *, today: dt.date) -> list[dict[str, Any]]:
    """The checklist with computed due dates, in date order, flagged late or due soon."""
    deadline = consortium.notice.deadline_at
    rows = []
    for item in consortium.checklist:
        due = due_on(item, deadline)
        rows.append(
            {
                "item": item,
                "due": due,
                "late": item.done_at is None and due is not None and due < today,
                "soon": item.done_at is None
                and due is not None
                and today <= due <= today + dt.timedelta(days=3),
            }
        )
    return sorted(rows, key=lambda r: (r["due"] is None, r["due"] or dt.date.max, r["item"].position))


def announce_moved_deadlines(session: Session, *, now: dt.datetime) -> int:
    """When a corrigendum moves a notice deadline, the checklist moves with it (due dates are
    computed); this records it once in each live consortium's journal, so members are told in
    their digest. Run by the scheduler; idempotent."""
    moved = 0
    live = [Status.FORMING.value, Status.ASSEMBLING.value, Status.READY.value]
    for consortium in session.scalars(select(Consortium).where(Consortium.status.in_(live))):
        deadline = consortium.notice.deadline_at
        changed = False
        for item in consortium.checklist:
            due = due_on(item, deadline)
            if item.days_before is None:
                continue
            if item.notified_due_on is not None and item.notified_due_on != due:
                changed = True
            item.notified_due_on = due
        if changed:
            record_event(
                session,
                consortium,
                "deadline_moved",
                f"La date limite de l'avis a changé ({deadline_text(consortium)}) : les échéances de la "
                "checklist ont été décalées.",
                by=None,
                now=now,
            )
            moved += 1
    session.flush()
    return moved


def may_write(session: Session, user: User, consortium: Consortium) -> bool:
    return active_member(consortium, firm_id_of(session, user)) is not None
