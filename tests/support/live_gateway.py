"""strata's whole gateway for tests: `GatewayRuntime` + app under uvicorn on a free loopback
port, in a background thread, against a real PostgreSQL database and real upstreams.

    with LiveGateway(settings) as gw:
        key = gw.create_key(tenant="acme", user="alice", rpm=5)   # via /admin with the
        gw.client(key).chat.completions.create(...)               # bootstrap admin key
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import openai
import uvicorn

from strata.config import Settings
from strata.gateway.app import build_gateway_app
from strata.gateway.identity import IssuedKey
from strata.gateway.runtime import BuiltinEngine, GatewayRuntime


class LiveGateway:
    def __init__(self, settings: Settings, engine: BuiltinEngine | None = None) -> None:
        self.admin_key = ""
        self.runtime = GatewayRuntime(settings, engine, on_bootstrap_key=self._keep_admin_key)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(
            build_gateway_app(self.runtime),
            log_level="warning",
            loop="uvloop",
            http="httptools",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def _keep_admin_key(self, issued: IssuedKey) -> None:
        self.admin_key = issued.key

    def __enter__(self) -> LiveGateway:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            assert self._thread.is_alive(), "the gateway failed to start (see the log above)"
            assert time.monotonic() < deadline, "the gateway did not start within 60 s"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)
        self._sock.close()

    def client(self, key: str, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **kw)

    def async_client(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)

    def http(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with self.http(self.admin_key) as http:
            return http.request(method, f"/admin{path}", **kw)

    def create_key(self, tenant: str = "acme", user: str = "alice", **fields: Any) -> str:
        """A new key through `POST /admin/keys`; `fields` are its limits, models, role..."""
        reply = self.admin("POST", "/keys", json={"tenant": tenant, "user": user, **fields})
        assert reply.status_code == 201, reply.text
        key: str = reply.json()["key"]
        return key
