"""Failures inside the upstream package; none of them leaves it.

`TransportError`s say that an exchange with an upstream ended without a complete answer. The
router turns them (and retryable statuses) into `AttemptFailed`, fails over, and finally raises
one of strata's own errors (`UpstreamError`, `OverloadedError`) to the gateway. Messages name
what went wrong in words a caller may read: no credentials, no hosts or addresses (logs name
the upstream).

    TransportError
    ├── ConnectError        the connection could not be opened (refused, unreachable, timed out)
    ├── DeadlineExceeded    the call's deadline passed (waiting for a connection or an answer)
    └── ConnectionClosed    the connection broke or the answer was malformed
        └── StaleConnection a pooled keep-alive connection the server had closed: safe to resend
"""

from __future__ import annotations

from typing import Literal


class TransportError(Exception):
    """An exchange ended without a complete answer."""


class ConnectError(TransportError):
    pass


class DeadlineExceeded(TransportError):
    pass


class ConnectionClosed(TransportError):
    pass


class StaleConnection(ConnectionClosed):
    """Closed before any byte of the answer arrived on a reused connection."""


FailureKind = Literal["failed", "overloaded", "timeout"]


class AttemptFailed(Exception):
    """One attempt at one upstream failed in a way worth trying elsewhere.

    `kind`: "overloaded" for a 429/503 answer (its Retry-After, in seconds, in `retry_after_s`),
    "timeout" when the deadline passed, else "failed". `counts` says whether it counts against
    the upstream's circuit breaker (a 429 does not: the upstream works, it is only busy).
    """

    def __init__(
        self,
        upstream: str,
        reason: str,
        *,
        kind: FailureKind = "failed",
        counts: bool = True,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{upstream}: {reason}")
        self.upstream = upstream
        self.reason = reason
        self.kind = kind
        self.counts = counts
        self.retry_after_s = retry_after_s
