"""Helpers for the executor's integration tests: a broker, the topics, records in and remediation events out."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.actions import Approval, RemediationEvent
from pipeline.diagnose import Diagnosis, RootCause
from topics.catalog import APPROVALS, DIAGNOSES, EXECUTOR_LEDGER, REMEDIATIONS, Topic

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 90.0  # an upper bound for a run to show up, never a speed target


def local_kafka():
    """deploy/local/kafka.py, imported by path."""
    spec = importlib.util.spec_from_file_location("local_kafka", ROOT / "deploy" / "local" / "kafka.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def create_topics(bootstrap: str) -> None:
    """The executor's topics with one partition each, so records of one test keep their order."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics: tuple[Topic, ...] = (DIAGNOSES, APPROVALS, REMEDIATIONS, EXECUTOR_LEDGER)
        await admin.create_topics([NewTopic(t.name, 1, 1, topic_configs=t.topic_configs()) for t in topics])
    finally:
        await admin.close()


class Bus:
    """Sends diagnoses and approvals, raw bytes too, and reads remediation events, from a test's thread."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.loop = asyncio.new_event_loop()
        self.producer, self.reader = self.loop.run_until_complete(self._start())
        self.seen: list[RemediationEvent] = []

    async def _start(self) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        reader = AIOKafkaConsumer(REMEDIATIONS.name, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
                                  enable_auto_commit=False)
        await producer.start()
        await reader.start()
        return producer, reader

    def send(self, topic: Topic, key: str, value) -> None:
        raw = value if isinstance(value, bytes) else topic.encode(value)
        self.loop.run_until_complete(self.producer.send_and_wait(topic.name, raw, key=key.encode()))

    def diagnosis(self, diagnosis: Diagnosis) -> None:
        self.send(DIAGNOSES, diagnosis.incident_id, diagnosis)

    def approve(self, approval: Approval) -> None:
        self.send(APPROVALS, approval.incident_id, approval)

    def events(self, incident: str) -> list[RemediationEvent]:
        self._poll(0.2)
        return [e for e in self.seen if e.incident_id == incident]

    def wait_for(self, incident: str, done: Callable[[list[RemediationEvent]], bool],
                 timeout: float = WAIT_S) -> list[RemediationEvent]:
        """The incident's events once `done` holds for them; fails with what was seen if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(incident)
            if done(found):
                return found
        raise AssertionError(f"{incident}: gave up waiting; saw {[(e.step, e.detail) for e in self.events(incident)]}")

    def _poll(self, seconds: float) -> None:
        batches = self.loop.run_until_complete(self.reader.getmany(timeout_ms=int(seconds * 1000)))
        for records in batches.values():
            self.seen += [REMEDIATIONS.decode(r.value) for r in records]

    def close(self) -> None:
        self.loop.run_until_complete(self.reader.stop())
        self.loop.run_until_complete(self.producer.stop())
        self.loop.close()


def steps(events: list[RemediationEvent]) -> list[str]:
    return [e.step for e in events]


def has(step: str) -> Callable[[list[RemediationEvent]], bool]:
    return lambda events: step in steps(events)


def diagnosis(incident: str, service: str, runbook: str = "RB-DEMO-001", version: int = 1,
              confidence: float = 0.8, **labels: str) -> Diagnosis:
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    return Diagnosis(
        incident_id=incident, version=version, status="firing", scope="default", opened_at=now, updated_at=now,
        paged_at=now, root_cause=RootCause(service=service, alert="StormdrainDemoDown", labels=labels),
        candidates=[], confidence=confidence, affected_services=[service], fingerprints=[], alert_count=1,
        unique_alerts=1, recommended_runbook=runbook, summary=f"{service} is down", evidence=[])


def approval(incident: str, user: str = "UONCALL", runbook: str = "RB-DEMO-001", version: int = 1,
             request: str = "req-1") -> Approval:
    from datetime import datetime, timezone

    return Approval(incident_id=incident, version=version, user_id=user, at=datetime.now(timezone.utc),
                    request_id=request, runbook=runbook)


class ExecutorProcess:
    """`stormdrain executor` as a child process, so a test can SIGKILL it."""

    def __init__(self, bootstrap: str, catalog: Path, work: Path, group: str):
        self.args = [sys.executable, "-m", "pipeline.cli", "executor", "--bootstrap", bootstrap, "--runbooks",
                     str(catalog), "--work-dir", str(work / "work"), "--scratch", str(work / "scratch"),
                     "--group", group, "--session-timeout-ms", "6000"]
        self.log = work / f"{group}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ExecutorProcess":
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        out.close()
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode
