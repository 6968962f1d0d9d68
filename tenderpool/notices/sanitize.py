"""Sanitising HTML that comes from sources or users: a short allow-list, no scripts, no event handlers."""

from __future__ import annotations

import html
import re

import nh3

_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")
# What browsers ignore in a URL's scheme ("java\tscript:", " javascript:"): removed before looking at it.
_URL_IGNORED = re.compile(r"[\x00-\x20\x7f]")

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


def safe_url(url: str | None) -> str | None:
    """``url`` when it is an http(s) address, else None.

    Links from sources and staff end up in ``href``: a ``javascript:`` (or ``data:``…) address there
    would run when clicked, even one that passes a plain URL check, like
    ``javascript://example.com/%0aalert(1)``.
    """
    if not url:
        return None
    url = url.strip()
    scheme = _URL_IGNORED.sub("", url).split(":", 1)[0].lower()
    return url if scheme in ("http", "https") and ":" in url else None
