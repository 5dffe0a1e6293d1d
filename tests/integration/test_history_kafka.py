"""Replay from Kafka reads alerts.raw by time range and touches no live consumer group or topic.

A real broker (deploy/local/kafka.py). A live consumer group stays in its
group on the alerts topic while the replay runs, as correlate would; the
replay must not join it or any group, move its offsets, cause a rebalance or
write to any topic but the one it was told to republish to. Topic names are
unique per test.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.alerts import AlertRecord, format_time
from tests.timeline import alert, require_ci_part
from topics.catalog import ALERTS_RAW, DIAGNOSES

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(timezone.utc).replace(microsecond=0)
WINDOW = (NOW - timedelta(hours=2), NOW - timedelta(hours=1))


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("local_kafka", ROOT / "deploy/local/kafka.py")
    kafka = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kafka)
    data = tmp_path_factory.mktemp("kafka")
    try:
        address = kafka.start(port=0, data_dir=data)
    except kafka.KafkaError as exc:
        require_ci_part(f"Kafka broker: {exc}")
    yield address
    kafka.stop(data_dir=data)


def _records(offset: timedelta, service: str, count: int) -> list[AlertRecord]:
    """A small storm of `service` alerts, received from `offset` after the start of the window on."""
    out = []
    for i in range(count):
        when = format_time(WINDOW[0] + offset + timedelta(seconds=i))
        body = {**alert(f"Alert{i}", service), "startsAt": when}
        out.append(AlertRecord.model_validate({"received_at": when, "scope": "default", "alert": body}))
    return out


BEFORE = _records(timedelta(minutes=-30), "ads", 5)
INSIDE = _records(timedelta(minutes=10), "orders", 8)
AFTER = _records(timedelta(minutes=90), "payments", 5)
HOSTILE = [b'{"kind": "alert", "received_at": "garbage"', b'{"a":\n1}\r\n{"b": 2}', None, b"\xff" * 5000]


async def _prepare(bootstrap: str, raw: str, republish: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(raw, 3, 1), NewTopic(republish, 1, 1), NewTopic(DIAGNOSES.name, 1, 1)]
        await admin.create_topics([t for t in wanted if t.name not in existing])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value, at in [(ALERTS_RAW.encode(r), r.received_at) for r in BEFORE + INSIDE] + \
                [(value, WINDOW[0] + timedelta(minutes=20)) for value in HOSTILE] + \
                [(ALERTS_RAW.encode(r), r.received_at) for r in AFTER]:
            await producer.send_and_wait(raw, value, key=b"default", timestamp_ms=int(at.timestamp() * 1000))
    finally:
        await producer.stop()


class _Rebalances(ConsumerRebalanceListener):
    def __init__(self):
        self.assigned = 0

    async def on_partitions_revoked(self, revoked):
        pass

    async def on_partitions_assigned(self, assigned):
        self.assigned += 1


async def _state(bootstrap: str, group: str) -> dict:
    """Every group, the live group's committed offsets, and every topic's end offsets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        topics = [t for t in await admin.list_topics() if not t.startswith("__")]
        partitions = [TopicPartition(t["topic"], p["partition"]) for t in await admin.describe_topics(topics)
                      for p in t["partitions"]]
        ends = await consumer.end_offsets(partitions)
        groups = sorted(g[0] for g in await admin.list_consumer_groups())
        committed = {tp: m.offset for tp, m in (await admin.list_consumer_group_offsets(group)).items()}
        return {"groups": groups, "committed": committed, "ends": {f"{tp.topic}[{tp.partition}]": o
                                                                   for tp, o in ends.items()}}
    finally:
        await consumer.stop()
        await admin.close()


async def _replay(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline.cli", "replay", *args, "--no-progress", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, err.decode()


async def _with_live_group(bootstrap: str, raw: str, group: str, run):
    """Keep a live group member on the alerts topic (offsets committed) while `run` runs."""
    listener = _Rebalances()
    live = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                            auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=500)
    live.subscribe([raw], listener=listener)
    await live.start()
    try:
        await live.getmany(timeout_ms=3000)
        await live.commit()
        before = await _state(bootstrap, group)
        result = await run()
        await live.getmany(timeout_ms=500)  # the member still polls; a rebalance would show here
        after = await _state(bootstrap, group)
        return before, after, result, listener.assigned
    finally:
        await live.stop()


def test_a_kafka_replay_reads_its_time_range_and_leaves_live_groups_and_topics_alone(bootstrap, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    raw, republish, group = f"test-{suffix}.alerts.raw", f"whatif-{suffix}.diagnoses", f"stormdrain-live-{suffix}"
    out = tmp_path / "diagnoses.ndjson"
    source = ["--from-kafka", "--bootstrap", bootstrap, "--topic", raw,
              "--since", format_time(WINDOW[0]), "--until", format_time(WINDOW[1])]

    async def replays():
        refused = await _replay(*source, "--republish", DIAGNOSES.name, "--out", str(out))
        done = await _replay(*source, "--republish", republish, "--out", str(out))
        return refused, done

    asyncio.run(_prepare(bootstrap, raw, republish))
    before, after, (refused, done), rebalances = asyncio.run(_with_live_group(bootstrap, raw, group, replays))

    assert refused[0] == 2 and "live stormdrain topic" in refused[1]
    assert done[0] == 0, done[1]
    assert f"lines skipped  {len(HOSTILE)}" in done[1]  # malformed records are reported, not dropped
    versions = [json.loads(line) for line in out.read_text().splitlines()]
    assert {s for v in versions for s in v["affected_services"]} == {"orders"}  # only the window's records
    assert versions[-1]["unique_alerts"] == len(INSIDE)
    assert after["groups"] == before["groups"]  # no group joined or created
    assert after["committed"] == before["committed"] and before["committed"]
    assert rebalances == 1  # the live member was assigned once, when it joined
    grown = {name: after["ends"][name] - before["ends"][name] for name in before["ends"]
             if after["ends"][name] != before["ends"][name]}
    assert grown == {f"{republish}[0]": len(versions)}  # the one topic it was told to write to
    assert f"{DIAGNOSES.name}[0]" in before["ends"]
