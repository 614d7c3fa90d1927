"""Spot failover under load: `strata bench failover` and the chaos test share this harness.

Two strata engine servers serve one model behind strata's gateway, one marked `spot`, one
`on-demand`. Closed-loop clients send a mix of streamed and non-streamed requests; partway
through, the spot server is killed with SIGKILL (no notice). Measured: requests that failed
before any byte reached their client (must be zero: they are retried elsewhere), streams cut
after content (must end with a clean error event), and how long the gateway took to take the
dead upstream out of rotation and to serve new traffic from the fallback.
"""
