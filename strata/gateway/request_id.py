"""The `x-request-id` a request carries through the gateway, the upstream, the ledger and the logs.

A caller's id is kept when it is short and plain (so it can be logged and grepped safely);
anything else is replaced by a fresh one, never echoed back.
"""

from __future__ import annotations

import re
from uuid import uuid4

HEADER = "x-request-id"
_ACCEPTED = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id(given: str | None) -> str:
    """The caller's id when it is 1-128 characters of [A-Za-z0-9._:-], else a new one."""
    if given is not None and _ACCEPTED.fullmatch(given):
        return given
    return f"req-{uuid4().hex}"
