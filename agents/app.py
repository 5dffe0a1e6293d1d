"""The faust application of the worker: broker, store and settings, and table access by partition.

Delivery is at least once. Faust's exactly-once mode does not give exactly
once against a real broker (sink topics get no transactional id, offsets lag
the changelog), so every output is made idempotent instead: states carry the
source offsets they have taken, a record read again is skipped, and an output
sent again is the same record under the same key and version.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import faust
from faust.streams import _current_event  # faust picks a table partition from the current event

from agents.options import Kafka
from topics.catalog import MIB, Topic


@dataclass(frozen=True)
class WorkerSettings:
    """How the worker runs: where its store lives, how often it saves and ticks."""

    datadir: Path
    save_every: float = 1.0  # seconds between state saves; outputs never wait for a save
    tick_every: float = 0.2  # seconds between ticks; 0 turns the ticker off
    batch: int = 2000
    batch_within: float = 0.0  # seconds a batch waits for more after its first event; 0 takes what is queued
    session_timeout: float = 10.0
    replication: int = 1


def make_app(kafka: Kafka, settings: WorkerSettings) -> faust.App:
    """A faust app on `kafka`, with a RocksDB store and at-least-once processing."""
    servers = ";".join(f"kafka://{server.strip()}" for server in kafka.bootstrap.split(","))
    return faust.App(
        kafka.group("worker"),
        broker=servers,
        store="rocksdb://",
        datadir=str(settings.datadir),
        processing_guarantee="at_least_once",
        web_enabled=False,
        topic_replication_factor=settings.replication,
        table_standby_replicas=0,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(1.0, settings.session_timeout / 3),
        broker_rebalance_timeout=max(10.0, settings.session_timeout),
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        producer_max_request_size=64 * MIB,
        producer_linger_ms=1,
    )


def raw_topic(app: faust.App, *topics: Topic) -> faust.TopicT:
    """A faust channel over catalog topics, with bytes in and out."""
    return app.topic(*(t.name for t in topics), key_serializer="raw", value_serializer="raw",
                     partitions=topics[0].partitions)


def table(app: faust.App, topic: Topic) -> faust.Table:
    """A table whose changelog is the catalog's topic (names, partitions and configs from there)."""
    changelog = app.topic(topic.name, key_serializer="raw", value_serializer="raw", partitions=topic.partitions,
                          compacting=True, config=topic.topic_configs())
    return app.Table(topic.short, partitions=topic.partitions, changelog_topic=changelog, key_type=bytes,
                     value_type=bytes)  # bytes in and out: the agents encode their own states


def global_table(app: faust.App, topic: Topic) -> faust.GlobalTable:
    """A table every worker holds whole, over a one-partition changelog from the catalog.

    One partition, as faust advises for global tables shared by several workers
    (and a small recovery buffer): writes go to partition 0 by the partitioner,
    and each worker reads every write as it comes.
    """
    assert topic.partitions == 1, "a global table's changelog has one partition"
    changelog = app.topic(topic.name, key_serializer="raw", value_serializer="raw", partitions=1,
                          compacting=True, config=topic.topic_configs())
    table = _CatalogGlobalTable(app, name=topic.short, partitions=1, changelog_topic=changelog, key_type=bytes,
                                value_type=bytes, use_partitioner=True, recovery_buffer_size=1,
                                standby_buffer_size=1, is_global=True, beacon=app.tables.beacon)
    return app.tables.add(table)


class _CatalogGlobalTable(faust.GlobalTable):
    """A global table whose changelog is the catalog's topic.

    Faust's assignor finds a global table's changelog by the name faust would
    have given it (`<app id>-<table>-changelog`), not by the topic the table
    was given, and fails the assignment; this table answers with its own.
    """

    def _changelog_topic_name(self) -> str:
        if self._changelog_topic is not None:
            return self._changelog_topic.get_topic_name()
        return super()._changelog_topic_name()


def seek_uncommitted_to_start(app: faust.App, topics: set[str]) -> None:
    """After a rebalance, read partitions of `topics` that have no committed offset from their start.

    Faust resumes fetching before it seeks to the committed offsets, drops what
    it fetched in between, and then relies on that seek; aiokafka does not seek
    a partition whose committed offset is missing or 0, so those records would
    never be read. Seeking such partitions to the start reads them again; the
    agents skip what their states already hold.
    """
    consumer = app.consumer
    seek_to_committed = consumer.seek_to_committed

    async def seek_then_rewind() -> dict:
        committed = await seek_to_committed()
        for tp, offset in committed.items():
            if tp.topic in topics and not offset:
                await consumer.seek(tp, 0)
        return committed

    consumer.seek_to_committed = seek_then_rewind


@contextmanager
def on_partition_of(event: faust.EventT) -> Iterator[None]:
    """Read and write tables on the partition of `event`, whatever event faust is on now.

    Faust takes a table key's partition from the current event; the agents save
    states of several partitions after a batch, so they say which one.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
