"""Observability: metrics the other layers report into.

A leaf package: it imports no `gateway` or `engine` module. What it needs from them (engine
stats, per-request deltas) it takes as parameters typed by small Protocols.
"""
