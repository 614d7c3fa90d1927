"""A live progress bar on stderr for benchmark runs: one bar per load level or sweep probe."""

from __future__ import annotations

import sys

from tqdm import tqdm

from strata.bench.records import RequestRecord


class ProgressBars:
    """Opens a bar per level; each bar counts finished requests and shows the failures."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: tqdm[None] | None = None
        self._failed = 0

    def start(self, description: str, total: int | None) -> ProgressBars:
        self.close()
        self._failed = 0
        self._bar = tqdm(
            desc=description,
            total=total,
            unit="req",
            file=sys.stderr,
            disable=not self.enabled,
            dynamic_ncols=True,
        )
        return self

    def __call__(self, record: RequestRecord) -> None:
        """Marks one request finished; the `on_done` hook of `run_load`."""
        if self._bar is None:
            return
        if not record.ok:
            self._failed += 1
            self._bar.set_postfix(failed=self._failed, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
