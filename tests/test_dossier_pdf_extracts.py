"""tenderpool.pdf writes parts of one rendering as PDFs of their own (the separate DC1 and DC2)."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from pypdf import PdfReader

from tenderpool import pdf

DOCUMENT = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>Le tout</title>
<meta name="author" content="Groupement Essai"></head>
<body>
<h1 id="debut">Couverture</h1>
<section id="a" style="break-before: page"><p>PARTIE-A page 1</p>
  <p style="break-before: page">PARTIE-A page 2</p></section>
<section id="b" style="break-before: page"><p>PARTIE-B page 1</p></section>
<section id="c" style="break-before: page"><p>PARTIE-C page 1</p>
  <p style="break-before: page">PARTIE-C page 2</p><p style="break-before: page">PARTIE-C page 3</p></section>
</body></html>"""


def texts(data: bytes) -> list[str]:
    return [page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages]


def test_extracts_are_the_pages_between_their_anchors_with_their_own_title() -> None:
    extracts = [
        pdf.Extract(key="a", start="a", stop="b", title="Partie A"),
        pdf.Extract(key="b", start="b", stop="c", title="Partie B"),
        pdf.Extract(key="c", start="c", stop=None, title="Partie C"),
    ]
    rendered = pdf.Renderer().render(DOCUMENT, extracts=extracts)
    assert rendered.page_count == 7
    whole = texts(rendered.data)
    assert rendered.anchors["a"] == 1 and rendered.anchors["b"] == 3 and rendered.anchors["c"] == 4
    expected = {"a": (1, 3), "b": (3, 4), "c": (4, 7)}
    assert set(rendered.extracts) == set(expected)
    for key, (first, stop) in expected.items():
        part = rendered.extracts[key]
        reader = PdfReader(io.BytesIO(part.data))
        assert part.page_count == len(reader.pages) == stop - first
        # The very pages of the document, nothing before or after them.
        assert texts(part.data) == whole[first:stop]
        others = {"a", "b", "c"} - {key}
        assert not any(re.search(f"PARTIE-{o.upper()} ", "\n".join(texts(part.data))) for o in others)
        meta = reader.metadata
        assert meta is not None
        assert meta.title == f"Partie {key.upper()}"
        assert meta.author == "Groupement Essai"  # the other metadata are the document's
        root: Any = reader.trailer["/Root"]
        assert root["/Lang"] == "fr"
    # The whole document keeps its own title.
    meta = PdfReader(io.BytesIO(rendered.data)).metadata
    assert meta is not None and meta.title == "Le tout"


def test_extracts_follow_the_pdf_variant() -> None:
    rendered = pdf.Renderer().render(
        DOCUMENT, pdf_variant="pdf/a-3b", extracts=[pdf.Extract(key="b", start="b", stop="c", title="B")]
    )
    root: Any = PdfReader(io.BytesIO(rendered.extracts["b"].data)).trailer["/Root"]
    xmp = root["/Metadata"].get_object().get_data().decode()
    assert re.search(r"pdfaid:part(=\"|>)3", xmp), xmp
    assert "/OutputIntents" in root


@pytest.mark.parametrize(
    ("start", "stop", "message"),
    [("nulle-part", None, "nulle-part"), ("a", "absente", "absente"), ("c", "a", "not on a later page")],
)
def test_an_extract_without_its_pages_is_an_error(start: str, stop: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pdf.Renderer().render(DOCUMENT, extracts=[pdf.Extract(key="x", start=start, stop=stop, title="X")])
