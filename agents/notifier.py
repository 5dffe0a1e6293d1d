"""`stormdrain notifier`: diagnoses and clicks from Kafka to the configured sinks, each version once.

Its own consumer group reads `diagnoses`, `approvals` and `feedback`; a
crashing notifier holds up nothing else. The sinks are those `notify.sinks`
names (slack, pagerduty, webhook), and the printed page when none is named
or `--print` asks for it. A batch is handled per incident (the versions not
handled before, in order, or only the newest for a sink that shows one living
page; then the clicks), the newest version handled is saved to its compacted
topic, and only then are the offsets committed. A crash redelivers; the saved
versions skip what was handled, and Slack's saved message references turn
what is left into updates of the same messages. Both compacted topics are
read whole at start and again on every rebalance.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter, defaultdict
from typing import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from pydantic import ValidationError

from agents.compacted import Compacted
from agents.options import Kafka, signalled_stop
from agents.sinks import PagerDutySink, PrintSink, Sink, WebhookSink
from agents.slack import SlackCalls, SlackFatal, SlackSink, client
from pipeline.actions import Approval, Feedback
from pipeline.alerts import InputError
from pipeline.config import Config
from pipeline.diagnose import Diagnosis
from pipeline.runbooks import Catalog
from pipeline.slack.lifecycle import MessageRef, merge
from topics.catalog import (APPROVALS, DIAGNOSES, FEEDBACK, NOTIFIER_VERSIONS, SLACK_MESSAGES, NotifiedVersion,
                            Topic)

log = logging.getLogger("stormdrain.notifier")
CONCURRENCY = 16  # incidents handled at once; Slack calls are still one at a time per channel
CONSUMED = (DIAGNOSES, APPROVALS, FEEDBACK)


class KafkaRefs(Compacted):
    """Slack message references in their compacted topic, cached in memory (the Slack sink's store)."""

    def __init__(self, bootstrap: str, producer: AIOKafkaProducer, topic: Topic = SLACK_MESSAGES):
        super().__init__(bootstrap, producer, topic, key_of=lambda ref: ref.key, merge=merge)

    def view(self) -> dict[str, MessageRef]:
        return self.values


class HandledVersions(Compacted):
    """The newest diagnosis version handled per incident, in its compacted topic."""

    def __init__(self, bootstrap: str, producer: AIOKafkaProducer, topic: Topic = NOTIFIER_VERSIONS):
        super().__init__(bootstrap, producer, topic, key_of=lambda note: note.incident_id,
                         merge=lambda old, new: new if old is None or new.version > old.version else old)

    def latest(self, incident_id: str) -> int:
        note = self.get(incident_id)
        return note.version if note else 0

    async def handled(self, diagnosis: Diagnosis) -> None:
        if diagnosis.version > self.latest(diagnosis.incident_id):
            await self.save(NotifiedVersion(incident_id=diagnosis.incident_id, version=diagnosis.version))


class _CatchUpOnAssign(ConsumerRebalanceListener):
    """A rebalance may hand this instance incidents another one handled: read what it saved first."""

    def __init__(self, caches: list[Compacted]):
        self.caches = caches

    async def on_partitions_revoked(self, revoked) -> None:
        return None

    async def on_partitions_assigned(self, assigned) -> None:
        for cache in self.caches:
            await cache.catch_up()
        log.info("assigned %d partition(s)", len(assigned))


class Batch:
    """One poll's records by incident: the diagnosis versions not handled before, and the clicks in order."""

    def __init__(self, records: Iterable, topics: dict[str, Topic], counts: Counter, handled: HandledVersions):
        self.versions: dict[str, dict[int, Diagnosis]] = defaultdict(dict)
        self.acts: dict[str, list[Approval | Feedback]] = defaultdict(list)
        for record in records:
            value = _decode(record, topics[record.topic], counts)
            if isinstance(value, Diagnosis):
                self._version(value, counts, handled)
            elif value is not None:
                self.acts[value.incident_id].append(value)

    def _version(self, diagnosis: Diagnosis, counts: Counter, handled: HandledVersions) -> None:
        known = self.versions.get(diagnosis.incident_id, {})
        if diagnosis.version <= handled.latest(diagnosis.incident_id) or diagnosis.version in known:
            counts["already_handled"] += 1  # redelivered, or sent again by a restarted worker
            return
        self.versions[diagnosis.incident_id][diagnosis.version] = diagnosis

    def incidents(self) -> list[str]:
        return list(dict.fromkeys([*self.versions, *self.acts]))

    def new(self, incident_id: str) -> list[Diagnosis]:
        return [d for _, d in sorted(self.versions.get(incident_id, {}).items())]


def _decode(record, topic: Topic, counts: Counter) -> Diagnosis | Approval | Feedback | None:
    """A record's value, or None (counted and logged) when it cannot be read: a poison record stops nothing."""
    try:
        return topic.decode(record.value if record.value is not None else b"null")
    except InputError as exc:
        counts[f"malformed_{record.topic}"] += 1
        log.error("skipped %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
        return None


class Notifier:
    """Hands each batch to every sink and notes what was handled; the loop commits only after that."""

    def __init__(self, sinks: list[Sink], handled: HandledVersions, topics: Iterable[Topic] = CONSUMED):
        self.sinks = sinks
        self.handled = handled
        self.topics = {t.name: t for t in topics}
        self.limit = asyncio.Semaphore(CONCURRENCY)
        self.counts: Counter = Counter()

    async def handle(self, records: Iterable) -> None:
        batch = Batch(records, self.topics, self.counts, self.handled)
        await asyncio.gather(*(self._incident(batch, i) for i in batch.incidents()))

    async def _incident(self, batch: Batch, incident_id: str) -> None:
        async with self.limit:
            versions = batch.new(incident_id)
            for sink in self.sinks:
                for diagnosis in versions if sink.every_version else versions[-1:]:
                    await self._unless_unshowable(sink, sink.handle(diagnosis), f"{incident_id} v{diagnosis.version}")
                for act in batch.acts.get(incident_id, []):
                    await self._unless_unshowable(sink, sink.handle_act(act), f"a {act.__class__.__name__.lower()} "
                                                                              f"for {incident_id}")
            if versions:
                await self.handled.handled(versions[-1])
            self.counts["versions"] += len(versions)
            self.counts["acts"] += len(batch.acts.get(incident_id, []))

    async def _unless_unshowable(self, sink: Sink, handling, what: str) -> None:
        """A record no sink can show (it fails the page's own checks, or is over Kafka's size limits) is logged
        and skipped, so that it cannot stop every page after it; anything else (Slack or Kafka away) is raised."""
        try:
            await handling
        except (ValidationError, MessageSizeTooLargeError) as exc:
            self.counts["unshowable"] += 1
            log.error("%s cannot show %s, skipped: %s", type(sink).__name__, what, str(exc).splitlines()[0][:300])

    async def run(self, bootstrap: str, group: str, stop: asyncio.Event, caches: list[Compacted]) -> None:
        """Consume until `stop` is set: handle each batch, then commit its offsets."""
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                    auto_offset_reset="earliest", isolation_level="read_committed",
                                    max_poll_records=500)
        consumer.subscribe(list(self.topics), listener=_CatchUpOnAssign(caches))
        await consumer.start()
        log.info("notifier reading %s as group %s", ", ".join(self.topics), group)
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                records = [r for part in batch.values() for r in part]
                if records:
                    await self.handle(records)
                    await consumer.commit()
        finally:
            await consumer.stop()


def with_webhook(config: Config, url: str | None) -> Config:
    """The configuration with the webhook sink added for `url` (the `--webhook-url` option)."""
    if not url:
        return config
    sinks = config.notify.sinks if "webhook" in config.notify.sinks else (*config.notify.sinks, "webhook")
    return config.model_copy(update={"notify": config.notify.model_copy(update={"sinks": sinks, "webhook_url": url})})


def build_sinks(config: Config, catalog: Catalog, refs: KafkaRefs, env: dict[str, str] = os.environ,
                print_pages: bool = False) -> list[Sink]:
    """The sinks the configuration names (notify.sinks), with secrets from the environment; print if none."""
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
                raise InputError("notify.webhook_url", "the webhook sink needs a URL (or --webhook-url)")
            sinks.append(WebhookSink(notify.webhook_url))
    if print_pages or not sinks:
        sinks.append(PrintSink(catalog))
    return sinks


def _required(env, name: str) -> str:
    if not env.get(name):
        raise InputError(name, f"set {name} in the environment")
    return env[name]


async def serve(kafka: Kafka, config: Config, catalog: Catalog, group: str | None = None,
                print_pages: bool = False) -> int:
    """The notifier process: sinks built, saved state loaded, consume until SIGTERM or SIGINT."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True,
                                max_request_size=kafka.topic(SLACK_MESSAGES).max_message_bytes)
    refs = KafkaRefs(kafka.bootstrap, producer, kafka.topic(SLACK_MESSAGES))
    handled = HandledVersions(kafka.bootstrap, producer, kafka.topic(NOTIFIER_VERSIONS))
    sinks: list[Sink] = []
    stop = signalled_stop()
    try:
        sinks = build_sinks(config, catalog, refs, print_pages=print_pages)  # a missing secret stops here
        caches = [handled, *([refs] if any(isinstance(s, SlackSink) for s in sinks) else [])]
        await producer.start()
        for cache in caches:
            await cache.catch_up()
        notifier = Notifier(sinks, handled, [kafka.topic(t) for t in CONSUMED])
        await notifier.run(kafka.bootstrap, group or kafka.group("notifier"), stop, caches)
    except KafkaConnectionError as exc:
        raise InputError("--bootstrap", f"cannot reach Kafka at {kafka.bootstrap}: {exc}") from None
    except SlackFatal as exc:
        log.error("Slack refuses the app (%s): fix the token or scopes; nothing was committed", exc)
        return 1
    finally:
        for sink in sinks:
            await sink.close()
        for cache in (refs, handled):
            await cache.close()
        await producer.stop()
    return 0
