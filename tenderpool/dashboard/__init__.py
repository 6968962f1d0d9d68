"""The chambers' dashboard: what pooling achieves, per chamber and for all chambers together.

Read-only: it reads the notices, firms, accounts and consortia tables and writes nothing.
The definitions of every figure are in ``services.py`` and ``docs/dashboard.md``.
"""
