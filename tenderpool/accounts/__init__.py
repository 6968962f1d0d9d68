"""Users, roles, login, password reset and the audit log."""
