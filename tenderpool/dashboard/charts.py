"""Bar charts of the dashboard, written as SVG on the server: no JavaScript, no library, no CDN.

Each chart is a horizontal grouped bar chart: one block per category (an indicator, a funnel
stage, a CPV division), one bar per column of the dashboard (each chamber, then all of them).
Every bar carries its value as text and its series name on the left, so nothing depends on
colour; the ``<svg>`` has ``role="img"``, a ``<title>`` and a ``<desc>`` that spells out every
number, and each bar a ``<title>`` (a tooltip). The same numbers are in the page's table.

Only presentation attributes are used (the Content-Security-Policy refuses inline styles).
The output is well-formed XML: every text goes through ``escape``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup, escape

from tenderpool.dashboard.services import ALL, SECTIONS, Dashboard, Row, rows
from tenderpool.formatting import money_fr, number_fr

PALETTE = ("#17456b", "#b8501a", "#1e6b35", "#6b3fa0", "#7a5c00")
ALL_COLOUR = "#4f5869"
INK = "#1d2433"

WIDTH = 440  # viewBox units; the page shows the chart at most 34rem wide and shrinks it on phones
LABEL_WIDTH = 76  # the series names, left of the bars
VALUE_WIDTH = 120  # the value after the longest bar
BAR_HEIGHT = 16
ROW_HEIGHT = 22
FONT_SIZE = 14
MAX_CATEGORY_CHARS = 52  # a longer label is shortened on the chart (in full in its <title>)


def format_value(value: int | Decimal | None, kind: str) -> str:
    """A figure as the table and the charts show it (French)."""
    if kind == "amount":
        return money_fr(value if value is not None else Decimal(0))
    if kind == "average":
        return number_fr(value, 1)
    return number_fr(value)


@dataclass(frozen=True)
class Series:
    label: str  # in full, for the titles and the description
    short_label: str  # on the chart
    colour: str


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    svg: Markup


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_CATEGORY_CHARS else text[: MAX_CATEGORY_CHARS - 1].rstrip() + "…"


def bar_chart(chart_id: str, title: str, series: Sequence[Series], chart_rows: Sequence[Row]) -> Markup:
    """One block per row (headed by its label), one bar per series; the rows share one scale."""
    numbers = [float(v or 0) for row in chart_rows for v in row.values]
    top = max(numbers, default=0.0) or 1.0
    bar_max = WIDTH - LABEL_WIDTH - 6 - VALUE_WIDTH
    parts: list[str] = []
    summary: list[str] = []
    y = 0
    for row in chart_rows:
        if len(chart_rows) > 1:  # a chart of one row is titled by it already
            y += 20
            parts.append(
                f'<text x="0" y="{y}" font-weight="600" fill="{INK}">{escape(_shorten(row.label))}</text>'
            )
        y += 8
        said = []
        for s, value in zip(series, row.values, strict=True):
            shown = format_value(value, row.kind)
            said.append(f"{s.label} {shown}")
            width = bar_max * float(value or 0) / top
            baseline = y + BAR_HEIGHT - 3
            parts.append(
                f"<g><title>{escape(f'{s.label} — {row.label} : {shown}')}</title>"
                f'<text x="{LABEL_WIDTH - 6}" y="{baseline}" text-anchor="end" fill="{INK}">'
                f"{escape(s.short_label)}</text>"
                f'<rect x="{LABEL_WIDTH}" y="{y}" width="{_num(width)}" height="{BAR_HEIGHT}" '
                f'fill="{s.colour}"/>'
                f'<text x="{_num(LABEL_WIDTH + width + 6)}" y="{baseline}" fill="{INK}">'
                f"{escape(shown)}</text>"
                "</g>"
            )
            y += ROW_HEIGHT
        summary.append(f"{row.label} : {', '.join(said)}.")
        y += 6
    height = y + 4
    return Markup(  # every text above is escaped  # noqa: S704  # nosec B704
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'role="img" aria-labelledby="{chart_id}-titre {chart_id}-desc" '
        f'font-family="system-ui, sans-serif" font-size="{FONT_SIZE}">'
        f'<title id="{chart_id}-titre">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(" ".join(summary))}</desc>' + "".join(parts) + "</svg>"
    )


def series_of(board: Dashboard) -> list[Series]:
    colours = iter(PALETTE * 4)
    return [
        Series(c.label, c.short_label, ALL_COLOUR if c.key == ALL else next(colours)) for c in board.columns
    ]


def dashboard_charts(board: Dashboard) -> list[Chart]:
    """The page's charts, drawn from the same rows as the table."""
    series = series_of(board)
    table = rows(board)
    activity = [r for r in table if r.section == SECTIONS[0]]
    specs = [
        ("activite", "Activité de la période", [r for r in activity if r.kind == "count"]),
        ("montants", "Montant remporté (€ HT)", [r for r in activity if r.kind == "amount"]),
        (
            "membres",
            "Nombre moyen de membres actifs par groupement",
            [r for r in activity if r.kind == "average"],
        ),
        ("entonnoir", "Entonnoir des groupements constitués", [r for r in table if r.section == SECTIONS[1]]),
        (
            "cpv",
            "Principales divisions CPV des groupements constitués",
            [r for r in table if r.section == SECTIONS[2]],
        ),
        ("collecte", "Avis collectés par source", [r for r in table if r.section == SECTIONS[3]]),
    ]
    return [
        Chart(cid, title, bar_chart(cid, title, series, selected))
        for cid, title, selected in specs
        if selected
    ]
