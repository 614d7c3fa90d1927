"""The `fair` waiting-queue policy: start-time fair queueing over tokens, per fairness key.

Each request carries an opaque `fairness_key` and a `weight` (set by whoever sends it, e.g. the
gateway; `strata.fairness` holds the accounting). The next request admitted is the head of the
key with the smallest virtual start tag, so a key that floods the queue cannot starve the others:
a key with one waiting request is admitted within a few admissions whatever the flood's size.

What a key is charged: the tokens actually served to it, weighted (prompt tokens when a request
is first admitted, each output token as it is generated), not `max_tokens`. A reservation would
punish callers that leave `max_tokens` at its default (the rest of the context window); served
tokens are what the replica really spent on them. Tokens recomputed after a preemption are the
engine's cost, not the key's, and are not charged again.

Requests without a key share `strata.fairness.DEFAULT_KEY`; with one key the order is exactly
FCFS, so this policy costs a single-tenant engine nothing. A preempted request goes back to the
front of its key. Like every queue policy it is driven under the engine lock.
"""

from __future__ import annotations

from collections.abc import Iterator

from strata.engine.request import Request
from strata.fairness import DEFAULT_KEY, FairQueue


class FairTokenQueue:
    """`WaitingQueue` in start-time fair order by tokens served per `Request.fairness_key`.

    It remembers the requests it handed out until they finish, to charge their keys for each
    token they are served: the charge is brought up to date before every `peek`/`pop`.
    """

    def __init__(self) -> None:
        self._queue: FairQueue[Request] = FairQueue()
        self._charged: dict[Request, int] = {}  # admitted, unfinished -> tokens charged so far

    def push(self, request: Request) -> None:
        self._queue.push(key_of(request), request)

    def push_front(self, request: Request) -> None:
        self._queue.push_front(key_of(request), request)

    def peek(self) -> Request | None:
        self._settle()
        return self._queue.peek()

    def pop(self) -> Request:
        self._settle()
        _, request = self._queue.pop()
        self._charged.setdefault(request, 0)
        self._charge(request)
        return request

    def remove(self, request: Request) -> None:
        self._queue.remove(key_of(request), request)

    @property
    def num_keys(self) -> int:
        """Fairness keys with at least one waiting request."""
        return self._queue.num_keys

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self) -> Iterator[Request]:
        return iter(self._queue)

    def _settle(self) -> None:
        """Charge every admitted request's key for the tokens it gained since last time."""
        for request in list(self._charged):
            self._charge(request)
            if request.is_finished:
                del self._charged[request]

    def _charge(self, request: Request) -> None:
        served = request.num_tokens - self._charged[request]
        if served > 0:
            self._queue.clock.charge(key_of(request), served, request.weight)
            self._charged[request] = request.num_tokens


def key_of(request: Request) -> str:
    return request.fairness_key or DEFAULT_KEY
