"""`strata bench routing`'s harness: the workload is reproducible and salted, a policy run
through the router over real engine servers records every turn, and the report carries the
command line and the per-policy figures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from strata.bench.routing.cluster import EngineConfig, engines
from strata.bench.routing.main import main, write
from strata.bench.routing.run import Backends, PolicyRun, Turn, run_policy
from strata.bench.routing.workload import Shape, workload
from strata.config import RoutingSettings
from strata.engine.tokenizer import Tokenizer
from strata.gateway.upstream.prompt_blocks import PromptHasher
from tests.support.live_server import MODEL, TOKEN, LiveServer, make_engine

TINY = Shape(contexts=2, context_words=60, conversations=4, turns=2, rate=20.0, think_s=0.05,
             question_words=6, max_tokens=3)  # fmt: skip


def test_the_workload_depends_on_the_seed_and_the_salt_only_starts_the_contexts() -> None:
    a, b = workload(TINY, "a"), workload(TINY, "b")
    assert a == workload(TINY, "a") and a.requests == 8
    assert a.conversations == b.conversations
    assert all(x != y and x.split(".", 1)[1] == y.split(".", 1)[1]
               for x, y in zip(a.contexts, b.contexts, strict=True))  # fmt: skip
    starts = [c.start_s for c in a.conversations]
    assert starts == sorted(starts) and all(len(c.pauses_s) == 1 for c in a.conversations)
    many = workload(Shape(conversations=2000, rate=4.0), "x").conversations
    assert many[-1].start_s / 2000 == pytest.approx(0.25, rel=0.1)  # Poisson at 4/s
    with pytest.raises(ValueError, match="--turns"):
        Shape(turns=0)


@pytest.fixture(scope="module")
def two_engines(
    tiny_llama_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[LiveServer]]:
    cache = tmp_path_factory.mktemp("cache")
    with ExitStack() as stack:
        yield [stack.enter_context(LiveServer(make_engine(tiny_llama_folder, cache)))
               for _ in range(2)]  # fmt: skip


@pytest.mark.parametrize("policy", ["prefix", "round-robin", "least-loaded"])
def test_a_policy_run_records_every_turn(
    two_engines: list[LiveServer], tiny_llama_folder: Path, tmp_path: Path, policy: str
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    hasher = PromptHasher(Tokenizer.from_folder(tiny_llama_folder))
    urls = [f"{e.url}/v1" for e in two_engines]
    backends = Backends(urls, token, tiny_llama_folder, hasher, model=MODEL)
    work = workload(TINY, policy)
    run = asyncio.run(run_policy(backends, policy, work, policy, RoutingSettings()))  # type: ignore[arg-type]
    assert len(run.turns) == work.requests and all(t.ok for t in run.turns), run.turns
    assert all(t.first_text is not None and t.first_text >= t.started for t in run.turns)
    assert all(t.completion_tokens == 3 and t.prompt_tokens > 60 for t in run.turns)
    assert sum(t.cached_tokens for t in run.turns) > 0  # conversations share their context
    decisions = sum(sum(s.decisions.values()) for s in run.routing)
    assert decisions == (work.requests if policy == "prefix" else 0)


def test_the_report_has_the_command_and_each_policy(tmp_path: Path) -> None:
    def turn(cached: int, upstream: str) -> Turn:
        return Turn(0, 0, upstream, 0.0, 0.1, 0.5, 100, cached, 4)

    failed = Turn(1, 0, "", 0.0, None, 1.0, error="HTTP 503")
    runs = [PolicyRun("prefix", "p", [turn(80, "e0"), turn(60, "e1")], wall_s=2.0),
            PolicyRun("round-robin", "r", [turn(20, "e0"), failed], wall_s=2.0)]  # fmt: skip
    context = {"command": "strata bench routing --smoke", "when": "now", "machine": "here",
               "repeats": 1, "shape": vars(TINY), "overload_margin": 4,
               "engines": {"count": 2, "model": "tiny", "kv_cache_memory": "8MiB",
                           "max_model_len": 256, "threads": 1}}  # fmt: skip
    write(runs, context, tmp_path)
    data = json.loads((tmp_path / "routing.json").read_text())
    assert data["policies"]["prefix"]["prefix_hit_rate"] == 0.7
    assert data["policies"]["round-robin"]["failed"] == 1
    assert data["policies"]["prefix"]["by_upstream"] == {"e0": 1, "e1": 1}
    text = (tmp_path / "routing.md").read_text()
    assert text.startswith("# Prefix-aware routing\n\nCommand: `strata bench routing --smoke`")
    assert "| prefix | 2 (0) | 70.0% |" in text and "| round-robin | 2 (1) | 20.0% |" in text


def test_bad_options_are_refused_naming_them(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, named in ((["--policies", "random"], "--policies"), (["--turns", "0"], "--turns")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and named in capsys.readouterr().err


@pytest.mark.slow
def test_the_engine_processes_start_and_answer(tiny_llama_folder: Path, tmp_path: Path) -> None:
    config = EngineConfig(tiny_llama_folder, kv_cache_memory="8MiB", max_model_len=256)
    with engines(config, tmp_path) as urls:
        assert len(urls) == 2 and len(set(urls)) == 2
        assert all(url.startswith("http://127.0.0.1:") and url.endswith("/v1") for url in urls)
