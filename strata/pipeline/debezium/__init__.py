"""Debezium's change events from a broker → the same index as the direct source.

For teams that already run Debezium: a `kind: debezium` pipeline source reads the JSON change
events Debezium Server publishes (NATS JetStream, Redis Streams) instead of a replication slot,
and applies them with the same mapping, chunk hashes and exactly-once effect.

    broker.Broker                   JetStream durable pull consumer / Redis consumer group
    events.decode                   one message → RowChange / TruncateChange (values as text)
    values.text_value               Debezium's encodings → PostgreSQL's text form
    grouping.Grouper                events → whole transactions (by source.txId), snapshots
    pipeline.DebeziumPipeline       the loop: fetch → group → Indexer.apply → ack

It never connects to the user's primary database.
"""

from __future__ import annotations
