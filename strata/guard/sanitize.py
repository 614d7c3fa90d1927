"""Sanitization: what the detectors read, and what is forwarded to the model.

Two copies of every text. The *forwarded* copy loses only characters that hide instructions
from human readers — bidirectional overrides and isolates, Unicode tag characters, control
characters other than tab, newline and carriage return — so emoji ZWJ sequences, the ZWNJ that
Persian and Hindi need, and code pass intact. Policy decides whether such a character is refused
(the default: a 400 naming the field) or stripped. The *normalised* copy, which only detectors
see, is NFKC-folded, has zero-width and hidden characters removed and look-alike Cyrillic/Greek
letters collapsed to ASCII. Size limits are enforced here too.

This module knows nothing about HTTP; it raises `InvalidRequestError` / `PayloadTooLargeError`
from the one error hierarchy, which the gateway maps.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from strata.errors import InvalidRequestError, PayloadTooLargeError
from strata.guard.confusables import collapse_confusables

HiddenAction = Literal["refuse", "strip"]

# U+202A-U+202E (embeddings/overrides), U+2066-U+2069 (isolates), U+E0000-U+E007F (tags),
# C0 controls except \t \n \r, DEL and the C1 controls.
HIDDEN = re.compile(
    "[\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
)
# Invisible in rendering, removed only from the detectors' copy: ZWSP, ZWNJ, ZWJ, word joiner,
# invisible operators, BOM, soft hyphen, Mongolian vowel separator, LRM/RLM/ALM.
ZERO_WIDTH = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\u00ad\u180e\u061c]")


@dataclass(frozen=True)
class SizeLimits:
    """Per-field and per-request caps, in characters."""

    max_field_chars: int = 200_000
    max_total_chars: int = 1_000_000


@dataclass(frozen=True)
class Change:
    """One kind of character removed from one field of the forwarded text."""

    path: str
    codepoint: int
    count: int


@dataclass(frozen=True)
class SanitizedText:
    """One field after sanitization."""

    path: str
    forwarded: str  # what the model receives
    normalized: str  # what the detectors read (NFKC, no zero-width, confusables collapsed)


@dataclass(frozen=True)
class SanitizeReport:
    """Every field's two copies, and what was stripped from the forwarded ones."""

    texts: tuple[SanitizedText, ...]
    changes: tuple[Change, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def normalize(text: str) -> str:
    """The detectors' copy: NFKC, hidden and zero-width characters removed, look-alikes
    collapsed to ASCII. Not for forwarding: it breaks ZWJ emoji and ZWNJ scripts."""
    text = unicodedata.normalize("NFKC", text)
    text = ZERO_WIDTH.sub("", HIDDEN.sub("", text))
    return collapse_confusables(text)


def strip_hidden(path: str, text: str) -> tuple[str, list[Change]]:
    """The forwarded copy with hidden characters removed, and what was removed."""
    found: dict[int, int] = {}
    for match in HIDDEN.finditer(text):
        found[ord(match.group())] = found.get(ord(match.group()), 0) + 1
    if not found:
        return text, []
    changes = [Change(path, cp, n) for cp, n in sorted(found.items())]
    return HIDDEN.sub("", text), changes


def refuse_hidden(path: str, text: str) -> None:
    """Raise `InvalidRequestError` (code `invalid_characters`) if `text` holds a hidden
    character; the message names the field, the code point and its position."""
    found = HIDDEN.search(text)
    if found is None:
        return
    raise InvalidRequestError(
        f"{path} contains the character U+{ord(found.group()):04X} at position "
        f"{found.start()}; bidirectional overrides, Unicode tag characters and control "
        "characters are refused. Remove it and send the request again.",
        code="invalid_characters",
        param=path,
    )


def check_size(texts: Sequence[tuple[str, str]], limits: SizeLimits) -> None:
    """Raise `PayloadTooLargeError` (code `text_too_large`) naming the first field over the
    per-field cap, or the request when the fields together exceed the total cap."""
    total = 0
    for path, text in texts:
        if len(text) > limits.max_field_chars:
            raise PayloadTooLargeError(
                f"{path} holds {len(text)} characters, more than the guard accepts per field "
                f"({limits.max_field_chars}); shorten it.",
                code="text_too_large",
                param=path,
            )
        total += len(text)
    if total > limits.max_total_chars:
        raise PayloadTooLargeError(
            f"The request's texts hold {total} characters, more than the guard accepts "
            f"({limits.max_total_chars}); shorten them.",
            code="text_too_large",
        )


def sanitize(
    texts: Sequence[tuple[str, str]],
    hidden: HiddenAction = "refuse",
    limits: SizeLimits | None = None,
) -> SanitizeReport:
    """Check sizes, refuse or strip hidden characters, and build both copies of each field."""
    check_size(texts, limits or SizeLimits())
    out: list[SanitizedText] = []
    changes: list[Change] = []
    for path, text in texts:
        if hidden == "refuse":
            refuse_hidden(path, text)
            forwarded = text
        else:
            forwarded, removed = strip_hidden(path, text)
            changes += removed
        out.append(SanitizedText(path, forwarded, normalize(text)))
    return SanitizeReport(tuple(out), tuple(changes))
