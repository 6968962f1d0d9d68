"""The public read-only JSON API (/api/v1) and the personal calendar feeds."""
