"""Procurement notices: publications from every source, linked into one notice per procedure."""
