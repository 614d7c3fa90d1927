"""The seeded tickets and change mix: repeatable, the right sizes, the pinned mix, and a
belief about the table that each change keeps true."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from strata.bench.pipeline.workload import MAX_WORDS, MIN_WORDS, Workload


def test_the_same_seed_gives_the_same_documents_and_changes() -> None:
    a, b = Workload(7, 50), Workload(7, 50)
    assert a.initial() == b.initial()
    assert [a.next_change() for _ in range(200)] == [b.next_change() for _ in range(200)]
    assert Workload(8, 50).initial() != a.initial()


def test_documents_hold_100_to_300_words_and_a_known_tenant() -> None:
    tickets = Workload(0, 300).initial()
    assert [t.id for t in tickets] == list(range(1, 301))
    words = [len(t.body.split()) for t in tickets]
    assert min(words) >= MIN_WORDS
    assert max(words) <= MAX_WORDS + 40  # the last sentence may cross the target
    assert sum(words) / len(words) > (MIN_WORDS + MAX_WORDS) / 2 - 20


def test_every_ten_changes_hold_the_pinned_mix() -> None:
    workload = Workload(1, 100)
    for _ in range(20):
        block = Counter(workload.next_change().kind for _ in range(10))
        assert block == {"text_edit": 4, "non_text_edit": 3, "insert": 2, "delete": 1}


def test_changes_do_what_their_kind_says() -> None:
    workload = Workload(2, 100)
    for _ in range(500):
        change = workload.next_change()
        before, after = change.before, change.after
        if change.kind == "insert":
            assert before is None and after is not None
            assert after.id not in {t.id for t in workload.initial()} or after.id > 100
        elif change.kind == "delete":
            assert before is not None and after is None
            assert before.id not in workload.tickets
        else:
            assert before is not None and after is not None and before != after
            same_text = (before.title, before.body) == (after.title, after.body)
            assert same_text == (change.kind == "non_text_edit")
            if change.kind == "text_edit":
                assert replace(after, body=before.body) == before  # only the body changed
            assert workload.tickets[after.id] == after or after.id not in workload.tickets


def test_the_workload_tracks_the_table() -> None:
    workload = Workload(3, 40)
    table = {t.id: t for t in workload.initial()}
    for _ in range(400):
        change = workload.next_change()
        if change.after is None:
            assert change.before is not None
            assert table.pop(change.before.id) == change.before
        else:
            assert table.get(change.after.id) == change.before
            table[change.after.id] = change.after
    assert table == workload.tickets
