"""`strata serve` over TLS when given a certificate and key, and a warning when it listens
beyond loopback without one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from strata.bench.server_process import free_port
from strata.cli import _warn_if_exposed_without_tls
from strata.config import Settings
from tests.support.mock_upstream import MockUpstream

STRATA = str(Path(sys.executable).parent / "strata")


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.slow
def test_serve_speaks_https_with_a_certificate(
    tmp_path: Path, pg_dsn: str, mock_upstream: MockUpstream
) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    config = tmp_path / "strata.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "store": {"dsn": pg_dsn},
                "server": {"port": port},
                "gateway": {"engine": False, "tls_certfile": str(cert), "tls_keyfile": str(key)},
                "upstreams": [{"name": "mock", "url": mock_upstream.url, "models": ["mock-model"]}],
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    proc = subprocess.Popen([STRATA, "serve", "--config", str(config)], env=env)
    try:
        reply = _wait_https(f"https://127.0.0.1:{port}/healthz", proc)
        assert reply.json() == {"status": "ok"}
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)  # no plain HTTP
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_https(url: str, proc: subprocess.Popen[bytes]) -> httpx.Response:
    import time

    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "strata serve exited"
        try:
            return httpx.get(url, verify=False, timeout=2)
        except httpx.TransportError:
            assert time.monotonic() < deadline, "no HTTPS answer in 60 s"
            time.sleep(0.2)


def test_listening_beyond_loopback_without_tls_warns(capsys: pytest.CaptureFixture[str]) -> None:
    _warn_if_exposed_without_tls(Settings(server={"host": "0.0.0.0"}))
    assert "without TLS" in capsys.readouterr().err
    _warn_if_exposed_without_tls(Settings(server={"host": "127.0.0.1"}))
    _warn_if_exposed_without_tls(Settings(server={"host": "::1"}))
    assert capsys.readouterr().err == ""
