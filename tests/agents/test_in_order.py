"""InOrder: a partition's events in offset order; a real gap passed over, events fetched before a seek never."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from agents.keeper import InOrder

TP = ("stormdrain.incidents", 2)


class Consumer:
    """What InOrder reads of faust's consumer: the assignment, committed offsets, and seeks it asks for."""

    def __init__(self, committed: int):
        self._committed_offset = {TP: committed}
        self.seeks: list[int] = []
        self.assigned = {TP}

    def assignment(self) -> set:
        return self.assigned

    async def seek(self, tp, offset: int) -> None:
        self.seeks.append(offset)


def events(*offsets: int, tp=TP) -> list:
    return [SimpleNamespace(message=SimpleNamespace(tp=tp, offset=o)) for o in offsets]


def admit(in_order: InOrder, *offsets: int, tp=TP) -> list[int]:
    return [e.message.offset for e in asyncio.run(in_order.admit(events(*offsets, tp=tp)))]


def test_records_compacted_away_under_the_committed_offset_are_passed_over_after_three_reads():
    consumer = Consumer(committed=3)
    in_order = InOrder(SimpleNamespace(consumer=consumer))
    for _ in range(InOrder.SEEKS):
        assert admit(in_order, 2833, 2834) == []
    assert consumer.seeks == [3, 3, 3]
    assert admit(in_order, 2833, 2834, 2836) == [2833, 2834]
    assert consumer.seeks == [3, 3, 3, 2835]  # the next gap is read again from its own start


def test_events_fetched_before_a_seek_never_count_as_a_gap_and_nothing_is_skipped():
    consumer = Consumer(committed=50)
    in_order = InOrder(SimpleNamespace(consumer=consumer))
    for first in range(100, 100 + 2000 * 6, 2000):  # six stale batches, each further on
        assert admit(in_order, *range(first, first + 2000)) == []
    assert admit(in_order, 50, 51, 52) == [50, 51, 52]
    assert admit(in_order, 52, 53) == [53]  # one taken before is not taken twice


def test_an_event_of_a_partition_no_longer_assigned_is_left_alone():
    consumer = Consumer(committed=0)
    in_order = InOrder(SimpleNamespace(consumer=consumer))
    assert admit(in_order, 7, tp=("stormdrain.incidents", 5)) == []
    assert consumer.seeks == []
