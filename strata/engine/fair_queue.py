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

Ordering the queue is not enough when the batch is full of one key's long answers: a light key's
request would still wait for one of them to finish (a whole answer's time). So, with the batch
full, the batch's slots are shared by weight among the keys that want them (running or at the
head of the queue): when the head's key holds fewer slots than its share, the newest request of
the key furthest over its share gives up its slot (`displaced_by_head`). It is preempted and
recomputed later, cheaply, since its full KV blocks stay in the prefix cache. Keys at their share
never displace each other, so slots do not change hands back and forth.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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

    def displaced_by_head(self, running: Sequence[Request]) -> Request | None:
        """With the batch (`running`) full: the newest request of the key furthest over its
        weighted share of the slots, when the waiting head's key holds less than its share;
        else None. Shares are among the running keys and the head's."""
        head = self.peek()
        if head is None:
            return None
        held: dict[str, int] = {}
        weights: dict[str, float] = {key_of(head): head.weight}
        for request in running:
            key = key_of(request)
            held[key] = held.get(key, 0) + 1
            weights[key] = max(weights.get(key, 0.0), request.weight)
        total = sum(weights.values())

        def excess(key: str) -> float:  # slots held beyond the key's share of the batch
            return held.get(key, 0) - len(running) * weights[key] / total

        if excess(key_of(head)) > -1.0:  # one more slot would put the head's key over its share
            return None
        over = max(held, key=excess)
        if excess(over) <= 0:
            return None
        return max((r for r in running if key_of(r) == over), key=lambda r: r.arrival_time)

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
