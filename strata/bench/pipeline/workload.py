"""Support-ticket documents and the pinned change mix, both generated from a seed.

`Workload(seed, documents)` holds the source table as the benchmark believes it to be:
`initial()` is the rows to load, `next_change()` draws the next row change and applies it to
that belief. Every block of ten changes holds exactly 4 text edits, 3 non-text edits, 2
inserts and 1 delete, in a seeded order. Text comes from fixed word lists and sentence
templates (no downloads); never edit them, or old runs are no longer repeatable. Nothing here
knows about SQL or the pipeline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Literal, TypeAlias

ChangeKind: TypeAlias = Literal["text_edit", "non_text_edit", "insert", "delete"]
KINDS: tuple[ChangeKind, ...] = ("text_edit", "non_text_edit", "insert", "delete")
BLOCK: tuple[ChangeKind, ...] = (
    *(("text_edit",) * 4),
    *(("non_text_edit",) * 3),
    *(("insert",) * 2),
    "delete",
)
MIN_WORDS, MAX_WORDS = 100, 300

ORGS = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka")
STATUSES = ("open", "pending", "on_hold", "solved", "closed")
_WHO = "the customer|their admin|a user|the billing contact|our support agent|the account owner"
_FEATURE = (
    "export button|login page|invoice email|search bar|mobile app|dashboard|webhook|API key|"
    "password reset|report builder|calendar sync|file upload|SSO setup|billing page"
)
_PROBLEM = (
    "fails with an error|times out|shows a blank screen|returns the wrong totals|"
    "is very slow|crashes on start|loses the last change|sends duplicate emails|"
    "rejects valid input|stopped working"
)
_WHEN = (
    "since the last update|every morning|after login|on large accounts|only in Firefox|"
    "for some users|when the network is slow|after a password change|at the end of the month"
)
_ACTION = (
    "clearing the cache|signing out and back in|a different browser|a new API key|"
    "restarting the app|turning off the ad blocker|reinstalling the app|a smaller file"
)
_TEMPLATES = (
    "{who} reports that the {feature} {problem} {when}.",
    "We tried {action} but the {feature} still {problem}.",
    "Error code E{code} appears whenever the {feature} is opened.",
    "This affects {count} users on the {org} account.",
    "Steps to reproduce: try {action}, then open the {feature}.",
    "Could you look at the {feature} before the next release?",
    "{who} says the problem started {when}.",
    "As a workaround we suggested {action} for now.",
)
_FIELDS = {
    "who": _WHO.split("|"),
    "feature": _FEATURE.split("|"),
    "problem": _PROBLEM.split("|"),
    "when": _WHEN.split("|"),
    "action": _ACTION.split("|"),
}
_REPLACEMENTS = sorted({f.split(" ")[0] for f in _FIELDS["feature"]})


@dataclass(frozen=True)
class Ticket:
    """One row of the source table `tickets`."""

    id: int
    org: str
    title: str
    body: str
    status: str
    priority: int


@dataclass(frozen=True)
class Change:
    """One row change: `before` is None for an insert, `after` None for a delete. `detail`
    says which edit (e.g. `append_sentence`, `status`)."""

    kind: ChangeKind
    detail: str
    before: Ticket | None
    after: Ticket | None

    @property
    def ticket_id(self) -> int:
        ticket = self.after or self.before
        assert ticket is not None
        return ticket.id


def sentence(rng: random.Random) -> str:
    template = rng.choice(_TEMPLATES)
    values = {name: rng.choice(options) for name, options in _FIELDS.items()}
    text = template.format(
        code=rng.randrange(100, 1000), count=rng.randrange(2, 500), org=rng.choice(ORGS), **values
    )
    return text[0].upper() + text[1:]


def body(rng: random.Random) -> str:
    """Sentences until the text holds between MIN_WORDS and MAX_WORDS words (a seeded target)."""
    target = rng.randint(MIN_WORDS, MAX_WORDS)
    sentences: list[str] = []
    words = 0
    while words < target:
        sentences.append(sentence(rng))
        words += len(sentences[-1].split())
    return " ".join(sentences)


def ticket(rng: random.Random, ticket_id: int) -> Ticket:
    feature, problem = rng.choice(_FIELDS["feature"]), rng.choice(_FIELDS["problem"])
    return Ticket(
        id=ticket_id,
        org=rng.choice(ORGS),
        title=f"{feature[0].upper()}{feature[1:]} {problem}",
        body=body(rng),
        status=rng.choice(STATUSES),
        priority=rng.randint(1, 4),
    )


def edit_text(rng: random.Random, text: str) -> tuple[str, str]:
    """(how, new text): append a sentence, insert one in the middle, or change one word."""
    sentences = text.split(". ")
    how = rng.choice(("append_sentence", "insert_sentence", "replace_word"))
    if how == "append_sentence":
        return how, f"{text} {sentence(rng)}"
    at = rng.randrange(len(sentences))
    if how == "insert_sentence":
        sentences.insert(at, sentence(rng).rstrip("."))
        return how, ". ".join(sentences)
    words = sentences[at].split(" ")
    which = rng.randrange(len(words))
    words[which] = rng.choice([w for w in _REPLACEMENTS if w != words[which]])
    sentences[at] = " ".join(words)
    return how, ". ".join(sentences)


def edit_other(rng: random.Random, old: Ticket) -> tuple[str, Ticket]:
    """(which column, new row): status, priority or the tenant (org) changes; text does not."""
    column = rng.choice(("status", "priority", "org"))
    if column == "status":
        return column, replace(old, status=rng.choice([s for s in STATUSES if s != old.status]))
    if column == "priority":
        return column, replace(old, priority=old.priority % 4 + 1)
    return column, replace(old, org=rng.choice([o for o in ORGS if o != old.org]))


class Workload:
    """The seeded documents and change stream (not thread-safe)."""

    def __init__(self, seed: int, documents: int) -> None:
        self._rng = random.Random(seed)
        self.tickets = {i: ticket(self._rng, i) for i in range(1, documents + 1)}
        self._initial = list(self.tickets.values())
        self._live = list(self.tickets)  # ids, for a uniform draw; swap-removed on delete
        self._slot = {ticket_id: i for i, ticket_id in enumerate(self._live)}
        self._next_id = documents + 1
        self._block: list[ChangeKind] = []

    def initial(self) -> list[Ticket]:
        """The rows the table starts with."""
        return list(self._initial)

    def next_change(self) -> Change:
        if not self._block:
            self._block = list(BLOCK)
            self._rng.shuffle(self._block)
        kind = self._block.pop()
        if kind == "insert" or not self._live:
            return self._insert()
        old = self.tickets[self._live[self._rng.randrange(len(self._live))]]
        if kind == "delete":
            return self._delete(old)
        if kind == "text_edit":
            how, text = edit_text(self._rng, old.body)
            return self._update(Change(kind, how, old, replace(old, body=text)))
        column, new = edit_other(self._rng, old)
        return self._update(Change(kind, column, old, new))

    def _insert(self) -> Change:
        new = ticket(self._rng, self._next_id)
        self._next_id += 1
        self.tickets[new.id] = new
        self._slot[new.id] = len(self._live)
        self._live.append(new.id)
        return Change("insert", "row", None, new)

    def _delete(self, old: Ticket) -> Change:
        index, last = self._slot.pop(old.id), self._live.pop()
        if last != old.id:
            self._live[index] = last
            self._slot[last] = index
        del self.tickets[old.id]
        return Change("delete", "row", old, None)

    def _update(self, change: Change) -> Change:
        assert change.after is not None
        self.tickets[change.after.id] = change.after
        return change
