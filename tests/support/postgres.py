"""Embedded PostgreSQL fixtures (filled in by the store work)."""
