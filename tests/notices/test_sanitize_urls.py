"""Links from sources and staff end up in href: only http(s) addresses are kept."""

from __future__ import annotations

import pytest

from tenderpool.notices.sanitize import safe_url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        " JavaScript:alert(1)",
        "java\tscript:alert(1)",
        "javascript://example.com/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.example/x",
        "www.example.org",
        "",
        None,
    ],
)
def test_unsafe_or_relative_links_are_dropped(url: str | None) -> None:
    assert safe_url(url) is None


def test_http_links_are_kept_trimmed() -> None:
    assert safe_url(" https://www.boamp.fr/pages/avis/?q=idweb:26-7113 ") == (
        "https://www.boamp.fr/pages/avis/?q=idweb:26-7113"
    )
    assert safe_url("HTTP://marches.example/dce") == "HTTP://marches.example/dce"
