"""A warning that is logged at most once per interval, however often it happens."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class ThrottledWarning:
    """Logs `warning` at most once every `interval_s`, counting the ones it held back.

    A store outage fails every request; one line per request would bury the log.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._next_at = float("-inf")
        self._held_back = 0

    def warning(self, message: str, *args: object) -> None:
        now = self._clock()
        if now < self._next_at:
            self._held_back += 1
            return
        if self._held_back:
            message += f" ({self._held_back} more like this since the last one)"
        self._held_back = 0
        self._next_at = now + self._interval_s
        self._logger.warning(message, *args)
