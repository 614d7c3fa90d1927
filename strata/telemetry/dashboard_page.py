"""The dashboard's two HTML pages (package data in `strata/telemetry/static/`) and the
Content-Security-Policy each is served with.

Each page is self-contained: one inline `<style>` and one inline `<script>`, hand-written, no
third-party code, nothing fetched but the page's own JSON. The policy allows exactly those
inline blocks (by their SHA-256), requests to this origin, and nothing else: no other scripts,
no framing, no form posts. This module does not know who may see the pages.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files

DASHBOARD = "dashboard.html"
LOGIN = "login.html"


@dataclass(frozen=True)
class Page:
    html: bytes
    content_security_policy: str

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Content-Security-Policy": self.content_security_policy,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        }


def load_page(name: str) -> Page:
    text = files("strata.telemetry").joinpath("static", name).read_text(encoding="utf-8")
    return Page(text.encode("utf-8"), content_security_policy(text))


def content_security_policy(html: str) -> str:
    """A policy that runs only the page's own inline `<script>` and `<style>` blocks."""
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {_hashes(html, 'script')}",
            f"style-src {_hashes(html, 'style')}",
            "connect-src 'self'",
            "img-src data:",  # the empty favicon
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def _hashes(html: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    assert blocks, f"the page has no inline <{tag}>"
    return " ".join(f"'sha256-{_sha256(block)}'" for block in blocks)


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
