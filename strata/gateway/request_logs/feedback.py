"""`POST /v1/feedback`: a score an application posts back for one of its requests.

    {"request_id": "req-…", "score": 1, "name": "thumbs", "comment": "…"}

`request_id` is the `x-request-id` the gateway answered with; `score` is a finite number in
[-100, 100] (thumbs as 0/1 or -1/1, stars 1-5, percentages); `name` (default "score") names
the kind of score: one score per request and name, posting again replaces it. `comment` is up
to 2,000 characters and is redacted like the logs. A key may score only its own tenant's
logged requests: any other id is a 404 that says nothing about whether it exists elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from strata.store.database import Pool

MIN_SCORE, MAX_SCORE = -100.0, 100.0
MAX_COMMENT_CHARS = 2000
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")  # as strata.gateway.request_id accepts
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")


class FeedbackBody(BaseModel):
    """The request body; JSON types only (a score of "1" or true is refused)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str
    score: float = Field(ge=MIN_SCORE, le=MAX_SCORE, allow_inf_nan=False)
    name: str = "score"
    comment: str | None = Field(None, max_length=MAX_COMMENT_CHARS)

    @field_validator("request_id")
    @classmethod
    def _request_id(cls, value: str) -> str:
        if _REQUEST_ID.fullmatch(value) is None:
            raise ValueError("must be the x-request-id of a response: 1-128 of A-Z a-z 0-9 . _ : -")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if _NAME.fullmatch(value) is None:
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-', starting with one "
                             "of the first two")  # fmt: skip
        return value


@dataclass(frozen=True)
class Score:
    """A stored score, as the endpoint answers it."""

    request_id: str
    name: str
    score: float
    comment: str | None
    created_at: datetime


async def put_score(
    pool: Pool, tenant: str, key_id: str, body: FeedbackBody, comment: str | None
) -> Score:
    """Store (or replace) the score; `comment` is the body's, already redacted."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            _UPSERT_SQL, (tenant, body.request_id, body.name, body.score, comment, key_id)
        )
        row = await cursor.fetchone()
    assert row is not None
    return Score(body.request_id, body.name, body.score, comment, row[0])


_UPSERT_SQL = """
INSERT INTO request_log_feedback (tenant, request_id, name, score, comment, key_id)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant, request_id, name) DO UPDATE
    SET score = EXCLUDED.score, comment = EXCLUDED.comment, key_id = EXCLUDED.key_id,
        created_at = now()
RETURNING created_at
"""
