"""`strata serve` with no arguments, as `make serve` runs it: the bundled model answers a
streamed chat completion through the official `openai` SDK with sensible text."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from strata.bench.server_process import free_port, wait_healthy

STRATA = Path(sys.executable).parent / "strata"


@pytest.fixture
def served(smollm2_folder: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    # A fresh data dir whose model cache already holds the converted bundled model.
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / smollm2_folder.name).symlink_to(smollm2_folder)
    port = free_port()
    env = {**os.environ, "STRATA_DATA_DIR": str(tmp_path)}
    env.pop("STRATA_CONFIG", None)
    proc = subprocess.Popen(
        [str(STRATA), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(url, proc, timeout_s=120)
        except RuntimeError as exc:
            output = proc.stdout.read() if proc.stdout and proc.poll() is not None else ""
            pytest.fail(f"strata serve: {exc}\n{output}")
        token = (tmp_path / "engine.token").read_text().strip()
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_strata_serve_answers_a_streamed_chat_with_the_bundled_model(
    served: tuple[str, str],
) -> None:
    url, token = served
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
