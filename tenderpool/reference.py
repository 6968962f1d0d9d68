"""Reference code lists shipped in ``tenderpool/data`` (sources in its SOURCES.md).

CPV 2008, NUTS, départements.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True, slots=True)
class Cpv:
    code8: str  # "45210000"
    code: str  # "45210000-2"
    level: int  # 1 division … 4 catégorie, 5+ finer
    label_fr: str
    label_en: str
    parent: str | None

    @property
    def division(self) -> str:
        return self.code8[:2]


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA_DIR / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@cache
def cpv_codes() -> dict[str, Cpv]:
    """Every CPV 2008 code, keyed by its 8 digits."""
    return {
        row["code8"]: Cpv(
            code8=row["code8"],
            code=row["code"],
            level=int(row["level"]),
            label_fr=row["label_fr"],
            label_en=row["label_en"],
            parent=row["parent_code8"] or None,
        )
        for row in _rows("cpv_2008.csv")
    }


def cpv_prefix(code8: str) -> str:
    """The significant digits of a CPV code, for hierarchical matching: 45000000 → "45", 45210000 → "4521"."""
    stripped = code8.rstrip("0")
    return stripped if len(stripped) >= 2 else code8[:2]


def cpv_label(code8: str) -> str | None:
    cpv = cpv_codes().get(code8)
    return cpv.label_fr if cpv else None


@cache
def nuts_labels() -> dict[str, str]:
    return {row["code"]: row["label_fr"] for row in _rows("nuts_fr.csv")}


@cache
def departments() -> dict[str, str]:
    """Département code → name ("77" → "Seine-et-Marne")."""
    return {row["code"]: row["nom"] for row in _rows("departements.csv")}


# NUTS-3 of metropolitan France → département: the eForms NUTS 2021 codes follow the
# départements in INSEE order within each region, so the mapping is written out for
# the codes TenderPool meets most (Île-de-France) and derived for none else.
NUTS_TO_DEPARTMENT = {
    "FR101": "75", "FR102": "77", "FR103": "78", "FR104": "91",
    "FR105": "92", "FR106": "93", "FR107": "94", "FR108": "95",
}  # fmt: skip
