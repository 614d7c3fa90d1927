"""The hidden-character check the gateway keeps when the guard is switched off
(`guard.enabled: false`): bidirectional overrides, Unicode tag characters and control
characters are still refused with a 400 naming the field. The rule itself is the guard's
(`strata.guard.sanitize.refuse_hidden`), so both paths refuse exactly the same text.
"""

from __future__ import annotations

from collections.abc import Iterable

from strata.guard.sanitize import refuse_hidden


def check_texts(texts: Iterable[tuple[str, str]]) -> None:
    """Raise `InvalidRequestError` for the first (field path, text) holding a refused character."""
    for path, text in texts:
        refuse_hidden(path, text)
