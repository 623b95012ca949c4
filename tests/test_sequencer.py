"""The ordering rule alone (``notify.sequencer``): no database, no connections.

A fake store plays the database: ``committed`` ids are found by the reads; the
sequencer's releases are recorded in order.
"""

import asyncio
from dataclasses import dataclass

import pytest

from notify.realtime.sequencer import Sequencer


@dataclass(frozen=True)
class E:
    id: int


class Store:
    """The committed ids, and what the sequencer released (batches, in order)."""

    def __init__(self, *committed: int):
        self.committed = set(committed)
        self.batches: list[list[int]] = []
        self.reads = 0

    async def dispatch(self, entries):
        self.batches.append([e.id for e in entries])

    async def read_range(self, low, high, limit):
        self.reads += 1
        return [E(pk) for pk in sorted(self.committed) if low < pk <= high][:limit]

    async def read_ids(self, ids):
        self.reads += 1
        return [E(pk) for pk in sorted(self.committed & set(ids))]

    def released(self) -> list[int]:
        return [pk for batch in self.batches for pk in batch]

    def sequencer(self, **kwargs) -> Sequencer:
        kwargs.setdefault("grace", 0.01)
        return Sequencer(self.dispatch, self.read_range, self.read_ids, **kwargs)


async def settle():
    await asyncio.sleep(0.05)


async def test_in_order_pushes_are_released_at_once():
    store = Store(11, 12)
    seq = store.sequencer()
    await seq.start(10)
    await seq.add([E(11)])
    await seq.add([E(12)])
    assert store.batches == [[11], [12]]
    assert store.reads == 0


async def test_a_push_above_a_gap_waits_and_the_gap_is_read():
    store = Store(11, 12)
    seq = store.sequencer()
    await seq.start(10)
    await seq.add([E(12)])  # 11's push is lost
    assert store.batches == []
    await settle()
    assert store.released() == [11, 12]
    assert seq.high == 12


async def test_a_batch_after_an_unresolved_id_is_released_as_one_ordered_batch():
    # Issue 9, path 1: N is burnt by a rollback; an announcement N+1 and a personal
    # N+2 arrive while N is unresolved. They must leave together, N+1 first.
    store = Store(12, 13)
    seq = store.sequencer()
    await seq.start(10)
    await seq.add([E(13)])
    await seq.add([E(12)])
    await settle()
    assert store.batches == [[12, 13]]
    assert seq.absent.keys() == {11}


async def test_an_absent_id_that_commits_later_is_released_before_a_later_entry():
    # 11 was open when the gap was read; its push is lost; 13 of the same stream can
    # only commit after 11 did (stream locks), so 11 must leave before 13.
    store = Store(12)
    seq = store.sequencer()
    await seq.start(10)
    await seq.add([E(12)])
    await settle()
    assert store.released() == [12]
    store.committed |= {11, 13}
    await seq.add([E(13)])
    assert store.batches[-1] == [11, 13]
    assert seq.absent == {}


async def test_a_late_push_of_an_absent_id_is_released_once():
    store = Store(12)
    seq = store.sequencer()
    await seq.start(10)
    await seq.add([E(12)])
    await settle()
    store.committed.add(11)
    await seq.add([E(11)])
    assert store.released() == [12, 11]
    assert seq.absent == {}


async def test_the_tail_releases_what_no_push_announced_in_order():
    # The in-memory layer in another process, or pushes lost at the tail of a burst.
    store = Store(11, 12, 14)
    seq = store.sequencer()
    await seq.start(10)
    await seq.tail(14)
    assert store.released() == [11, 12, 14]
    assert seq.high == 14 and seq.absent.keys() == {13}
    # 13 commits later (another process): the next tail finds it.
    store.committed.add(13)
    await seq.tail(14)
    assert store.released() == [11, 12, 14, 13]


async def test_catch_up_with_a_live_push_arriving_first_loses_nothing():
    # Issue 9, path 2: X was stored while the layer was down (push lost); the first
    # live push Y after the layer is back must not let X be skipped.
    store = Store(11, 12)
    seq = store.sequencer(grace=10)  # the tail, not the gap timer, resolves it
    await seq.start(10)
    await seq.add([E(12)])  # live push Y arrives before the catch-up read
    assert store.batches == []
    await seq.tail(12)  # the catch-up
    assert store.released() == [11, 12]


async def test_a_capped_read_resolves_only_up_to_its_last_row():
    store = Store(*range(11, 31))
    seq = store.sequencer(limit=5)
    await seq.start(10)
    await seq.tail(30)
    assert store.released() == list(range(11, 31))
    assert seq.absent == {}


async def test_absent_ids_are_forgotten_after_the_recheck_window():
    now = [0.0]
    store = Store(12)
    seq = store.sequencer(recheck=30, clock=lambda: now[0])
    await seq.start(10)
    await seq.tail(12)
    assert seq.absent.keys() == {11}
    now[0] = 31
    store.committed.add(13)
    reads = store.reads
    await seq.add([E(13)])
    assert seq.absent == {} and store.reads == reads


async def test_a_failed_read_changes_nothing_and_is_retried():
    store = Store(11, 12)
    seq = store.sequencer()
    failing = [True]
    real = store.read_range

    async def flaky(low, high, limit):
        if failing[0]:
            failing[0] = False
            raise ConnectionError("database away")
        return await real(low, high, limit)

    seq._read_range = flaky
    await seq.start(10)
    await seq.add([E(12)])
    await settle()
    await settle()
    assert store.released() == [11, 12]


@pytest.mark.parametrize("order", [[13, 12, 11], [12, 13, 11], [11, 13, 12]])
async def test_any_arrival_order_is_released_in_id_order(order):
    store = Store(11, 12, 13)
    seq = store.sequencer(grace=10)
    await seq.start(10)
    for pk in order:
        await seq.add([E(pk)])
    assert store.released() == [11, 12, 13]
