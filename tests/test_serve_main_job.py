"""`strata serve` with no arguments, as `make serve` runs it: the gateway, the built-in engine
and the embedded PostgreSQL in one process; the admin key it prints once answers a streamed
chat completion through the official `openai` SDK with sensible text, and a user key made with
`strata keys create` while it runs works too."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from strata.bench.server_process import free_port, wait_healthy

STRATA = Path(sys.executable).parent / "strata"


@pytest.fixture
def served(
    smollm2_folder: Path, tmp_path: Path, pg_data_dir: Path
) -> Iterator[tuple[str, str, Path]]:
    # A fresh data dir whose model cache already holds the converted bundled model.
    data_dir = pg_data_dir
    (data_dir / "models").mkdir()
    (data_dir / "models" / smollm2_folder.name).symlink_to(smollm2_folder)
    port = free_port()
    env = {**os.environ, "STRATA_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    env.pop("STRATA_CONFIG", None)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(STRATA), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(url, proc, timeout_s=120)
        except RuntimeError as exc:
            pytest.fail(f"strata serve: {exc}\n{log.read_text()}")
        found = re.search(r"first admin key .*: (sk-strata-\S+)", log.read_text())
        assert found, f"no admin key printed:\n{log.read_text()}"
        yield url, found.group(1), data_dir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_strata_serve_answers_a_streamed_chat_with_the_bundled_model(
    served: tuple[str, str, Path],
) -> None:
    url, token, data_dir = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
    (model,) = [m.id for m in client.models.list()]
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=True,
        max_tokens=40,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "Paris" in text
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()

    # A user key made with the CLI while the server runs (it shares the embedded PostgreSQL).
    env = {**os.environ, "STRATA_DATA_DIR": str(data_dir)}
    made = subprocess.run(
        [str(STRATA), "keys", "create", "--tenant", "acme", "--user", "alice", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, f"strata keys create: {made.stderr}\n{made.stdout}"
    key = json.loads(made.stdout)["key"]
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    (model,) = [m.id for m in client.models.list()]
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
    )
    assert reply.usage is not None and reply.usage.completion_tokens > 0
