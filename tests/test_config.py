"""The settings tree: defaults < YAML file < STRATA_* environment < explicit overrides."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from strata.config import Settings, load_settings
from strata.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No inherited STRATA_* variables and no ./strata.yaml; undo `load_settings`' env write."""
    for name in [key for key in os.environ if key.startswith("STRATA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STRATA_CONFIG", "")  # recorded, so the teardown removes it again
    monkeypatch.chdir(tmp_path)
    yield


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_file() -> None:
    settings = load_settings()
    assert settings.engine_server.port == 8401 and settings.server.port == 8400
    assert settings.engine_token_file == Path(".strata") / "engine.token"
    assert settings.model_cache_dir == Path(".strata") / "models"


def test_yaml_file_sets_values(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "engine:\n  max_num_seqs: 8\n  kv_cache_memory: 1GiB\n")
    settings = load_settings(config)
    assert settings.engine.max_num_seqs == 8
    assert int(settings.engine.kv_cache_memory) == 1024**3


def test_environment_beats_the_file_and_overrides_beat_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "c.yaml", "engine:\n  max_num_seqs: 8\n  block_size: 32\n")
    monkeypatch.setenv("STRATA_ENGINE__MAX_NUM_SEQS", "12")
    settings = load_settings(config)
    assert settings.engine.max_num_seqs == 12
    assert settings.engine.block_size == 32  # the rest of the file's section still applies
    settings = load_settings(config, engine={"max_num_seqs": 3})
    assert settings.engine.max_num_seqs == 3 and settings.engine.block_size == 32


def test_strata_yaml_in_the_working_directory_is_picked_up(tmp_path: Path) -> None:
    write(tmp_path / "strata.yaml", "log_level: debug\n")
    assert load_settings().log_level == "debug"


def test_unknown_key_names_the_dotted_key(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "engine:\n  max_num_seq: 8\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert "engine.max_num_seq" in info.value.message
    assert "unknown key" in info.value.message


def test_bad_value_names_the_key_and_its_env_variable(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "engine_server:\n  port: 99999\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert "engine_server.port" in info.value.message
    assert "STRATA_ENGINE_SERVER__PORT" in info.value.message


def test_bad_environment_value_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_ENGINE__DEVICE", "tpu")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "engine.device" in info.value.message


def test_file_that_is_not_yaml_or_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path / "a.yaml", "engine: [unclosed\n"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_settings(write(tmp_path / "b.yaml", "- a\n- b\n"))


def test_strata_config_naming_a_missing_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_CONFIG", "/nonexistent/strata.yaml")
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()


def test_secrets_are_masked_when_dumped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_ENGINE_SERVER__TOKEN", "s3cret-token")
    settings = load_settings()
    assert settings.engine_server.token is not None
    assert settings.engine_server.token.get_secret_value() == "s3cret-token"
    assert "s3cret" not in str(settings.model_dump(mode="json"))


def test_settings_is_the_root_type() -> None:
    assert isinstance(load_settings(), Settings)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"upstreams": [{"name": "a"}]}, "needs a url"),
        ({"upstreams": [{"name": "a", "url": "ftp://x"}]}, "http:// or https://"),
        (
            {"upstreams": [{"name": "a", "url": "http://x/v1"}, {"name": "a", "url": "http://y"}]},
            "names must be unique",
        ),
        ({"upstreams": [{"name": "e", "kind": "engine", "url": "http://x"}]}, "remove its url"),
        ({"gateway": {"engine": False}}, "nothing could answer"),
        ({"gateway": {"tls_certfile": "/etc/hostname"}}, "tls_keyfile"),
        (
            {
                "upstreams": [
                    {"name": "a", "url": "http://x", "api_key_env": "A", "api_key_file": "f"}
                ]
            },
            "not both",
        ),
        (
            {"upstreams": [{"name": "a", "url": "http://x", "gpu": "tpu-v9"}]},
            r"upstreams\[a\]\.gpu is 'tpu-v9'.*add pricing\.gpu_hour_usd\.tpu-v9",
        ),
        (
            {
                "upstreams": [{"name": "a", "url": "http://x", "gpu": "mine", "tier": "spot"}],
                "pricing": {"gpu_hour_usd": {"mine": {"reserved": 1, "on_demand": 2}}},
            },
            r"tier spot but pricing\.gpu_hour_usd\.mine\.spot is empty",
        ),
    ],
)
def test_gateway_settings_that_cannot_work_are_refused(
    overrides: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_settings(**overrides)


def test_credential_values_never_appear_in_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(redis_url=["redis://:hunter2@host"])
    assert "hunter2" not in caught.value.message and "redis_url" in caught.value.message


def test_a_config_file_given_to_load_settings_does_not_leak_into_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRATA_CONFIG", raising=False)
    config = tmp_path / "strata.yaml"
    config.write_text("log_level: debug\n")
    assert load_settings(config).log_level == "debug"
    assert "STRATA_CONFIG" not in os.environ  # child processes would inherit it
