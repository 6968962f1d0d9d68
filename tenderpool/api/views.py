"""Public JSON API and calendar feeds (blueprints registered by tenderpool.app)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")
feeds = Blueprint("feeds", __name__)
