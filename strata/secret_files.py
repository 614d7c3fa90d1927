"""Secrets strata generates for itself and keeps in its data dir, readable by the owner only
(the engine's internal token, the guard's deployment secret)."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

logger = logging.getLogger(__name__)


def read_or_create_secret(path: Path) -> str:
    """The secret in `path`, or a new random one written there with mode 0600."""
    if path.is_file():
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            _warn_if_readable_by_others(path)
            return existing
    secret = secrets.token_urlsafe(32)
    _write_private(path, secret + "\n")
    return secret


def _warn_if_readable_by_others(path: Path) -> None:
    if path.stat().st_mode & 0o077:
        logger.warning("%s is readable by other users; run: chmod 600 %s", path, path)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)  # O_CREAT's mode does not apply to a file that already existed
