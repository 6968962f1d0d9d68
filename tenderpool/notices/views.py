"""Notice pages: browse and search, the notice page, following, staff curation."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("notices", __name__)
