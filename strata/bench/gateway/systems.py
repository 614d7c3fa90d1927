"""The systems measured, each a context manager that yields an `Endpoint`.

`direct` is the mock itself (the baseline). `litellm`, `strata` and `strata-guard` start a
gateway pinned to the gateway core, in front of the mock, wait until it answers, and stop it
when the block ends. Each gateway routes the two mode models to the mock's two prefixes and
keeps its per-request limits on, set far above anything the run can reach. `strata` is compared
with LiteLLM with its guard step off (as the issue measures it); `strata-guard` is the same
gateway with the guard at its defaults, to show what that step costs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from strata.bench.gateway import GatewayBenchError
from strata.bench.gateway.mock import Mock
from strata.bench.gateway.modes import MODES, USER_MESSAGE, Mode
from strata.bench.gateway.process import GATEWAY_CORE, log_tail, pinned
from strata.bench.server_process import free_port, launched, wait_healthy

LITELLM_SPEC = "litellm[proxy]==1.108.7"  # the one version the package mirror resolves
LITELLM_VENV = Path(".bench/litellm-venv")
NEVER_BINDING_RPM = 100_000_000
NEVER_BINDING_TPM = 100_000_000_000
START_TIMEOUT_S = 120.0
STRATA_EXE = Path(sys.executable).parent / "strata"  # the strata beside this interpreter


@dataclass(frozen=True)
class Endpoint:
    """Where one system takes chat completions, per mode name, and what to send with them."""

    system: str
    chat_urls: dict[str, str]
    api_key: str | None = None
    pids: tuple[int, ...] = ()  # roots of the process trees whose CPU is the gateway's
    notes: dict[str, str] = field(default_factory=dict)  # how it was set up, for the report

    def chat_url(self, mode: Mode) -> str:
        return self.chat_urls[mode.name]


Launcher = Callable[[Mock, Path], AbstractContextManager[Endpoint]]


@contextmanager
def direct(mock: Mock, workdir: Path) -> Iterator[Endpoint]:
    yield Endpoint("direct", {m.name: mock.chat_url(m) for m in MODES})


def _gateway_urls(url: str) -> dict[str, str]:
    return {m.name: f"{url}/v1/chat/completions" for m in MODES}


def _started(proc: subprocess.Popen[bytes], url: str, log: Path, path: str = "/healthz") -> None:
    """Wait until `url` + `path` answers 200; GatewayBenchError with the log's tail if not."""
    try:
        wait_healthy(url, proc, START_TIMEOUT_S, path)
    except RuntimeError as exc:
        raise GatewayBenchError(f"{log.stem}: {exc}:\n{log_tail(log)}") from exc


# -- LiteLLM ------------------------------------------------------------------------------------


def ensure_litellm(venv: Path = LITELLM_VENV) -> Path:
    """The `litellm` command in `venv`, creating the venv on first use (about a minute and
    750 MB). It lives apart from strata's because its pins clash with strata's."""
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        print(f"installing {LITELLM_SPEC} into {venv} (first use, ~1-2 min)", file=sys.stderr)
        pip = [str(venv / "bin" / "pip"), "install", "-q", LITELLM_SPEC]
        for cmd in ([sys.executable, "-m", "venv", str(venv)], pip):
            if subprocess.run(cmd).returncode != 0:
                raise GatewayBenchError(f"could not install LiteLLM: {' '.join(cmd)} failed")
    return exe


def litellm_config(mock: Mock, master_key: str) -> dict[str, object]:
    """Master key auth and per-deployment rpm/tpm limits: LiteLLM's virtual keys and budgets
    need Prisma, whose engine download fails offline."""
    deployments = [
        {"model_name": m.model, "litellm_params": _litellm_params(mock, m)} for m in MODES
    ]
    return {"model_list": deployments, "general_settings": {"master_key": master_key}}


def _litellm_params(mock: Mock, mode: Mode) -> dict[str, object]:
    return {
        "model": f"openai/{mode.model}",
        "api_base": mock.base_url(mode),
        "api_key": "mock",  # the mock ignores it
        "rpm": NEVER_BINDING_RPM,
        "tpm": NEVER_BINDING_TPM,
    }


@contextmanager
def litellm(mock: Mock, workdir: Path) -> Iterator[Endpoint]:
    exe, port, key = ensure_litellm(), free_port(), "sk-strata-bench"
    config = workdir / "litellm.yaml"
    config.write_text(yaml.safe_dump(litellm_config(mock, key)))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no price list download
    cmd = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    log = workdir / "litellm.log"
    with launched(pinned(GATEWAY_CORE, [*cmd, "--num_workers", "1"]), log, env) as proc:
        url = f"http://127.0.0.1:{port}"
        _started(proc, url, log, "/health/liveliness")
        notes = {
            "version": LITELLM_SPEC,
            "auth": "master key (virtual keys need Prisma, which cannot install offline)",
            "limits": f"router rpm {NEVER_BINDING_RPM:,} / tpm {NEVER_BINDING_TPM:,} per model",
            "workers": "1 (uvicorn), default logging",
        }
        yield Endpoint("litellm", _gateway_urls(url), key, (proc.pid,), notes)


# -- strata -------------------------------------------------------------------------------------


def guard_path() -> str:
    """Which stage of the shipped detector decides the benchmark's user message, and how."""
    from strata.guard.classifier import default_model
    from strata.guard.sanitize import normalize

    model, text = default_model(), normalize(USER_MESSAGE)
    second = "MiniLM runs on every request" if model.passes_gate(text) else "MiniLM never runs"
    verdict = "flagged" if model.score(text) > model.threshold else "not flagged"
    return (
        f"on (defaults); the detector scores the message {model.score(text):.3f} against a "
        f"threshold of {model.threshold:.3f} ({verdict}); its first-stage logit "
        f"{model.first_stage(text):.2f} against the gate {model.gate:.2f}: {second}"
    )


def strata_config(mock: Mock, data_dir: Path, port: int, guard: bool) -> dict[str, object]:
    upstreams = [
        {"name": f"mock-{m.prefix.strip('/')}", "kind": "openai", "url": mock.base_url(m),
         "models": [m.model]}
        for m in MODES
    ]  # fmt: skip
    return {
        "data_dir": str(data_dir),
        "server": {"host": "127.0.0.1", "port": port},
        "gateway": {"engine": False},
        "guard": {"enabled": guard},
        "upstreams": upstreams,
    }


def strata_key(exe: Path, config: Path) -> str:
    """A key with per-key limits on but never binding (created through the running server's
    embedded PostgreSQL)."""
    cmd = [
        str(exe), "keys", "create", "--config", str(config), "--tenant", "bench",
        "--user", "bench", "--rpm", str(NEVER_BINDING_RPM), "--tpm", str(NEVER_BINDING_TPM),
        "--json",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    try:
        return str(json.loads(done.stdout)["key"])
    except (ValueError, KeyError, TypeError) as e:
        detail = f"status {done.returncode}\n{done.stdout[-1000:]}\n{done.stderr[-2000:]}"
        raise GatewayBenchError(f"strata keys create printed no key: {detail}") from e


def postmaster_pids(data_dir: Path) -> list[int]:
    """The embedded PostgreSQL's postmaster, from its `postmaster.pid` file (first line). It
    runs on the gateway core (the pinning is inherited) but in a session of its own under
    init, so it is not in the strata process's tree: its CPU is added as a second root."""
    return [int(f.read_text().split()[0]) for f in data_dir.rglob("postmaster.pid")]


def strata(mock: Mock, workdir: Path) -> AbstractContextManager[Endpoint]:
    """strata's gateway with its guard step off."""
    return _strata(mock, workdir, guard=False)


def strata_guard(mock: Mock, workdir: Path) -> AbstractContextManager[Endpoint]:
    """strata's gateway with its guard step at the defaults (the trained detector, PII, canary)."""
    return _strata(mock, workdir, guard=True)


@contextmanager
def _strata(mock: Mock, workdir: Path, guard: bool) -> Iterator[Endpoint]:
    exe, port, name = STRATA_EXE, free_port(), "strata-guard" if guard else "strata"
    config = workdir / "strata.yaml"
    config.write_text(yaml.safe_dump(strata_config(mock, workdir / "strata-data", port, guard)))
    log = workdir / "strata.log"
    with launched(pinned(GATEWAY_CORE, [str(exe), "serve", "--config", str(config)]), log) as proc:
        url = f"http://127.0.0.1:{port}"
        _started(proc, url, log)  # includes the embedded PostgreSQL's start
        notes = {
            "auth": "a strata key (strata keys create)",
            "limits": f"per-key rpm {NEVER_BINDING_RPM:,} / tpm {NEVER_BINDING_TPM:,}",
            "guard": guard_path() if guard else "off (hidden characters still refused)",
            "CPU counted": "the strata process tree and its embedded PostgreSQL",
        }
        key = strata_key(exe, config)
        pids = (proc.pid, *postmaster_pids(workdir / "strata-data"))
        yield Endpoint(name, _gateway_urls(url), key, pids, notes)


SYSTEMS: dict[str, Launcher] = {
    "direct": direct, "litellm": litellm, "strata": strata, "strata-guard": strata_guard,
}  # fmt: skip
