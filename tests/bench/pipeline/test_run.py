"""What the pipeline benchmark attributes to each kind of change when writes hold many."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

from strata.bench.pipeline.run import Stepper
from strata.bench.pipeline.workload import Change, Ticket
from strata.pipeline.indexer import ApplyStats


def _ticket(ticket_id: int, body: str = "Printing fails.") -> Ticket:
    return Ticket(ticket_id, "acme", "Printer", body, "open", 1)


def _stepper(applied: dict[int, ApplyStats], sent: list[tuple[int, Change]]) -> Stepper:
    chunker = SimpleNamespace(chunk=lambda text: [text])  # one chunk per document
    mapper = SimpleNamespace(render=lambda texts: texts["body"])
    pipeline: Any = SimpleNamespace(
        applied=applied, mapper=mapper, indexer=SimpleNamespace(chunker=chunker)
    )
    return Stepper(pipeline, None, None, None, "", sent)  # type: ignore[arg-type]


def test_a_rows_work_in_one_write_goes_to_the_change_that_brought_text() -> None:
    write = ApplyStats(embedded=1, embedded_by_key=Counter({"7": 1}))
    sent = [
        (1, Change("insert", "insert", None, _ticket(7))),
        (2, Change("non_text_edit", "status", _ticket(7), _ticket(7))),
    ]
    costs = _stepper({1: write, 2: write}, sent)._costs()
    assert costs["insert"].embedded == 1
    assert costs["non_text_edit"].embedded == 0 and costs["non_text_edit"].changes == 1


def test_separate_writes_keep_their_own_work() -> None:
    first = ApplyStats(embedded=1, embedded_by_key=Counter({"7": 1}))
    second = ApplyStats(reused=1, reused_by_key=Counter({"7": 1}))
    sent = [
        (1, Change("text_edit", "append_sentence", _ticket(7), _ticket(7, "New text."))),
        (2, Change("non_text_edit", "status", _ticket(7), _ticket(7))),
    ]
    costs = _stepper({1: first, 2: second}, sent)._costs()
    assert costs["text_edit"].embedded == 1
    assert costs["non_text_edit"].embedded == 0 and costs["non_text_edit"].reused == 1
