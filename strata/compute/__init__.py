"""Compute planning: how much GPU memory a model needs, and what serving a traffic profile costs.

`strata plan memory` (`memory`, `explain`) turns a model shape, a weight precision, a GPU and a
context length into weight memory, KV-cache bytes and the largest concurrency before the KV
cache spills; for strata's own engine it predicts the exact block count the engine allocates.
`strata plan capacity` (`traffic`, `capacity`) turns requests per hour, per-replica capacity and
the shared `pricing` table into replicas per hour and the monthly cost and risk of each
purchasing strategy. `strata plan batching` (`step_time`, `profile`, `simulator`, `batching`)
runs the engine's own scheduler on simulated time, each step priced by a step-time profile
measured on the engine, and picks the batch cap and batching window for a latency SLO.

Everything here is arithmetic on numbers it is given: it serves nothing and measures nothing.
It reads a model's `config.json` through the engine's own parser and simulates with the
engine's scheduler (torch-free modules); only planning for strata's engine (`--gpu cpu`)
imports the engine's sizing functions, and torch with them.
"""
