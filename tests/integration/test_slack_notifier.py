"""The notifier's Slack sink on a real Kafka broker with the local Slack Web API: one post per incident,
through a restart and redelivery; clicks from /slack/actions land on approvals once and show on the page."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import time
import uuid

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.sinks import Backoff
from agents.slack import SlackCalls, SlackSink, client
from agents.slack_actions import add_slack_actions, kafka_publisher
from agents.notifier import HandledVersions, KafkaRefs, Notifier
from pipeline.config import NotifyConfig
from pipeline.runbooks import load_catalog
from tests.agents.test_slack_actions import SECRET, click, signed
from tests.local_parts import TOKEN, load_local, slack_api  # noqa: F401 (fixture)
from tests.pages import thirty_alert_storm
from tests.timeline import require_ci_part
from topics.catalog import APPROVALS, DIAGNOSES, FEEDBACK, NOTIFIER_VERSIONS, SLACK_MESSAGES

pytestmark = pytest.mark.integration
STORM = thirty_alert_storm()


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    """One single-node KRaft broker for this module (deploy/local/kafka.py)."""
    if shutil.which("java") is None:
        require_ci_part("Java 17+ is needed to run the local Kafka broker")
    local = load_local("kafka")
    data = tmp_path_factory.mktemp("kafka")
    try:
        bootstrap = local.start(port=0, data_dir=data)
    except local.KafkaError as exc:
        require_ci_part(f"the local Kafka broker did not start: {exc}")
    yield bootstrap
    local.stop(data_dir=data)


@dataclasses.dataclass
class Topics:
    diagnoses: object
    approvals: object
    feedback: object
    messages: object
    versions: object

    def consumed(self):
        return (self.diagnoses, self.approvals, self.feedback)

    def all(self):
        return (*self.consumed(), self.messages, self.versions)


async def fresh_topics(bootstrap: str) -> Topics:
    """This test's own copies of the topics (same models and configs, unique names), created on the broker."""
    tag = uuid.uuid4().hex[:8]
    topics = Topics(*(dataclasses.replace(t, name=f"{t.name}.{tag}", partitions=1)
                      for t in (DIAGNOSES, APPROVALS, FEEDBACK, SLACK_MESSAGES, NOTIFIER_VERSIONS)))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(t.name, t.partitions, 1, topic_configs=t.topic_configs())
                                              for t in topics.all()])
        assert [e[1] for e in response.topic_errors] == [0] * 5, response.topic_errors
    finally:
        await admin.close()
    return topics


class SlackNotifier:
    """One notifier process's worth of parts: producer, saved state, Slack sink, the consume loop."""

    def __init__(self, bootstrap, topics: Topics, slack, group):
        self.bootstrap, self.topics, self.slack, self.group = bootstrap, topics, slack, group

    async def __aenter__(self):
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True)
        await self.producer.start()
        self.refs = KafkaRefs(self.bootstrap, self.producer, self.topics.messages)
        self.handled = HandledVersions(self.bootstrap, self.producer, self.topics.versions)
        for cache in (self.refs, self.handled):
            await cache.catch_up()
        calls = SlackCalls(client(TOKEN, self.slack.base_url), Backoff(first=0.05, cap=0.2))
        self.sink = SlackSink(calls, self.refs, NotifyConfig(), load_catalog())
        self.notifier = Notifier([self.sink], self.handled, self.topics.consumed())
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.notifier.run(self.bootstrap, self.group, self.stop,
                                                          [self.handled, self.refs]))
        return self

    async def __aexit__(self, *exc):
        self.stop.set()
        await self.task
        await self.refs.close()
        await self.handled.close()
        await self.producer.stop()

    async def shown(self, incident_id: str, version: int) -> None:
        """Wait until the page shows this version."""
        await self.until(lambda: (ref := self.refs.get(incident_id)) is not None and ref.version >= version,
                         f"the page never showed v{version}")

    async def until(self, condition, what: str, timeout: float = 60) -> None:
        """A bounded wait for the consumer to get somewhere (not a claim about how fast)."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, what
            assert not self.task.done(), self.task.exception()
            await asyncio.sleep(0.1)


async def produce(bootstrap, topic, diagnoses):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for d in diagnoses:
            await producer.send_and_wait(topic.name, topic.encode(d), key=d.incident_id.encode())
    finally:
        await producer.stop()


async def rewind(bootstrap, topic, group, offset):
    """Commit an earlier offset for the group, as a crash before the commit would leave it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic.name, 0)
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


async def read_all(bootstrap, topic):
    consumer = AIOKafkaConsumer(topic.name, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3000)
        return [topic.decode(r.value) for records in batch.values() for r in records]
    finally:
        await consumer.stop()


def top_level_posts(slack):
    return [c for c in slack.of("chat.postMessage") if not c.params.get("thread_ts")]


def test_a_30_alert_storm_is_one_post_then_updates_and_replies_through_a_restart_and_redelivery(kafka, slack_api):
    incident = STORM[0].incident_id
    group = f"notifier-{uuid.uuid4().hex[:6]}"

    async def scenario():
        topics = await fresh_topics(kafka)
        async with SlackNotifier(kafka, topics, slack_api, group) as first:
            await produce(kafka, topics.diagnoses, STORM[:8])
            await first.shown(incident, 8)
        # the notifier stops in the middle of the storm; the group is rewound as if it had crashed before
        # committing, so a new process gets versions 4-8 again; Kafka redelivers some versions twice too
        await rewind(kafka, topics.diagnoses, group, 3)
        async with SlackNotifier(kafka, topics, slack_api, group) as second:
            await second.until(lambda: second.notifier.counts["already_handled"] >= 5,
                               "versions 4-8 were not redelivered")
            await produce(kafka, topics.diagnoses, STORM[8:12] + STORM[5:7] + STORM[12:])
            await second.shown(incident, STORM[-1].version)
            return second.notifier.counts
    counts = asyncio.run(scenario())
    assert len(top_level_posts(slack_api)) == 1
    assert {c.method for c in slack_api.calls} == {"chat.postMessage", "chat.update"}
    assert slack_api.calls[0].method == "chat.postMessage" and not slack_api.calls[0].params.get("thread_ts")
    replies = [c.params["text"].split(" ")[0] for c in slack_api.of("chat.postMessage") if c.params.get("thread_ts")]
    # a batch shows only its newest version, so whether the root's move gets a reply depends on batching;
    # the resolution always does, and no reply is ever sent twice
    assert replies[-1] == "Resolved" and set(replies) <= {"Root", "Resolved"} and len(replies) == len(set(replies))
    assert len(slack_api.of("chat.update")) >= 2  # at least once per notifier process
    assert counts["already_handled"] == 5 + 2  # versions 4-8 after the restart and 6-7 sent again: no call
    [page] = [m for m in slack_api.posts("#incidents") if "thread_ts" not in m]
    assert page["blocks"][0]["text"]["text"].startswith("✅ RESOLVED db: DBConnectionPoolExhausted")


def test_a_click_lands_on_approvals_once_despite_retries_and_shows_on_the_page(kafka, slack_api):
    incident = STORM[0].incident_id

    async def scenario():
        topics = await fresh_topics(kafka)
        async with SlackNotifier(kafka, topics, slack_api, f"g-{uuid.uuid4().hex[:6]}") as notifier:
            await produce(kafka, topics.diagnoses, STORM[:3])
            await notifier.shown(incident, 3)
            producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
            await producer.start()
            app = web.Application()
            publish = kafka_publisher(producer)
            add_slack_actions(app, lambda topic, key, value: publish(
                topics.approvals if topic is APPROVALS else topics.feedback, key, value), SECRET)
            body, forged = click(page=STORM[2]), click(trigger="forged.1", page=STORM[2])
            statuses = []
            async with TestClient(TestServer(app)) as http:
                for data, headers in [(forged, {**signed(forged), "X-Slack-Signature": "v0=" + "1" * 64}),
                                      (forged, signed(forged, at=time.time() - 600)),
                                      (body, signed(body)), (body, {**signed(body), "X-Slack-Retry-Num": "1"}),
                                      (body, {**signed(body), "X-Slack-Retry-Num": "2"})]:
                    statuses.append((await http.post("/slack/actions", data=data, headers=headers)).status)
            await producer.stop()
            await notifier.until(lambda: notifier.refs.get(incident).acts, "the approval never reached the page")
            return statuses, await read_all(kafka, topics.approvals), await read_all(kafka, topics.feedback)
    statuses, approvals, feedback = asyncio.run(scenario())
    assert statuses == [401, 401, 200, 200, 200]
    assert len(approvals) == 1 and feedback == []
    assert (approvals[0].incident_id, approvals[0].runbook, approvals[0].user_id) == (incident, "RB-DB-001",
                                                                                      "U024BE7LH")
    last = slack_api.of("chat.update")[-1]
    assert "Approved `RB-DB-001` by <@U024BE7LH>" in json.dumps(last.params["blocks"], ensure_ascii=False)


def test_unreadable_records_are_counted_and_skipped_and_the_stream_goes_on(kafka, slack_api):
    incident = STORM[0].incident_id
    poison = [b"", b"\xff\xfe not json", b'{"incident_id": "x"}', b"[]", b'"' + b"x" * 500_000 + b'"', None]

    async def scenario():
        topics = await fresh_topics(kafka)
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", max_request_size=2_000_000)
        await producer.start()
        for topic in (topics.diagnoses, topics.approvals, topics.messages, topics.versions):
            for value in poison:
                await producer.send_and_wait(topic.name, value, key=b"poison")
        await producer.stop()
        async with SlackNotifier(kafka, topics, slack_api, f"g-{uuid.uuid4().hex[:6]}") as notifier:
            await produce(kafka, topics.diagnoses, STORM[:2])
            await notifier.shown(incident, 2)
            return notifier.refs.counts, notifier.handled.counts, notifier.notifier.counts
    references, versions, counts = asyncio.run(scenario())
    assert references["malformed"] == versions["malformed"] == len(poison) - 1  # a null value is a tombstone
    assert sum(n for what, n in counts.items() if what.startswith("malformed_")) == 2 * len(poison)  # null too
    assert len(top_level_posts(slack_api)) == 1
