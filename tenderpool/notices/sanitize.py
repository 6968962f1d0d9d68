"""Sanitising HTML that comes from sources or users: a short allow-list, no scripts, no event handlers."""

from __future__ import annotations

import html
import re

import nh3

_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")

ALLOWED_TAGS = {
    "p", "br", "ul", "ol", "li", "strong", "b", "em", "i", "u", "h3", "h4", "h5", "table", "thead", "tbody",
    "tr", "th", "td", "blockquote", "pre", "code", "a", "span", "div", "sup", "sub",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}}


def sanitize_html(text: str) -> str:
    """Keep harmless formatting; drop scripts, styles, event handlers and javascript: links.

    Plain text (most BOAMP descriptions) is escaped and its paragraphs kept.
    """
    if not _TAG.search(text):
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
        return "".join("<p>" + html.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs)
    return str(
        nh3.clean(
            text,
            tags=ALLOWED_TAGS,
            attributes=ALLOWED_ATTRIBUTES,
            url_schemes={"http", "https", "mailto"},
            link_rel="noopener noreferrer nofollow",
        )
    )
