"""Ticks: records that move event time on, partition by partition, while a storm is quiet.

The ticker writes one to every partition of `alerts.raw`, so a tick stands in
the partition's order like any record, and a restart that reads the partition
again sees it in the same place.
"""

from __future__ import annotations

from datetime import datetime

from topics.catalog import ALERTS_RAW, Tick

TICK_KEY = b"tick"


def tick_value(at: datetime) -> bytes:
    return ALERTS_RAW.encode(Tick(at=at))


async def send_ticks(producer, topic: str, partitions: int, at: datetime) -> None:
    """Send a tick at `at` to every partition with an aiokafka producer, and wait for the acks."""
    value = tick_value(at)
    sent = [await producer.send(topic, value, key=TICK_KEY, partition=p, timestamp_ms=int(at.timestamp() * 1000))
            for p in range(partitions)]
    for future in sent:
        await future
