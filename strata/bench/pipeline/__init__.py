"""The CDC pipeline under load: `strata bench pipeline`.

A seeded table of support tickets in an embedded PostgreSQL primary (`wal_level = logical`) is
backfilled through a real `SourcePipeline` with the bundled MiniLM embedder, then changed with
a pinned mix (40% text edits, 30% non-text edits, 20% inserts, 10% deletes) at stepped rates.
Measured: backfill throughput, freshness percentiles per rate (the pipeline's own samples), and
embeddings computed per kind of change next to a whole-document re-embed.

    workload.py   tickets and the change mix (seeded; no SQL)
    table.py      the source table: create + COPY, one change per transaction
    primary.py    the primary and strata's store, embedded, in a temp dir
    run.py        backfill → rate steps → results
    report.py     JSON summary and the Markdown page
    main.py       `main(argv)`
"""
