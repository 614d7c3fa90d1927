"""Load generation and side-by-side benchmarks (`strata bench ...`).

Results are written as JSON plus a Markdown table under docs/benchmarks/, with the command
line that produced them.
"""
