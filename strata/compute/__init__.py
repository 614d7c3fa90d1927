"""Compute planning: how much GPU memory a model needs, and what serving a traffic profile costs.

`strata plan memory` (`memory`, `explain`) turns a model shape, a weight precision, a GPU and a
context length into weight memory, KV-cache bytes and the largest concurrency before the KV
cache spills; for strata's own engine it predicts the exact block count the engine allocates.
`strata plan capacity` (`traffic`, `capacity`) turns requests per hour, per-replica capacity and
the shared `pricing` table into replicas per hour and the monthly cost and risk of each
purchasing strategy.

Everything here is arithmetic on numbers it is given: it serves nothing and measures nothing.
It reads a model's `config.json` through the engine's own parser (a torch-free module); only
planning for strata's engine (`--gpu cpu`) imports the engine's sizing functions, and torch
with them.
"""
