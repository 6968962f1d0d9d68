"""Adapters that fetch and parse public procurement notices.

This package never imports :mod:`tenderpool`: it returns plain typed records
(:mod:`scrapers.base`) that the notices domain stores.
"""
