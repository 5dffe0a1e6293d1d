"""Live states of one table, kept in memory and saved now and then, with the events they include.

Saving a large state after every batch would cost more than the work itself,
so the agents save every `save_every` seconds and acknowledge an event only
once a saved state includes it: a crash or a rebalance re-reads what was not
saved, and the offsets inside each state skip what was. Outputs are flushed to
the broker before any state that produced them is saved, so a restart never
finds a state whose outputs were lost.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import faust

from agents.app import on_partition_of

log = logging.getLogger("stormdrain.worker")


@dataclass
class Entry:
    """One key's live state, the partition it lives on, and whether it changed since the last save."""

    key: str
    partition: int
    value: Any
    dirty: bool = False
    extra: dict = field(default_factory=dict)


class Keeper:
    """A write-behind cache over one faust table; entries are dropped when their partition leaves."""

    def __init__(self, table: faust.Table, decode: Callable[[bytes], Any], encode: Callable[[Entry], bytes]):
        self.table = table
        self.decode = decode
        self.encode = encode
        self.entries: dict[tuple[int, str], Entry] = {}

    def get(self, key: str, event: faust.EventT) -> Entry | None:
        """The live entry of `key` on the event's partition, loaded from the table the first time."""
        partition = event.message.partition
        entry = self.entries.get((partition, key))
        if entry is None:
            with on_partition_of(event):
                raw = self.table.get(key)
            if raw is None:
                return None
            entry = self.entries[(partition, key)] = Entry(key, partition, self.decode(raw))
        return entry

    def add(self, key: str, event: faust.EventT, value: Any) -> Entry:
        entry = Entry(key, event.message.partition, value, dirty=True)
        self.entries[(entry.partition, key)] = entry
        return entry

    def save(self, anchors: dict[int, faust.EventT]) -> int:
        """Write every changed entry to its partition; return how many were written."""
        written = 0
        for entry in self.entries.values():
            if entry.dirty and entry.partition in anchors:
                with on_partition_of(anchors[entry.partition]):
                    self.table[entry.key] = self.encode(entry)
                entry.dirty = False
                written += 1
        return written

    def forget(self, partitions: Iterable[int], keep: Callable[[Entry], bool] = lambda _: False) -> None:
        """Drop entries of partitions this worker no longer owns (or that are done with)."""
        gone = set(partitions)
        self.entries = {k: e for k, e in self.entries.items() if e.partition not in gone or keep(e)}


class Held:
    """Events taken but not yet acknowledged, by partition, in the order they came."""

    def __init__(self) -> None:
        self.events: dict[int, list[faust.EventT]] = defaultdict(list)
        self.last_save = time.monotonic()

    def hold(self, event: faust.EventT) -> None:
        self.events[event.message.partition].append(event)

    def anchors(self) -> dict[int, faust.EventT]:
        return {p: events[-1] for p, events in self.events.items() if events}

    def count(self) -> int:
        return sum(len(events) for events in self.events.values())

    def due(self, every: float, most: int) -> bool:
        return time.monotonic() - self.last_save >= every or self.count() >= most

    async def release(self, stream: faust.StreamT, still_needed: Callable[[int], set[int]]) -> None:
        """Acknowledge every held event that no live state still needs."""
        for partition, events in self.events.items():
            needed = still_needed(partition)
            kept = [e for e in events if e.message.offset in needed]
            for event in events:
                if event.message.offset not in needed:
                    await stream.ack(event)
            self.events[partition] = kept
        self.last_save = time.monotonic()

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.events.pop(partition, None)


class InOrder:
    """Lets a partition's events through in offset order, from the committed offset on.

    The agents skip records by offset, so they must see each partition whole
    and in order. Faust can hand over events out of that order around a
    rebalance (fetched before its seek to the committed offsets, or past a
    partition it never committed); an event ahead of the next expected offset
    makes the consumer read again from there, and one behind it was taken before.
    A gap that SEEKS reads from the expected offset all begin after, at the same
    offset, is real (records compacted away or deleted, transaction markers) and
    is passed over; an event of a partition no longer assigned is left alone.
    """

    SEEKS = 3

    def __init__(self, app: faust.App):
        self.app = app
        self.next: dict = {}
        self.sought: dict = {}  # tp -> (offset sought, first offset read after it, times)

    def forget(self, tps: Iterable) -> None:
        for tp in tps:
            self.next.pop(tp, None)
            self.sought.pop(tp, None)

    async def admit(self, events: list[faust.EventT]) -> list[faust.EventT]:
        admitted, rewound = [], set()
        assigned = self.app.consumer.assignment()
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            if tp in rewound or tp not in assigned:
                continue
            expected = self.next.get(tp)
            if expected is None:
                expected = self.next[tp] = await self._start(tp)
            if offset > expected and not self._gap(tp, expected, offset):
                await self.app.consumer.seek(tp, expected)
                rewound.add(tp)
            elif offset >= expected:
                admitted.append(event)
                self.next[tp] = offset + 1
                self.sought.pop(tp, None)
        return admitted

    def _gap(self, tp, expected: int, offset: int) -> bool:
        """True once reading again from `expected` has begun at the same `offset` SEEKS times: nothing lies between.

        Events fetched before a seek come at ever later offsets, so they never count up to a gap.
        """
        sought = self.sought.get(tp)
        times = sought[2] + 1 if sought and sought[:2] == (expected, offset) else 1
        if times <= self.SEEKS:
            self.sought[tp] = (expected, offset, times)
            return False
        log.info("%s: offsets %d to %d are not in the log (compacted or deleted); going on from %d",
                 tp, expected, offset - 1, offset)
        return True

    async def _start(self, tp) -> int:
        committed = self.app.consumer._committed_offset.get(tp)  # known since faust's seek after the rebalance
        if committed is not None:
            return committed
        return (await self.app.consumer.earliest_offsets(tp)).get(tp, 0)
