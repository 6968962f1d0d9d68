"""Fixtures of the security suite, and the order of the marked groups.

``faults`` tests (tests/test_faults.py) restart the PostgreSQL cluster, stop the SMTP server or
fill the disk: they are moved to the very end of the run, after everything else (browser
journeys included), so that a restart never lands in the middle of another test.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    faults = [item for item in items if item.get_closest_marker("faults") is not None]
    if faults:
        others = [item for item in items if item.get_closest_marker("faults") is None]
        items[:] = others + faults


def files_under(folder: Path) -> set[Path]:
    """Every file below ``folder`` (hidden temporary files included)."""
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()
