"""TenderPool: joint responses to public tenders for the firms of CCI Seine-et-Marne and CCI Essonne."""

from __future__ import annotations

from typing import Any

from flask import Flask

__all__ = ["create_app"]


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the web app. Reads settings, wires extensions and blueprints; starts nothing.

    ``overrides`` (tests) has the layout of ``config/default.toml``.
    """
    from tenderpool.app import build_app

    return build_app(overrides)
