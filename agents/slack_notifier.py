"""`stormdrain slack-notifier`: diagnoses and clicks from Kafka to Slack (and PagerDuty, a webhook), once each.

Its own consumer group reads `diagnoses`, `approvals` and `feedback`. A batch
is handled (the latest version per incident, then the clicks), the message
references are saved to their compacted topic, and only then are the offsets
committed: a crash redelivers, and the saved references turn the redelivery
into updates of the same messages. References are read whole at start and
again on every rebalance, so an instance that takes over a partition knows
every message the previous owner posted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections import Counter, defaultdict
from typing import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from agents.sinks import PagerDutySink, Sink, WebhookSink
from agents.slack import MemoryRefs, SlackCalls, SlackFatal, SlackSink, client
from pipeline.actions import Approval, Feedback
from pipeline.alerts import InputError
from pipeline.config import Config, load_config
from pipeline.diagnose import Diagnosis
from pipeline.runbooks import Catalog, load_catalog
from pipeline.slack.lifecycle import MessageRef, merge
from topics.catalog import APPROVALS, DIAGNOSES, FEEDBACK, SLACK_MESSAGES, Topic

log = logging.getLogger("stormdrain.slack.notifier")
GROUP = "stormdrain-slack-notifier"
CONCURRENCY = 16  # incidents handled at once; Slack calls are still one at a time per channel


class KafkaRefs(MemoryRefs):
    """Message references in their compacted topic, cached in memory; a save returns once the broker has it."""

    def __init__(self, bootstrap: str, producer: AIOKafkaProducer, topic: Topic = SLACK_MESSAGES):
        super().__init__()
        self.bootstrap, self.producer, self.topic = bootstrap, producer, topic
        self.reader: AIOKafkaConsumer | None = None
        self.counts: Counter = Counter()

    async def save(self, ref: MessageRef) -> None:
        await self.producer.send_and_wait(self.topic.name, self.topic.encode(ref), key=ref.key.encode())
        self.refs[ref.key] = ref

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
        log.info("message references loaded: %d", len(self.refs))

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
            ref = self.topic.decode(raw)
        except InputError as exc:
            self.counts["malformed_reference"] += 1
            log.error("skipped a message reference that cannot be read: %s", exc)
            return
        self.refs[ref.key] = merge(self.refs.get(ref.key), ref)

    async def close(self) -> None:
        if self.reader is not None:
            await self.reader.stop()


class _CatchUpOnAssign(ConsumerRebalanceListener):
    """A rebalance may hand this instance incidents another one posted: read their references first."""

    def __init__(self, refs: KafkaRefs):
        self.refs = refs

    async def on_partitions_revoked(self, revoked) -> None:
        return None

    async def on_partitions_assigned(self, assigned) -> None:
        await self.refs.catch_up()


class Batch:
    """One poll's records by incident: the newest diagnosis of each, and the clicks in order."""

    def __init__(self, records: Iterable, topics: dict[str, Topic], counts: Counter):
        self.latest: dict[str, Diagnosis] = {}
        self.acts: dict[str, list[Approval | Feedback]] = defaultdict(list)
        for record in records:
            value = _decode(record, topics[record.topic], counts)
            if isinstance(value, Diagnosis):
                known = self.latest.get(value.incident_id)
                self.latest[value.incident_id] = value if known is None or value.version >= known.version else known
                counts["coalesced"] += known is not None
            elif value is not None:
                self.acts[value.incident_id].append(value)

    def incidents(self) -> list[str]:
        return list(dict.fromkeys([*self.latest, *self.acts]))


def _decode(record, topic: Topic, counts: Counter) -> Diagnosis | Approval | Feedback | None:
    """A record's value, or None (counted and logged) when it cannot be read: a poison record stops nothing."""
    try:
        return topic.decode(record.value if record.value is not None else b"null")
    except InputError as exc:
        counts[f"malformed_{record.topic}"] += 1
        log.error("skipped %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
        return None


class Notifier:
    """Hands each batch to every sink; the loop commits only after that."""

    def __init__(self, sinks: list[Sink], topics: Iterable[Topic] = (DIAGNOSES, APPROVALS, FEEDBACK)):
        self.sinks = sinks
        self.topics = {t.name: t for t in topics}
        self.limit = asyncio.Semaphore(CONCURRENCY)
        self.counts: Counter = Counter()

    async def handle(self, records: Iterable) -> None:
        batch = Batch(records, self.topics, self.counts)
        await asyncio.gather(*(self._incident(batch, i) for i in batch.incidents()))

    async def _incident(self, batch: Batch, incident_id: str) -> None:
        async with self.limit:
            diagnosis = batch.latest.get(incident_id)
            for sink in self.sinks:
                if diagnosis is not None:
                    await sink.handle(diagnosis)
                for act in batch.acts.get(incident_id, []):
                    await sink.handle_act(act)
            self.counts["diagnoses" if diagnosis else "acts"] += 1


async def run(bootstrap: str, sinks: list[Sink], refs: KafkaRefs, group: str = GROUP,
              topics: tuple[Topic, ...] = (DIAGNOSES, APPROVALS, FEEDBACK),
              stop: asyncio.Event | None = None) -> Notifier:
    """Consume until `stop` is set: handle each batch, then commit its offsets."""
    stop = stop or asyncio.Event()
    notifier = Notifier(sinks, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed",
                                max_poll_records=500)
    consumer.subscribe([t.name for t in topics], listener=_CatchUpOnAssign(refs))
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            records = [r for part in batch.values() for r in part]
            if records:
                await notifier.handle(records)
                await consumer.commit()
    finally:
        await consumer.stop()
    return notifier


def build_sinks(config: Config, catalog: Catalog, refs, env: dict[str, str] = os.environ) -> list[Sink]:
    """The sinks the configuration names (notify.sinks), with secrets from the environment."""
    notify, sinks = config.notify, []
    for name in notify.sinks:
        if name == "slack":
            token = _required(env, "SLACK_BOT_TOKEN")
            web = client(token, env.get("SLACK_API_URL") or "https://slack.com/api/")
            sinks.append(SlackSink(SlackCalls(web), refs, notify, catalog))
        elif name == "pagerduty":
            sinks.append(PagerDutySink(notify.pagerduty_url, _required(env, "PAGERDUTY_ROUTING_KEY")))
        elif name == "webhook":
            if not notify.webhook_url:
                raise InputError("notify.webhook_url", "the webhook sink needs a URL")
            sinks.append(WebhookSink(notify.webhook_url))
    return sinks


def _required(env, name: str) -> str:
    if not env.get(name):
        raise InputError(name, f"set {name} in the environment")
    return env[name]


async def serve(bootstrap: str, config: Config, catalog: Catalog, group: str = GROUP) -> int:
    """The notifier process: sinks built, references loaded, consume until SIGTERM or SIGINT."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    refs, sinks, stop = KafkaRefs(bootstrap, producer), [], asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        sinks = build_sinks(config, catalog, refs)  # a missing secret stops here, before any connection
        await producer.start()
        await refs.catch_up()
        await run(bootstrap, sinks, refs, group, stop=stop)
    except KafkaConnectionError as exc:
        raise InputError("--bootstrap", f"cannot reach Kafka at {bootstrap}: {exc}") from None
    except SlackFatal as exc:
        log.error("Slack refuses the app (%s): fix the token or scopes; nothing was committed", exc)
        return 1
    finally:
        for sink in sinks:
            await sink.close()
        await refs.close()
        await producer.stop()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """The `stormdrain slack-notifier` command (entry point group stormdrain.commands)."""
    parser = sub.add_parser("slack-notifier", help="post and update incident pages in Slack (and PagerDuty)")
    parser.add_argument("--bootstrap", default=os.environ.get("STORMDRAIN_KAFKA", "127.0.0.1:9092"),
                        help="Kafka bootstrap servers (default $STORMDRAIN_KAFKA or 127.0.0.1:9092)")
    parser.add_argument("--config", help="configuration file (YAML or JSON); its notify section")
    parser.add_argument("--runbooks", help="runbook catalog (default: the bundled one)")
    parser.add_argument("--group", default=GROUP, help=f"consumer group (default {GROUP})")
    parser.set_defaults(run=lambda args: asyncio.run(
        serve(args.bootstrap, load_config(args.config), load_catalog(args.runbooks), args.group)))
