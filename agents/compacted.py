"""A compacted topic kept whole in memory: read to its end at start and on every rebalance, written through.

The notifier keeps its message references and the versions it has handled
this way: a save returns once the broker has the record, so whatever a
restarted (or newly assigned) instance reads back includes it.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.alerts import InputError
from topics.catalog import Topic

log = logging.getLogger("stormdrain.compacted")


class Compacted:
    """The latest value per key of a compacted topic; `merge(old, new)` decides what a record read back does."""

    def __init__(self, bootstrap: str, producer: AIOKafkaProducer, topic: Topic, key_of: Callable[[Any], str],
                 merge: Callable[[Any, Any], Any] = lambda old, new: new):
        self.bootstrap, self.producer, self.topic = bootstrap, producer, topic
        self.key_of, self.merge = key_of, merge
        self.values: dict[str, Any] = {}
        self.reader: AIOKafkaConsumer | None = None
        self.counts: Counter = Counter()

    def get(self, key: str) -> Any:
        return self.values.get(key)

    async def save(self, value: Any) -> None:
        key = self.key_of(value)
        await self.producer.send_and_wait(self.topic.name, self.topic.encode(value), key=key.encode())
        self.values[key] = value

    async def catch_up(self) -> None:
        """Read the topic up to its end, merging what other writers saved."""
        if self.reader is None:
            self.reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                           enable_auto_commit=False, isolation_level="read_committed")
            await self.reader.start()
            partitions = [TopicPartition(self.topic.name, p) for p in sorted(await self._partitions())]
            self.reader.assign(partitions)
            await self.reader.seek_to_beginning(*partitions)
        ends = await self.reader.end_offsets(list(self.reader.assignment()))
        while await self._behind(ends):
            for records in (await self.reader.getmany(timeout_ms=500)).values():
                for record in records:
                    self._take(record.value)
        log.info("%s loaded: %d", self.topic.short, len(self.values))

    async def _behind(self, ends: dict) -> bool:
        for tp, end in ends.items():
            if await self.reader.position(tp) < end:
                return True
        return False

    async def _partitions(self) -> set[int]:
        """The topic's partitions, once the broker's metadata has them (the producer waits for that)."""
        try:
            return await self.producer.partitions_for(self.topic.name)
        except KafkaError as exc:
            raise InputError(self.topic.name, f"the topic cannot be read ({exc}): create the topics first") from None

    def _take(self, raw: bytes | None) -> None:
        if raw is None:
            return  # a tombstone: compaction will drop the key
        try:
            value = self.topic.decode(raw)
        except InputError as exc:
            self.counts["malformed"] += 1
            log.error("skipped a %s record that cannot be read: %s", self.topic.short, exc)
            return
        key = self.key_of(value)
        self.values[key] = self.merge(self.values.get(key), value)

    async def close(self) -> None:
        if self.reader is not None:
            await self.reader.stop()
