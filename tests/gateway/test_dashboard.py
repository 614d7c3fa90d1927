"""`/dashboard`: admins only (an admin bearer key, or the session cookie that key buys), the data
behind it following a live gateway's traffic, and the page itself in a real headless Chromium:
its plots over the built-in engine, its request-log search and detail over logged traffic, with
screenshots kept in `test-artifacts/`."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from strata.config import Settings
from strata.engine.engine import Engine
from strata.engine.server import build_engine_app
from strata.gateway.dashboard_sessions import COOKIE
from strata.gateway.runtime import BuiltinEngine
from strata.telemetry.engine_metrics import EngineMetrics
from tests.gateway.conftest import gateway_settings
from tests.gateway.request_logs.support import ANSWER_EMAIL, OPENAI_KEY
from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DATA = "/admin/dashboard/data"
SESSION = "/admin/dashboard/session"
TELEMETRY = {"dashboard_interval_s": 0.1, "tenant_labels": ["acme"]}
PRICING = {"default": {"input_per_mtok": 2.0, "output_per_mtok": 8.0}}
CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "Say something."}]}
# Rules that fire on the first streamed request: the alerts panel gets a row.
ALERT_ON_ANY_TTFT = {"interval_s": 0.2, "window_s": 5, "baseline_s": 10, "for_s": 0,
                     "min_samples": 1, "latency": {"ttft_p99_ms": 0.001}}  # fmt: skip


@pytest.fixture
def dash(pg_dsn: str, tmp_path: Path, upstream: MockUpstream) -> Iterator[LiveGateway]:
    settings = gateway_settings(pg_dsn, tmp_path, upstream, gateway={"ledger_flush_ms": 20},
                                telemetry=TELEMETRY, pricing=PRICING)  # fmt: skip
    with LiveGateway(settings) as live:
        yield live


def wait_for(found: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := found()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def log_in(live: LiveGateway, key: str) -> str:
    with live.http(key) as http:
        reply = http.post(SESSION)
    assert reply.status_code == 201, reply.text
    token: str = reply.cookies[COOKIE]
    return token


def with_cookie(live: LiveGateway, token: str) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Cookie": f"{COOKIE}={token}"}, timeout=30)


# -- who may look ----------------------------------------------------------------------------


def test_without_an_admin_the_page_is_a_login_form_and_the_data_is_refused(
    dash: LiveGateway,
) -> None:
    with dash.http() as http:
        page = http.get("/dashboard")
        assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
        assert 'id="key"' in page.text and "<canvas" not in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        data = http.get(DATA)
        assert data.status_code == 401
        assert data.json()["error"]["code"] == "dashboard_login_required"
        assert http.post(SESSION).status_code == 401
    with dash.http("sk-strata-not-a-key") as http:
        assert http.get("/dashboard").status_code == 401
        assert http.get(DATA).status_code == 401
    with with_cookie(dash, "forged") as http:
        page = http.get("/dashboard")
        assert page.status_code == 401 and 'id="key"' in page.text
        assert f'{COOKIE}=""' in page.headers["set-cookie"]  # told to forget it
        assert http.get(DATA).status_code == 401


def test_user_keys_are_refused_and_get_no_session(dash: LiveGateway) -> None:
    user = dash.create_key(tenant="acme", user="alice")
    with dash.http(user) as http:
        for reply in (http.get("/dashboard"), http.get(DATA), http.post(SESSION)):
            assert reply.status_code == 403, reply.text
            assert reply.json()["error"]["code"] == "admin_only"
            assert "set-cookie" not in reply.headers


def test_an_admin_key_buys_a_cookie_that_opens_only_the_dashboard(dash: LiveGateway) -> None:
    with dash.http(dash.admin_key) as http:
        assert "<canvas" in http.get("/dashboard").text  # a bearer key works as is
        reply = http.post(SESSION)
    assert reply.status_code == 201
    cookie = reply.headers["set-cookie"].lower()
    for attribute in ("httponly", "samesite=strict", "path=/", "max-age=3600"):
        assert attribute in cookie
    assert "secure" not in cookie  # plain-HTTP loopback; set when the gateway serves TLS
    token = reply.cookies[COOKIE]
    assert dash.admin_key not in reply.headers["set-cookie"]
    with with_cookie(dash, token) as http:
        page = http.get("/dashboard")
        assert page.status_code == 200 and "<canvas" in page.text
        assert page.headers["cache-control"] == "no-store"
        data = http.get(DATA).json()
        assert data["interval_s"] == 0.1 and isinstance(data["points"], list)
        assert data["alerts"] == []  # the alert rules run; nothing fires on an idle gateway
        assert http.get("/admin/keys").status_code == 401  # the cookie is not an admin key
        assert http.get("/metrics").status_code == 401
        assert http.delete(SESSION).status_code == 204
        assert http.get(DATA).status_code == 401


def test_revoking_or_rotating_the_key_ends_its_sessions(dash: LiveGateway) -> None:
    bob, carol = (
        dash.admin("POST", "/keys", json={"tenant": "ops", "user": user, "role": "admin"}).json()
        for user in ("bob", "carol")
    )
    tokens = [log_in(dash, bob["key"]), log_in(dash, carol["key"])]
    assert dash.admin("POST", f"/keys/{bob['key_id']}/revoke").status_code == 200
    assert dash.admin("POST", f"/keys/{carol['key_id']}/rotate").status_code == 201
    for token in tokens:
        with with_cookie(dash, token) as http:
            assert http.get(DATA).status_code == 401


# -- what it shows ---------------------------------------------------------------------------


def test_the_data_follows_live_traffic_and_since_returns_only_newer_points(
    dash: LiveGateway, upstream: MockUpstream
) -> None:
    client = dash.client(dash.create_key(tenant="acme", user="alice"))
    stream = client.chat.completions.create(model="mock-model", stream=True, **CHAT)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    client.chat.completions.create(model="mock-model", **CHAT)

    def busy_points() -> list[dict[str, Any]]:
        with dash.http(dash.admin_key) as http:
            points: list[dict[str, Any]] = http.get(DATA).json()["points"]
        return [p for p in points if (p["tokens_per_s"]["generation"] or 0) > 0]

    busy = wait_for(busy_points)
    # (No TTFT here: the gateway spots streamed text by compact JSON, which this mock does not
    # write; the browser test below sees TTFT from the engine.)
    assert all(p["itl_s"]["p50"] is None for p in busy)  # no engine here: no token timing
    assert sum(p["cost_usd_per_h"]["acme"] for p in busy) > 0

    def enough_points() -> list[dict[str, Any]]:  # a middle with points after it
        with dash.http(dash.admin_key) as http:
            points: list[dict[str, Any]] = http.get(DATA).json()["points"]
        return points if len(points) >= 3 else []

    everything = wait_for(enough_points)
    with dash.http(dash.admin_key) as http:
        middle = everything[len(everything) // 2]["t"]
        newer = http.get(DATA, params={"since": middle}).json()["points"]
        assert http.get(DATA, params={"since": "yesterday"}).status_code == 400
    assert newer and all(p["t"] > middle for p in newer)
    assert newer[0] in everything  # the same point, its `t` round-tripped exactly


# -- the page in a real browser --------------------------------------------------------------


def builtin_engine(settings: Settings) -> BuiltinEngine:
    """The in-process engine the way `strata serve` builds it."""
    engine = Engine.from_settings(settings.engine, settings.model_cache_dir, settings.slo)
    metrics = EngineMetrics(engine.stats)
    app = build_engine_app(engine, "test-token", manage_engine=False, metrics=metrics)
    return BuiltinEngine(engine, app, "test-token", metrics)


@pytest.fixture
def live(pg_dsn: str, tmp_path: Path, tiny_llama_folder: Path) -> Iterator[LiveGateway]:
    """The gateway with the built-in engine (a tiny random-weight Llama) in-process."""
    settings = Settings(
        data_dir=tmp_path,
        store={"dsn": pg_dsn},
        gateway={"engine": True, "ledger_flush_ms": 20},
        engine={"model": str(tiny_llama_folder), "served_model_name": "tiny",
                "max_model_len": 256, "kv_cache_memory": "8MiB"},
        telemetry={**TELEMETRY, "dashboard_interval_s": 0.25},
        pricing=PRICING,
        alerts=ALERT_ON_ANY_TTFT,
    )  # fmt: skip
    with LiveGateway(settings, builtin_engine(settings)) as gateway:
        yield gateway


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium from Debian's packages, driven through their chromedriver."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"needs Debian's chromium and chromium-driver ({', '.join(missing)} "
                    "missing): run `make tools`")  # fmt: skip
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (dev extras)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1500",
                     f"--user-data-dir={tmp_path / 'chromium'}"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def points_drawn(driver: Any, panel: str) -> int:
    canvas = driver.find_element("css selector", f"section[data-panel='{panel}'] canvas")
    return int(canvas.get_attribute("data-points") or 0)


# How many pixels of a panel's canvas have the first line's colour (#60a5fa): the p50 line,
# drawn on top of the others.
FIRST_LINE_PIXELS = """
const canvas = document.querySelector("section[data-panel='" + arguments[0] + "'] canvas");
const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
let count = 0;
for (let i = 0; i < data.length; i += 4) {
  if (data[i] === 96 && data[i + 1] === 165 && data[i + 2] === 250) count += 1;
}
return count;
"""


@pytest.mark.slow
def test_the_page_plots_a_live_strata_in_headless_chromium(
    live: LiveGateway, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    client = live.client(live.create_key(tenant="acme", user="alice"))

    def chat() -> None:
        stream = client.chat.completions.create(
            model="tiny", stream=True, max_tokens=12, temperature=0, **CHAT
        )
        for _ in stream:
            pass

    for _ in range(3):
        chat()

    browser.get(live.url + "/dashboard")
    browser.find_element(By.ID, "key").send_keys(live.admin_key)
    browser.find_element(By.ID, "submit").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "section[data-panel] canvas"))
    plotted = ("ttft_s", "itl_s", "tokens_per_s", "requests", "kv_cache", "cost_usd_per_h")
    wait_for(lambda: all(points_drawn(browser, panel) > 0 for panel in plotted))
    assert browser.execute_script(FIRST_LINE_PIXELS, "ttft_s") > 0  # the p50 line is on it
    assert live.admin_key not in browser.current_url
    cookie = browser.get_cookie(COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # scripts cannot read it
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#alerts tbody tr"))
    assert "ttft_p99" in browser.find_element(By.CSS_SELECTOR, "#alerts tbody tr").text

    before = points_drawn(browser, "ttft_s")
    chat()  # live: a new request shows up without reloading the page
    wait_for(lambda: points_drawn(browser, "ttft_s") > before)
    legend = browser.find_element(By.CSS_SELECTOR, "section[data-panel='cost_usd_per_h'] li")
    assert legend.text.startswith("acme $")

    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "dashboard.png")
    problems = [e["message"] for e in browser.get_log("browser")
                if e["level"] == "SEVERE" and "status of 401" not in e["message"]]  # fmt: skip
    assert not problems, problems  # no script errors, no blocked inline code

    browser.find_element(By.ID, "logout").click()
    wait_for(lambda: browser.find_elements(By.ID, "key"))  # back to the login form


# -- request logs in the page ----------------------------------------------------------------

WORD = "zephyrquartz"  # in one logged prompt only
MARKUP = "<b id='injected'>bold</b>"  # must show as text, never become an element


@pytest.fixture
def logged(pg_dsn: str, tmp_path: Path, upstream: MockUpstream) -> Iterator[LiveGateway]:
    """Request logs written every 20 ms; acme's guard lets secrets through to the upstream (the
    log redacts them anyway)."""
    settings = gateway_settings(
        pg_dsn, tmp_path, upstream,
        gateway={"ledger_flush_ms": 20},
        request_logs={"flush_ms": 20, "refresh_s": 0.2},
        pricing=PRICING,
        guard={"tenants": {"acme": {"secrets": "flag", "pii": "off"}}},
    )  # fmt: skip
    with LiveGateway(settings) as live:
        yield live


def send_logged_traffic(live: LiveGateway, upstream: MockUpstream) -> str:
    """Tenant acme opted in, then through the openai SDK: one request with WORD, a secret and
    markup in session sess-42, scored with feedback, then 26 others; the first one's
    x-request-id once all 27 are logged."""
    upstream.text = f"Write to {ANSWER_EMAIL} about the parcel."
    client = live.client(live.create_key(tenant="acme", user="alice"))
    opted_in = live.admin("PUT", "/logging/acme", json={"enabled": True})
    assert opted_in.status_code == 200, opted_in.text
    asked = f"Where is my {WORD} parcel? My key is {OPENAI_KEY}. {MARKUP}"
    raw = client.chat.completions.with_raw_response.create(
        model="mock-model", messages=[{"role": "user", "content": asked}],
        extra_headers={"x-strata-session": "sess-42"},
    )  # fmt: skip
    raw.parse()
    rid = raw.headers["x-request-id"]
    feedback = {"request_id": rid, "score": 1, "name": "thumbs", "comment": "spot on"}
    client.post("/feedback", cast_to=object, body=feedback)
    for n in range(26):  # more than one page of the panel (25 rows)
        client.chat.completions.create(
            model="mock-model", messages=[{"role": "user", "content": f"Question {n}."}]
        )
    wait_for(lambda: len(live.admin("GET", "/logs").json()["data"]) == 27)
    return rid


def log_rows(driver: Any) -> int:
    """The rows the log table shows; 0 while it is hidden."""
    table = driver.find_element("id", "logs")
    return int(table.get_attribute("data-rows") or 0) if table.is_displayed() else 0


def search_logs(driver: Any, **fields: str) -> None:
    form = driver.find_element("id", "log-search")
    for name, value in fields.items():
        form.find_element("name", name).clear()
        form.find_element("name", name).send_keys(value)
    form.find_element("css selector", "button[type='submit']").click()


def test_the_page_searches_request_logs_and_opens_one_in_headless_chromium(
    logged: LiveGateway, upstream: MockUpstream, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    rid = send_logged_traffic(logged, upstream)
    browser.get(logged.url + "/dashboard")
    browser.find_element(By.ID, "key").send_keys(logged.admin_key)
    browser.find_element(By.ID, "submit").click()
    wait_for(lambda: browser.find_elements(By.ID, "logs") and log_rows(browser) == 25)
    more = browser.find_element(By.ID, "logs-more")
    more.click()  # the next page, by cursor
    wait_for(lambda: log_rows(browser) == 27)
    assert not more.is_displayed()

    search_logs(browser, q=WORD, session="sess-42")
    wait_for(lambda: log_rows(browser) == 1)
    row = browser.find_element(By.CSS_SELECTOR, "#logs tbody tr")
    assert row.get_attribute("data-request-id") == rid
    for shown in ("acme", "alice", "sess-42", "mock-model", "200", "5 + 6", "$0.000058", "thumbs=1",
                  f"{WORD} parcel? My key is [REDACTED:openai_key]. {MARKUP}",
                  "Write to [REDACTED:email] about the parcel."):  # fmt: skip
        assert shown in row.text, (shown, row.text)
    assert OPENAI_KEY not in browser.page_source and ANSWER_EMAIL not in browser.page_source

    row.find_element(By.CSS_SELECTOR, "button.link").click()  # the time opens the detail
    detail = browser.find_element(By.ID, "log-detail")
    wait_for(lambda: detail.get_attribute("data-request-id") == rid and detail.is_displayed())
    messages = browser.find_element(By.ID, "log-messages").text
    assert f"user\nWhere is my {WORD} parcel? My key is [REDACTED:openai_key]." in messages
    assert "assistant\nWrite to [REDACTED:email] about the parcel." in detail.text
    assert "thumbs = 1: spot on (key " in browser.find_element(By.ID, "log-feedback").text
    assert "session sess-42" in browser.find_element(By.ID, "log-facts").text
    assert not browser.find_elements(By.ID, "injected")  # the markup stayed text everywhere

    shot = tmp_path / "dashboard-logs.png"
    assert browser.find_element(By.ID, "logs-panel").screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "dashboard-logs.png")

    search_logs(browser, q=f"{WORD} -parcel")
    wait_for(lambda: browser.find_element(By.ID, "logs-note").text == "No logs match.")
    assert log_rows(browser) == 0
    problems = [e["message"] for e in browser.get_log("browser")
                if e["level"] == "SEVERE" and "status of 401" not in e["message"]]  # fmt: skip
    assert not problems, problems  # no script errors, no blocked inline code (the 401: login)
