"""Known attack shapes, as patterns with a category each.

These name *what kind* of attack a flagged text looks like (the classifier says *whether*), and
catch the blatant shapes with certainty. They run on the detectors' normalised, lower-cased
copy, so homoglyphs and zero-width tricks do not hide a keyword.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Shape(NamedTuple):
    category: str
    pattern: re.Pattern[str]


def _shape(category: str, pattern: str) -> Shape:
    return Shape(category, re.compile(pattern, re.DOTALL))


_TARGET = (
    r"(?:instructions?|rules|guidelines|prompts?|directives|constraints|programming|guardrails)"
)
SHAPES: tuple[Shape, ...] = (
    _shape(
        "instruction_override",
        r"\b(?:ignore|disregard|forget|override|bypass|skip|abandon)\b[^.\n]{0,40}?"
        r"\b(?:previous|prior|above|earlier|preceding|all|your|the|any|original|initial)\b"
        rf"[^.\n]{{0,30}}?\b{_TARGET}\b",
    ),
    _shape(
        "prompt_extraction",
        r"\b(?:reveal|show|print|repeat|output|display|leak|expose|dump|recite|tell me)\b"
        r"[^.\n]{0,40}?\b(?:system prompt|initial (?:prompt|instructions)|hidden "
        r"(?:prompt|instructions)|your (?:system )?(?:instructions|prompt|rules|guidelines))\b",
    ),
    _shape(
        "jailbreak",
        r"\b(?:do anything now|developer mode|jailbreak(?:en)?|dan mode|unfiltered ai|"
        r"(?:without|no) (?:any )?"
        r"(?:restrictions|filters|censorship|ethical (?:guidelines|limits)))\b",
    ),
    _shape(
        "persona_replacement",
        r"\byou are now (?:an? |the |my |called |named |dan\b|in \w+ mode)|\byou are no longer\b"
        r"|\bfrom now on,? you (?:are|will|must)\b",
    ),
    _shape(
        "role_injection",
        r"<\|im_start\|>|<\|system\|>|\[/?inst\]|<<sys>>|(?:^|\n)\s*#{0,3}\s*(?:system|assistant)\s*:",
    ),
    _shape("encoding", r"(?:\\x[0-9a-f]{2}){4,}|\b(?:decode|base64)\b.{0,60}[a-z0-9+/]{40,}={0,2}"),
)


def match_shapes(normalized: str) -> tuple[str, ...]:
    """Categories whose pattern occurs in the normalised, lower-cased text."""
    return tuple(s.category for s in SHAPES if s.pattern.search(normalized))
