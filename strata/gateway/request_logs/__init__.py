"""Request logs: the prompts and answers of tenants an admin opted in, redacted with the guard's
detectors before they are stored, grouped by user, end user and session, scored by the
application (`POST /v1/feedback`), searchable (`/admin/logs`, `strata logs`) and purged after
their retention.

    transcript  what one call said, captured on the hot path (raw, bounded)
    entry       a finished call as a log row, and the redaction it gets when written
    service     the gateway's part: transcripts, the background writer, the retention purge
    tenants     which tenants are logged (the store's setting and the gateway's copy)
    store       search, show, purge and delete
    feedback    the feedback body and its store
    routes      the HTTP routes; commands: `strata logs`

Kept import-free here: `strata.gateway.call` imports `transcript`, and `service` imports it.
"""
