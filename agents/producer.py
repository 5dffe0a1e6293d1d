"""The bridge's publisher: an idempotent producer (acks=all) that says when the broker is away.

Kafka clients retry a send for as long as the broker is gone; a webhook cannot
wait that long. `publish` gives up after a bound and raises `Unavailable`,
so the bridge answers 503 and Alertmanager sends the notification again. A
record that timed out may still be delivered later: dedupe downstream takes
the repeat as a retry.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

log = logging.getLogger("stormdrain.bridge")
RECONNECT_SECONDS = 2.0
PROBE_SECONDS = 2.0
STOP_SECONDS = 5.0


class Unavailable(Exception):
    """The broker did not acknowledge in time, or cannot be reached."""


class Publisher:
    """Connects in the background, publishes batches with a bound, and probes the broker."""

    def __init__(self, bootstrap: str, topic: str, timeout: float = 5.0, **producer_options):
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout = timeout
        self.ready = False
        self._options = producer_options
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_connected())

    async def stop(self) -> None:
        """Stop; records the broker has not acknowledged within STOP_SECONDS are dropped (each was answered 503)."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._producer:
            try:
                await asyncio.wait_for(self._producer.stop(), STOP_SECONDS)
            except asyncio.TimeoutError:
                log.warning("Kafka did not take the last records within %g s; stopping without them "
                            "(their webhooks were answered 503, so Alertmanager sends them again)", STOP_SECONDS)

    async def publish(self, records: Sequence[tuple[bytes, bytes]], timestamp_ms: int) -> None:
        """Send (key, value) records; return once the broker has acknowledged every one."""
        if self._producer is None:
            raise Unavailable("not connected to Kafka yet")
        await self._bounded(self._send_all(self._producer, records, timestamp_ms))

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        """One record to another topic (a Slack click), acknowledged within the same bound."""
        if self._producer is None:
            raise Unavailable("not connected to Kafka yet")
        await self._bounded(self._producer.send_and_wait(topic, value, key=key))

    async def _bounded(self, sending) -> None:
        try:
            await asyncio.wait_for(sending, self.timeout)
        except (asyncio.TimeoutError, KafkaError) as exc:
            self.ready = False
            raise Unavailable(f"Kafka did not acknowledge within {self.timeout:g}s: {type(exc).__name__}") from None

    async def _send_all(self, producer: AIOKafkaProducer, records, timestamp_ms: int) -> None:
        sent = [await producer.send(self.topic, value, key=key, timestamp_ms=timestamp_ms) for key, value in records]
        await asyncio.gather(*sent)

    async def _keep_connected(self) -> None:
        while self._producer is None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all",
                                        **self._options)
            try:
                await producer.start()
                self._producer = producer
            except KafkaError as exc:
                await producer.stop()
                log.warning("Kafka at %s not reachable (%s); retrying", self.bootstrap, type(exc).__name__)
                await asyncio.sleep(RECONNECT_SECONDS)
        while True:
            self.ready = await self._probe()
            await asyncio.sleep(PROBE_SECONDS)

    async def _probe(self) -> bool:
        """Ready when the broker answers metadata and knows the topic."""
        try:
            metadata = await asyncio.wait_for(self._producer.client.fetch_all_metadata(), PROBE_SECONDS)
        except (asyncio.TimeoutError, KafkaError, OSError):
            return False
        return self.topic in metadata.topics()
