"""Prefix-aware routing against round-robin: `strata bench routing`.

Two strata engine servers serve one model behind strata's router. A shared-prefix workload
(a few long system prompts / RAG contexts, multi-turn conversations on each, conversations
arriving as a Poisson process) runs once per routing policy, each run with its own prompts so
that no run finds another's blocks cached. Measured per policy: the engines' prefix-hit rate in
tokens (from each reply's usage), TTFT p50/p95, end-to-end latency and throughput, and for
prefix-aware routing the router's own decisions and predicted hits.

Modules: `workload` (the conversations and their arrival times), `cluster` (the engine
processes), `run` (one policy's run through a `Router`), `main` (the command, the report).
"""
