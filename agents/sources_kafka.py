"""The Kafka history source: `alerts.raw` by time range, read without a consumer group; republish elsewhere.

The reader assigns itself every partition (no group: it never joins, never
commits, never moves a live group's offsets), starts each partition at the
first record at or after `since` (offsets for times) and stops at the first
record a quarter of an hour past `until` (a record stamped a little late still
counts), or at the end the partition had when the read began, so a busy topic
still ends. Only records stamped from `since` to `until` are taken. Each record's value is written as one NDJSON line,
which the file replay reads as an `alerts.raw` record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import IO, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from pipeline.alerts import InputError
from pipeline.diagnose import Diagnosis
from pipeline.sources import check_republish
from topics.catalog import DIAGNOSES

log = logging.getLogger("stormdrain.sources")
STALL_SECONDS = 60.0
LATE_MS = 15 * 60 * 1000  # how far past `until` a partition is read for records stamped out of order
CLIENT_ID = "stormdrain-replay"


def dump(bootstrap: str, topic: str, since: datetime, until: datetime, out: IO[bytes]) -> int:
    """Write the values of `topic`'s records from `since` to `until` as NDJSON lines; return the count."""
    try:
        return asyncio.run(_dump(bootstrap, topic, _ms(since), _ms(until), out))
    except KafkaError as exc:
        raise InputError("--from-kafka", f"reading {topic} from {bootstrap} failed: {exc!r:.300}") from None


def republish(bootstrap: str, topic: str, diagnoses: Iterable[Diagnosis]) -> int:
    """Publish replayed diagnoses to a topic of their own (never a live one); return the count."""
    check_republish(topic)
    try:
        return asyncio.run(_republish(bootstrap, topic, list(diagnoses)))
    except KafkaError as exc:
        raise InputError("--republish", f"publishing to {topic} at {bootstrap} failed: {exc!r:.300}") from None


async def _dump(bootstrap: str, topic: str, since_ms: int, until_ms: int, out: IO[bytes]) -> int:
    partitions = await _partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                client_id=CLIENT_ID, isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(partitions)
        stops = await _bounds(consumer, partitions, since_ms, until_ms)
        return await _read(consumer, stops, since_ms, until_ms, out)
    finally:
        await consumer.stop()


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    """The topic's partitions, from the cluster's metadata; a missing topic is an error that names it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=CLIENT_ID)
    await admin.start()
    try:
        [found] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if found["error_code"] or not found["partitions"]:
        raise InputError("--topic", f"no topic {topic!r} at {bootstrap}")
    return [TopicPartition(topic, p["partition"]) for p in sorted(found["partitions"], key=lambda p: p["partition"])]


async def _bounds(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], since_ms: int,
                  until_ms: int) -> dict[TopicPartition, int]:
    """Seek each partition to `since`; return where each stops (at `until`, or today's end)."""
    ends = await consumer.end_offsets(partitions)
    starts = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
    limits = await consumer.offsets_for_times({tp: until_ms + LATE_MS for tp in partitions})
    stops = {}
    for tp in partitions:
        start = starts[tp].offset if starts[tp] is not None else ends[tp]
        stops[tp] = limits[tp].offset if limits[tp] is not None else ends[tp]
        consumer.seek(tp, start)
        if start >= stops[tp]:
            stops.pop(tp)
    return stops


async def _read(consumer: AIOKafkaConsumer, stops: dict[TopicPartition, int], since_ms: int, until_ms: int,
                out: IO[bytes]) -> int:
    consumer.pause(*[tp for tp in consumer.assignment() if tp not in stops])
    written, last_progress = 0, time.monotonic()
    while stops:
        batches = await consumer.getmany(*stops, timeout_ms=1000)
        for tp, records in batches.items():
            for record in records:
                if record.offset >= stops.get(tp, -1):
                    break
                if since_ms <= record.timestamp < until_ms:
                    # One line per record: a value's own newlines would split it, and a null value
                    # (a tombstone) becomes a line the replay reports rather than nothing at all.
                    value = record.value if record.value is not None else b"null"
                    out.write(value.replace(b"\n", b" ").replace(b"\r", b" ") + b"\n")
                    written += 1
            if records:
                last_progress = time.monotonic()
            if tp in stops and (await consumer.position(tp)) >= stops[tp]:
                stops.pop(tp)
                consumer.pause(tp)
        if time.monotonic() - last_progress > STALL_SECONDS:
            raise InputError("--from-kafka", f"no progress for {STALL_SECONDS:.0f}s; still to read: "
                                             + ", ".join(f"{tp.topic}[{tp.partition}]" for tp in stops))
    return written


async def _republish(bootstrap: str, topic: str, diagnoses: list[Diagnosis]) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=CLIENT_ID)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            raise InputError("--republish", f"no topic {topic!r} at {bootstrap}; create it first")
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=CLIENT_ID, acks="all",
                                enable_idempotence=True)
    await producer.start()
    try:
        for diagnosis in diagnoses:
            await producer.send(topic, DIAGNOSES.encode(diagnosis), key=diagnosis.incident_id.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return len(diagnoses)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)
