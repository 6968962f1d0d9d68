"""tenderpool.pdf loads nothing but the app's static assets: no local file, no network call."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pypdf import PdfReader
from pytest_httpserver import HTTPServer

from tenderpool import pdf
from tenderpool.dossiers.services import render_markdown
from tenderpool.resources import STATIC_DIR

PASSWD = Path("/etc/passwd")


def hostile(base: str, secret: Path) -> str:
    return f"""
# Section piégée

Texte normal avant.

<img src="file:///etc/passwd">
<img src="file://{secret}">
<img src="{base}/image.png">
![image]({base}/markdown.png)
![local](file://{secret})
<iframe src="{base}/frame"></iframe>
<iframe src="file://{secret}"></iframe>
<object data="file://{secret}"></object>
<embed src="file://{secret}">
<link rel="stylesheet" href="{base}/style.css">
<link rel="attachment" href="file://{secret}">
<style>@import url("{base}/import.css"); body {{ background: url("{base}/bg.png") }}</style>
<div style="background-image: url('{base}/inline.png')">bloc</div>
<a href="file://{secret}">lien</a>

Texte normal après.
"""


def text_of(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    parts = [page.extract_text() or "" for page in reader.pages]
    # Attachments WeasyPrint would have embedded (rel=attachment) must not be there either.
    parts.append(str(reader.trailer["/Root"].get("/Names", "")))
    return "\n".join(parts)


def test_markdown_memoire_leaks_nothing_and_calls_nothing(httpserver: HTTPServer, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-NE-PAS-DIVULGUER")
    base = httpserver.url_for("").rstrip("/")
    html = render_markdown(hostile(base, secret))
    # Sanitising already removes every fetching element...
    for tag in ("<img", "<iframe", "<object", "<embed", "<link", "<style", "style="):
        assert tag not in html
    assert '="file:' not in html  # a refused link may stay as plain text, never as an attribute
    document = (
        '<html lang="fr"><head><title>t</title></head>'
        f'<body><div class="memoire-body">{html}</div></body></html>'
    )
    rendered = pdf.Renderer().render(document)
    text = text_of(rendered.data)
    assert "Texte normal avant." in text and "Texte normal après." in text
    assert "SECRET-NE-PAS-DIVULGUER" not in text
    assert "root:" not in text
    assert httpserver.log == []


def test_fetcher_refuses_everything_but_static_assets_even_unsanitised(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """The renderer itself is locked down: raw hostile HTML (no sanitiser) still fetches nothing."""
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-NE-PAS-DIVULGUER")
    base = httpserver.url_for("").rstrip("/")
    escape = STATIC_DIR.as_uri() + "/../../../../../../../etc/passwd"
    document = (
        '<html lang="fr"><head><title>t</title><link rel="stylesheet" href="pdf/print.css">'
        f'<link rel="stylesheet" href="{base}/evil.css"></head><body>'
        f'<p>Avant</p><img src="{escape}"><img src="data:image/svg+xml,<svg xmlns=%22http://www.w3.org/2000/svg%22>'
        f'<image href=%22file://{secret}%22/></svg>">' + hostile(base, secret) + "<p>Après</p></body></html>"
    )
    rendered = pdf.Renderer().render(document)
    text = text_of(rendered.data)
    assert "Avant" in text and "Après" in text
    assert "SECRET-NE-PAS-DIVULGUER" not in text
    assert "root:" not in text
    assert httpserver.log == []
    refused = " ".join(rendered.refused_urls)
    assert "/etc/passwd" in refused
    assert str(secret) in refused
    assert base in refused
    assert "data:" in refused
    # The print stylesheet, a static asset, was allowed.
    assert not any(url.endswith("pdf/print.css") for url in rendered.refused_urls)


def test_fetcher_serves_static_files_only() -> None:
    fetcher = pdf.StaticOnlyFetcher()
    response: Any = fetcher.fetch((STATIC_DIR / "pdf" / "print.css").as_uri())
    assert b"@page" in response.read()
    for url in (
        PASSWD.as_uri(),
        STATIC_DIR.as_uri() + "/../dossiers/services.py",
        "http://127.0.0.1:9/x.css",
        "https://example.org/x.png",
        "ftp://example.org/x",
        "data:text/plain,bonjour",
        "file://remote-host" + str(STATIC_DIR / "pdf" / "print.css"),
        STATIC_DIR.as_uri() + "/pdf",  # a folder
    ):
        try:
            fetcher.fetch(url)
        except pdf.RefusedURL:
            continue
        raise AssertionError(f"{url} was fetched")
