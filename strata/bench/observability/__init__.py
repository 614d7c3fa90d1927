"""Observability, accuracy and overhead: `strata bench observability`.

Accuracy: `strata bench serve`'s load generator drives a gateway with its built-in engine at a
modest rate; each request's client-side TTFT is matched by `x-request-id` to the usage ledger's
`ttft_ms` and to the engine's own trace. Overhead: one engine serves the same workload with its
per-request instrumentation off, on, and on with OpenTelemetry, in interleaved rounds; the
median per-round throughput ratio and its bootstrap interval say whether recording costs < 2%.

    stats.py      paired ratios, bootstrap interval, verdict; matching by request id (pure)
    otlp_sink.py  an in-process OTLP/HTTP receiver (counts exports; engine TTFT from traces)
    twin.py       the engine server with one app per instrumentation setting (a child process)
    processes.py  starting the twin server and the gateway; reading the ledger
    accuracy.py   the accuracy run
    overhead.py   the overhead rounds
    report.py     JSON summary and the Markdown page
    main.py       `main(argv)`
"""
