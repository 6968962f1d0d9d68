"""HTML to PDF with WeasyPrint: the only module that imports it.

Print templates live in ``templates/pdf/`` and receive plain dicts (never ORM objects); the
print stylesheet and anything else a template may load lives in ``tenderpool/static/pdf/``.

Part of what is printed was typed by users (the mémoire technique, firm names…). Even once
sanitised, it must not be able to make the renderer read a local file or call the network,
so every URL WeasyPrint wants to load goes through :class:`StaticOnlyFetcher`: only regular
files inside ``tenderpool/static`` are served, everything else (``file:`` elsewhere, ``http:``,
``https:``, ``data:``, ``ftp:``…) is refused and the resource is simply left out of the page.

Fonts come from the system through fontconfig (Debian ``fonts-dejavu-core``), not through the
fetcher: the stylesheet names the family, nothing is downloaded.
"""

from __future__ import annotations

import copy
import logging
import mimetypes
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import jinja2
import weasyprint
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher, URLFetcherResponse

from tenderpool import formatting
from tenderpool.resources import STATIC_DIR, resource_dir

log = logging.getLogger(__name__)

PDF_VARIANTS = ("pdf/a-3b",)
STATIC_ROOT = STATIC_DIR.resolve()
# Relative URLs in print templates ("pdf/print.css") resolve against the static folder.
BASE_URL = STATIC_ROOT.as_uri() + "/"
# A static asset larger than this is not something a print template needs.
MAX_ASSET_BYTES = 5 * 1024 * 1024


class RefusedURL(ValueError):
    """WeasyPrint asked for a URL outside the app's static assets; it is left out of the PDF."""


class StaticOnlyFetcher(URLFetcher):  # type: ignore[misc]  # WeasyPrint ships no type information
    """Serve only regular files under ``tenderpool/static``; refuse every other URL.

    Refused URLs are recorded in ``refused`` (tests and logs read them). The parent class is
    kept for the attributes WeasyPrint reads (``_fail_on_errors``) but none of its network or
    file handlers is ever reached: ``fetch`` never calls ``super()``.
    """

    def __init__(self) -> None:
        super().__init__(allowed_protocols=("file",), allow_redirects=False, fail_on_errors=False)
        self.refused: list[str] = []

    def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> URLFetcherResponse:
        path = self._static_path(url)
        if path is None:
            self.refused.append(url[:200])
            log.info("pdf: refused to fetch %s", url[:200])
            raise RefusedURL(f"resource outside the app's static assets: {url[:200]}")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(
            path.as_uri(), body=path.read_bytes(), headers={"Content-Type": content_type}
        )

    @staticmethod
    def _static_path(url: str) -> Path | None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
            return None
        try:
            # resolve() follows symlinks and "..": what counts is where the bytes really are.
            path = Path(unquote(parts.path)).resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            return None
        if STATIC_ROOT not in path.parents or not path.is_file():
            return None
        if path.stat().st_size > MAX_ASSET_BYTES:
            return None
        return path


@cache
def template_environment() -> jinja2.Environment:
    """The Jinja environment of print templates: usable without Flask (scheduler, CLI)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        date_fr=formatting.date_fr,
        datetime_fr=formatting.datetime_fr,
        money_fr=formatting.money_fr,
        number_fr=formatting.number_fr,
    )
    return env


_MARKUP = re.compile(r"(<[^>]*>)")
_BEFORE_PUNCTUATION = re.compile(r"[ \u00a0]([:;!?»])")
_AFTER_GUILLEMET = re.compile(r"«[ \u00a0]")


def french_spacing(html: str) -> str:
    """French typography on the text between tags: a narrow no-break space before « : ; ! ? »
    and inside guillemets, so that no line starts with a colon or a closing guillemet."""
    parts = _MARKUP.split(html)
    for index in range(0, len(parts), 2):  # even items are text, odd ones are tags
        text = _BEFORE_PUNCTUATION.sub("\u202f\\1", parts[index])
        parts[index] = _AFTER_GUILLEMET.sub("«\u202f", text)
    return "".join(parts)


def render_html(template: str, context: Mapping[str, Any]) -> str:
    """Render a print template with a plain-dict context, with French spacing."""
    return french_spacing(template_environment().get_template(template).render(**context))


@dataclass(frozen=True)
class Extract:
    """Some consecutive pages of a rendered document, to be written as a PDF of their own.

    The pages run from the one holding the HTML id ``start`` up to, not including, the one
    holding ``stop`` (to the last page when ``stop`` is None): each part should begin on a new
    page (``break-before: page``). The extract is drawn from the document's layout, so it is the
    very same pages, running header and footer included; its PDF title is ``title``, its other
    metadata (author, subject, language) and its PDF variant are the document's.
    """

    key: str
    start: str
    stop: str | None
    title: str


@dataclass
class RenderedPdf:
    data: bytes
    page_count: int
    # Anchor (HTML id) → index of the first page it is on, from 0.
    anchors: dict[str, int] = field(default_factory=dict)
    refused_urls: list[str] = field(default_factory=list)
    # Extract key → that extract as a PDF of its own (see Extract).
    extracts: dict[str, RenderedPdf] = field(default_factory=dict)


class Renderer:
    """Renders several documents with one font configuration (fonts are loaded once)."""

    def __init__(self) -> None:
        self.font_config = FontConfiguration()

    def render(
        self,
        html: str,
        *,
        pdf_variant: str | None = None,
        anchors: bool = False,
        extracts: Sequence[Extract] = (),
    ) -> RenderedPdf:
        """``html`` to PDF bytes. Title, author, subject (meta description) and language come
        from the document's ``<title>``, ``<meta>`` and ``<html lang>``.

        Each of ``extracts`` is also written as a PDF of its own from the same layout: laying
        the pages out is most of the work, drawing them again is cheap.
        """
        if pdf_variant is not None and pdf_variant not in PDF_VARIANTS:
            raise ValueError(f"unsupported PDF variant {pdf_variant!r}")
        fetcher = StaticOnlyFetcher()
        document = weasyprint.HTML(string=html, base_url=BASE_URL, url_fetcher=fetcher).render(
            font_config=self.font_config
        )
        found: dict[str, int] = {}
        if anchors or extracts:
            for index, page in enumerate(document.pages):
                for name in page.anchors:
                    found.setdefault(name, index)
        parts: dict[str, RenderedPdf] = {}
        for extract in extracts:
            first, stop = self._page_range(extract, found, len(document.pages))
            part = document.copy(document.pages[first:stop])
            part.metadata = copy.copy(document.metadata)
            part.metadata.title = extract.title
            parts[extract.key] = RenderedPdf(data=_write(part, pdf_variant), page_count=stop - first)
        return RenderedPdf(
            data=_write(document, pdf_variant),
            page_count=len(document.pages),
            anchors=found,
            refused_urls=fetcher.refused,
            extracts=parts,
        )

    @staticmethod
    def _page_range(extract: Extract, found: Mapping[str, int], pages: int) -> tuple[int, int]:
        missing = [a for a in (extract.start, extract.stop) if a is not None and a not in found]
        if missing:
            raise ValueError(f"extract {extract.key!r}: no element with id {missing[0]!r}")
        first = found[extract.start]
        stop = pages if extract.stop is None else found[extract.stop]
        if stop <= first:
            raise ValueError(f"extract {extract.key!r}: {extract.stop!r} is not on a later page")
        return first, stop


def _write(document: Any, pdf_variant: str | None) -> bytes:
    with warnings.catch_warnings():
        # WeasyPrint opens its sRGB profile for PDF/A and never closes it (the file is read
        # whole, then dropped): a harmless ResourceWarning, not ours to report.
        warnings.simplefilter("ignore", ResourceWarning)
        return bytes(document.write_pdf(pdf_variant=pdf_variant))


def render_template_pdf(
    template: str, context: Mapping[str, Any], *, pdf_variant: str | None = None
) -> RenderedPdf:
    """Render a print template straight to PDF."""
    return Renderer().render(render_html(template, context), pdf_variant=pdf_variant)
