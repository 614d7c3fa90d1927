"""The SQL each change becomes: an UPDATE sets only the columns that changed."""

from __future__ import annotations

from dataclasses import replace

from strata.bench.pipeline.table import statement
from strata.bench.pipeline.workload import Change, Ticket

TICKET = Ticket(7, "acme", "Login page times out", "It times out.", "open", 2)


def test_an_insert_writes_every_column() -> None:
    sql, params = statement(Change("insert", "row", None, TICKET))
    assert sql.startswith("INSERT INTO tickets (id, org, title, body, status, priority)")
    assert params == (7, "acme", "Login page times out", "It times out.", "open", 2)


def test_a_delete_names_the_key() -> None:
    assert statement(Change("delete", "row", TICKET, None)) == (
        "DELETE FROM tickets WHERE id = %s",
        (7,),
    )


def test_an_update_sets_only_what_changed() -> None:
    after = replace(TICKET, status="solved", priority=3)
    sql, params = statement(Change("non_text_edit", "status", TICKET, after))
    assert sql == "UPDATE tickets SET status = %s, priority = %s WHERE id = %s"
    assert params == ("solved", 3, 7)
