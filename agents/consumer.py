"""A reader of `diagnoses` in its own consumer group: each new version goes to a handler once.

The executor's dry run uses it (`stormdrain executor --dry-run`): its own
process, group and offsets, so stopping or failing it holds up nothing else.
A version already handled (the worker may send one again after a restart) is
skipped by (incident id, version). A handler that keeps failing sends the
diagnosis to the dead-letter topic with the reason and goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import OrderedDict
from typing import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

from agents.options import Kafka
from pipeline.alerts import InputError
from pipeline.correlate import DeadLetter
from pipeline.diagnose import Diagnosis
from topics.catalog import DEAD_LETTERS, DIAGNOSES

log = logging.getLogger("stormdrain.consumer")
Handler = Callable[[Diagnosis], Awaitable[None] | None]
REMEMBERED = 100_000
RETRIES = (1, 2, 4, 8, 15, 30)


class Versions:
    """The latest version handled per incident, for the most recent incidents."""

    def __init__(self, size: int = REMEMBERED):
        self.size = size
        self.latest: OrderedDict[str, int] = OrderedDict()

    def is_new(self, diagnosis: Diagnosis) -> bool:
        return diagnosis.version > self.latest.get(diagnosis.incident_id, 0)

    def handled(self, diagnosis: Diagnosis) -> None:
        self.latest[diagnosis.incident_id] = diagnosis.version
        self.latest.move_to_end(diagnosis.incident_id)
        if len(self.latest) > self.size:
            self.latest.popitem(last=False)


class _StartAtEnd(ConsumerRebalanceListener):
    """A new group starts at the end, and commits that position at once, so a restart misses nothing."""

    def __init__(self, consumer: AIOKafkaConsumer):
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked):
        pass

    async def on_partitions_assigned(self, assigned):
        fresh = {tp: await self.consumer.position(tp) for tp in assigned
                 if await self.consumer.committed(tp) is None}
        if fresh:
            await self.consumer.commit(fresh)
        log.info("assigned %d partition(s) of diagnoses", len(assigned))


class DiagnosisReader:
    """Runs one role's consumer group on `diagnoses` and hands each new version to its handler."""

    def __init__(self, kafka: Kafka, role: str, handler: Handler, retries: tuple[float, ...] = RETRIES,
                 group: str | None = None):
        self.kafka = kafka
        self.role = role
        self.group = group or kafka.group(role)
        self.handler = handler
        self.retries = retries
        self.versions = Versions()
        self.topic = kafka.topic(DIAGNOSES)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka.bootstrap, group_id=self.group,
                                    enable_auto_commit=False, auto_offset_reset="latest",
                                    max_partition_fetch_bytes=DIAGNOSES.max_message_bytes)
        producer = AIOKafkaProducer(bootstrap_servers=self.kafka.bootstrap, acks="all", enable_idempotence=True)
        await consumer.start()
        await producer.start()
        consumer.subscribe([self.topic.name], listener=_StartAtEnd(consumer))
        log.info("%s reading %s as group %s", self.role, self.topic.name, self.group)
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    for message in messages:
                        await self._take(message.value, producer)
                if batch:
                    await consumer.commit()
        finally:
            await consumer.stop()
            await producer.stop()

    async def _take(self, raw: bytes, producer: AIOKafkaProducer) -> None:
        try:
            diagnosis = self.topic.decode(raw or b"")
        except InputError as exc:
            await self._dead_letter(producer, "malformed", str(exc), (raw or b"")[:4096].decode("utf-8", "replace"))
            return
        if not self.versions.is_new(diagnosis):
            return
        error = await self._handle(diagnosis)
        if error is not None:
            await self._dead_letter(producer, f"{self.role}_failed", error, diagnosis.model_dump(mode="json"))
        self.versions.handled(diagnosis)

    async def _handle(self, diagnosis: Diagnosis) -> str | None:
        """Call the handler, retrying with backoff; return the last error if it never succeeded."""
        error = None
        for wait in (0, *self.retries):
            await asyncio.sleep(wait)
            try:
                result = self.handler(diagnosis)
                if inspect.isawaitable(result):
                    await result
                return None
            except Exception as exc:  # noqa: BLE001 - a failing handler must not stop the reader
                error = f"{type(exc).__name__}: {exc}"
                log.warning("%s failed on %s v%d: %s", self.role, diagnosis.incident_id, diagnosis.version, error)
        return error

    async def _dead_letter(self, producer: AIOKafkaProducer, reason: str, detail: str, record) -> None:
        log.error("%s: %s: %s", self.role, reason, detail)
        letters = self.kafka.topic(DEAD_LETTERS)
        await producer.send_and_wait(letters.name, letters.encode(DeadLetter(reason=reason, detail=detail,
                                                                             record=record)),
                                     key=self.topic.name.encode())
