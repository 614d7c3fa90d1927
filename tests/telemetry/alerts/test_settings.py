"""The `alerts` section: bad values stop start-up with the key named and the fix said."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from strata.config import load_settings
from strata.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [key for key in os.environ if key.startswith("STRATA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STRATA_CONFIG", "")
    yield


def _error(**alerts: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(alerts=alerts)
    return caught.value.message


def test_the_defaults_load() -> None:
    alerts = load_settings().alerts
    assert alerts.enabled and alerts.webhook.url is None
    assert alerts.for_s >= alerts.window_s  # one outlier cannot fire by default


def test_a_bad_value_names_its_key_and_its_environment_variable() -> None:
    message = _error(quota={"warn_fraction": 1.5})
    assert "alerts.quota.warn_fraction" in message and "less than 1" in message
    assert "STRATA_ALERTS__QUOTA__WARN_FRACTION" in message
    assert "alerts.latency.jump_factor" in _error(latency={"jump_factor": 0.5})
    assert "alerts.unknown: remove it (unknown key)" in _error(unknown=1)


def test_windows_must_nest() -> None:
    message = _error(interval_s=30, window_s=10)
    assert "alerts.window_s (10.0) is shorter than alerts.interval_s (30.0)" in message
    assert "alerts.baseline_s" in _error(window_s=600, baseline_s=60)


def test_the_webhook_needs_an_http_url_and_its_secret_stays_hidden() -> None:
    message = _error(webhook={"url": "hooks.example.com/strata"})
    assert "alerts.webhook.url: Value error, must start with http:// or https://" in message
    assert "hooks.example.com/strata" not in message  # a URL may carry a token
    message = _error(webhook={"secret": "s3cret"})
    assert "alerts.webhook.secret is set but alerts.webhook.url is empty" in message
    assert "s3cret" not in message
    assert "alerts.webhook.secret_header" in _error(webhook={"secret_header": "Bad Header:"})


def test_the_webhook_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_ALERTS__WEBHOOK__SECRET", "from-env")
    alerts = load_settings(alerts={"webhook": {"url": "https://hooks.example.com/a"}}).alerts
    assert alerts.webhook.secret is not None
    assert alerts.webhook.secret.get_secret_value() == "from-env"
