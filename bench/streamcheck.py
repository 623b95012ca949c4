"""What a resuming client is owed, and the check of what it got (issue 9).

Shared by the chaos test (tests/test_chaos.py) and the soak (bench/soak.py).

A **resume chain** is one client's life across reconnects: it starts at a position
(``since=0``, or the cursor of its first ``hello`` when it connected without ``since``)
and afterwards always resumes with the last id it saw, whatever transport or process it
uses next. docs/protocol.md §1: it is then owed every item of its user's stream after its start,
in increasing order, each exactly once.
"""

from dataclasses import dataclass, field

import requests

PAGE = 500  # docs/protocol.md §4: the largest long-poll limit


def read_stream(base_url: str, token: str, *, since: int = 0, timeout: float = 30.0) -> list[dict]:
    """Return the notification objects of a user's stream after ``since``, oldest first,
    read as the contract defines it: long-poll ``timeout=0``, paging with ``limit`` from
    the returned cursor until a page is empty.

    Raises:
        requests.HTTPError: a page answered other than 200.
    """
    items: list[dict] = []
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        while True:
            answer = session.get(f"{base_url}/notify/poll/", params={"since": since, "timeout": 0, "limit": PAGE},
                                 timeout=timeout)
            answer.raise_for_status()
            body = answer.json()
            if not body["notifications"]:
                return items
            items += body["notifications"]
            since = body["cursor"]


@dataclass
class Tally:
    """Totals over resume chains: ``expected`` (client, item) deliveries, ``delivered``,
    ``lost`` (owed, never received), ``duplicated`` (received again within a chain),
    ``out_of_order`` (received after a larger id), ``unexpected`` (not owed: another
    stream's, or at or below the chain's start), and every such fault in ``faults`` as
    ``(kind, chain label, id)``."""

    chains: int = 0
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unexpected: int = 0
    faults: list[tuple[str, str, int]] = field(default_factory=list)

    def add(self, label: str, received: list[int], stream: list[int], start: int) -> None:
        """Check one chain: ``received`` ids in arrival order against its user's final
        ``stream`` (ids, oldest first), of which it is owed those above ``start``."""
        owed = [pk for pk in stream if pk > start]
        owed_set, seen, top = set(owed), set(), start
        self.chains += 1
        self.expected += len(owed)
        for pk in received:
            if pk in seen:
                self._count("duplicated", label, pk)
                continue
            seen.add(pk)
            if pk not in owed_set:
                self._count("unexpected", label, pk)
            elif pk < top:
                self._count("out_of_order", label, pk)
            top = max(top, pk)
        self.delivered += len(seen & owed_set)
        for pk in owed:
            if pk not in seen:
                self._count("lost", label, pk)

    def _count(self, kind: str, label: str, pk: int) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.faults.append((kind, label, pk))

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order or self.unexpected)

    def line(self) -> str:
        return (f"{self.chains} chains, {self.expected:,} expected deliveries, {self.delivered:,} delivered: "
                f"{self.lost} lost, {self.duplicated} duplicated, {self.out_of_order} out of order, "
                f"{self.unexpected} unexpected")
