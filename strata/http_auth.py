"""The one parser of `Authorization: Bearer <credential>` headers (engine server and gateway)."""

from __future__ import annotations


def bearer_credential(header: str | None) -> str | None:
    """The credential of a `Bearer` authorization header; None when absent or another scheme."""
    if not header:
        return None
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip() or None
