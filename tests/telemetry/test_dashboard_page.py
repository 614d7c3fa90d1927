"""The dashboard's pages ship inside the package and run only their own inline code."""

from __future__ import annotations

import base64
import hashlib
import re

from strata.telemetry.dashboard_page import DASHBOARD, LOGIN, content_security_policy, load_page


def test_the_policy_allows_exactly_the_pages_inline_blocks() -> None:
    for name in (DASHBOARD, LOGIN):
        page = load_page(name)
        html = page.html.decode()
        (script,) = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        policy = page.content_security_policy
        assert f"script-src 'sha256-{digest}'" in policy
        assert "unsafe" not in policy and "default-src 'none'" in policy
        assert "form-action 'none'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["Cache-Control"] == "no-store"
        assert "src=" not in html.replace('href="data:,"', ""), "nothing loaded from elsewhere"


def test_an_edited_script_gets_another_hash() -> None:
    assert content_security_policy("<style>a</style><script>1</script>") != (
        content_security_policy("<style>a</style><script>2</script>")
    )


def test_the_login_form_never_submits_the_key() -> None:
    html = load_page(LOGIN).html.decode()
    (field,) = re.findall(r"<input[^>]*>", html)
    assert 'type="password"' in field and "name=" not in field
    assert "Authorization" in html and "/admin/dashboard/session" in html
