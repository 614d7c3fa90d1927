"""The gateway's interim guard step: refuse text that hides instructions from human readers.

Bidirectional overrides (used to show reviewers one text while the model reads another), Unicode
tag characters (invisible ASCII look-alikes) and control characters other than tab, newline and
carriage return are refused with a 400 naming the field. Emoji sequences (ZWJ), the ZWNJ that
Persian and Hindi need, and code pass untouched. The guard issue replaces this step with
`strata.guard` (normalisation, injection detection, redaction).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from strata.errors import InvalidRequestError

# U+202A-U+202E (embeddings/overrides), U+2066-U+2069 (isolates), U+E0000-U+E007F (tags),
# C0 controls except \t \n \r, DEL and the C1 controls.
_REFUSED = re.compile(
    "[\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
)


def check_texts(texts: Iterable[tuple[str, str]]) -> None:
    """Raise `InvalidRequestError` for the first (field path, text) holding a refused character."""
    for path, text in texts:
        found = _REFUSED.search(text)
        if found is not None:
            raise InvalidRequestError(
                f"{path} contains the character U+{ord(found.group()):04X} at position "
                f"{found.start()}; bidirectional overrides, Unicode tag characters and control "
                "characters are refused. Remove it and send the request again.",
                code="invalid_characters",
                param=path,
            )
