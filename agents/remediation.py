"""`stormdrain executor`: approvals and diagnoses in, runbook runs out, every step on `remediations`.

Its own consumer group reads `diagnoses` and `approvals`; the pure Remediator
decides; this loop only decodes, calls it, writes the ledger and events, and
hands runs to worker threads. A playbook never runs inside the consume loop,
so a ten-minute run never keeps the consumer from polling, and the group
never rebalances because of it.

At start the executor reads its whole ledger (a compacted topic): a run found
started and never finished was interrupted by a crash; it is reported, and
never run again. Diagnoses are re-read from a lookback window on every
assignment, so an approval that arrives after a restart still finds the
version it approved.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from agents.options import Kafka, kafka_of, signalled_stop
from agents.runbook_runner import Phase, Workspace, check_diff, execute, require_ansible
from pipeline.actions import Approval
from pipeline.alerts import InputError
from pipeline.config import parse_duration, read_structured
from pipeline.diagnose import Diagnosis
from pipeline.remediate import (
    ExecutorState, LedgerEntry, Output, Publish, Record, Remediator, RunPlan, RunResult, Settings, Start, event,
)
from pipeline.runbooks import DEFAULT_CATALOG, load_catalog
from topics.catalog import APPROVALS, DIAGNOSES, EXECUTOR_LEDGER, NAMESPACE, REMEDIATIONS, Topic

log = logging.getLogger("stormdrain.executor")
TICK_S = 1.0


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Options:
    """How the executor connects and where it works."""

    bootstrap: str
    workspace: Workspace
    group_id: str = f"{NAMESPACE}.executor"
    lookback: timedelta = timedelta(hours=24)  # diagnoses re-read on assignment
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 10_000
    namespace: str = NAMESPACE

    def topic(self, topic: Topic) -> Topic:
        return topic.in_namespace(self.namespace)


@dataclass
class Stats:
    """What the executor counts, beyond the Remediator's own counts."""

    assignments: int = 0
    revocations: int = 0
    undecodable: int = 0
    records: int = 0


class _Assignments(ConsumerRebalanceListener):
    """Counts rebalances, and rewinds `diagnoses` to the lookback window on every assignment."""

    def __init__(self, runtime: "ExecutorRuntime"):
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked):
        if revoked:
            self.runtime.stats.revocations += 1
            log.warning("rebalance: partitions revoked %s", sorted(str(tp) for tp in revoked))

    async def on_partitions_assigned(self, assigned):
        self.runtime.stats.assignments += 1
        log.info("assigned %s", sorted(str(tp) for tp in assigned))
        await self.runtime.rewind([tp for tp in assigned if tp.topic == self.runtime.diagnoses.name])


class ExecutorRuntime:
    """One executor process: the consume loop, the ledger, and the worker threads that run playbooks."""

    def __init__(self, remediator: Remediator, options: Options):
        self.remediator = remediator
        self.options = options
        self.diagnoses, self.approvals, self.ledger, self.remediations = (
            options.topic(t) for t in (DIAGNOSES, APPROVALS, EXECUTOR_LEDGER, REMEDIATIONS))
        self.state = ExecutorState()
        self.stats = Stats()
        self.cancel = threading.Event()
        self._lock = asyncio.Lock()
        self._runs: set[asyncio.Task] = set()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Recover from the ledger, then consume until `stop` is set; runs in flight are cancelled at the end."""
        self._producer = AIOKafkaProducer(bootstrap_servers=self.options.bootstrap, enable_idempotence=True,
                                          acks="all")
        await self._producer.start()
        try:
            async with self._lock:
                ledger = await self._read_ledger()
                await self._apply(self.remediator.recover(self.state, ledger, utcnow()))
            await self._consume(stop)
        finally:
            await self._shutdown()

    async def _consume(self, stop: asyncio.Event) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.options.bootstrap, group_id=self.options.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_interval_ms=self.options.max_poll_interval_ms,
            session_timeout_ms=self.options.session_timeout_ms,
            heartbeat_interval_ms=max(100, self.options.session_timeout_ms // 3))
        self._consumer.subscribe([self.diagnoses.name, self.approvals.name], listener=_Assignments(self))
        await self._consumer.start()
        while not stop.is_set():
            batches = await self._consumer.getmany(timeout_ms=int(TICK_S * 1000), max_records=200)
            for records in batches.values():
                for record in records:
                    await self._record(record)
            await self._handle(None)  # a tick: old approvals expire
            if batches:
                await self._consumer.commit()

    async def _record(self, record) -> None:
        """Decode one record and hand it to the Remediator; a record that cannot be read is counted and logged."""
        topic: Topic = self.diagnoses if record.topic == self.diagnoses.name else self.approvals
        self.stats.records += 1
        try:
            item: Diagnosis | Approval = topic.decode(record.value)
        except InputError as exc:
            self.stats.undecodable += 1
            log.warning("undecodable %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
            return
        await self._handle(item)

    async def _handle(self, item: Diagnosis | Approval | RunResult | None) -> None:
        """Decide under the lock, then carry the outputs out in their order (a ledger record before its run)."""
        async with self._lock:
            await self._apply(self.remediator.step(self.state, item, utcnow()))

    async def _apply(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, Record):
                await self._send(self.ledger, output.entry.plan.key, output.entry)
            elif isinstance(output, Publish):
                await self._publish(output.event)
            elif isinstance(output, Start):
                task = asyncio.create_task(self._run(output.plan))
                self._runs.add(task)
                task.add_done_callback(self._runs.discard)

    async def _send(self, topic: Topic, key: str, value) -> None:
        """Send and wait for the broker's acknowledgement: a ledger record is durable before its run starts."""
        await self._producer.send_and_wait(topic.name, topic.encode(value), key=key.encode())

    async def _publish(self, remediation) -> None:
        log.info("%s %s %s %s: %s", remediation.incident_id, remediation.runbook, remediation.run_id,
                 remediation.step, remediation.detail)
        await self._send(self.remediations, remediation.incident_id, remediation)

    async def _run(self, plan: RunPlan) -> None:
        """One run in a worker thread; its check diff is published as soon as check mode ends."""
        loop = asyncio.get_running_loop()

        def on_check(phase: Phase) -> None:
            check = event(plan, "check", utcnow(), diff=check_diff(phase), duration_s=phase.seconds,
                          detail=f"check mode {phase.status}: what the run would change")
            asyncio.run_coroutine_threadsafe(self._publish(check), loop).result()

        try:
            result = await asyncio.to_thread(execute, plan, self.options.workspace, on_check, self.cancel)
        except Exception as exc:  # a run that could not even start is a failed run, and says why
            log.exception("run %s could not run", plan.run_id)
            result = RunResult(run_id=plan.run_id, step="failed", duration_s=0.0, detail=f"could not run: {exc}")
        await self._handle(result)

    async def rewind(self, partitions: list[TopicPartition]) -> None:
        """Start `diagnoses` at the lookback window, so approved versions are known again after a restart."""
        if not partitions:
            return
        since = int((utcnow() - self.options.lookback).timestamp() * 1000)
        found = await self._consumer.offsets_for_times({tp: since for tp in partitions})
        ends = await self._consumer.end_offsets(partitions)
        for tp in partitions:
            self._consumer.seek(tp, found[tp].offset if found.get(tp) else ends[tp])

    async def _read_ledger(self) -> list[LedgerEntry]:
        """Every ledger entry, the latest per key, read from the beginning to the current end."""
        partitions = await _partitions(self._producer, self.ledger.name)
        reader = AIOKafkaConsumer(bootstrap_servers=self.options.bootstrap, enable_auto_commit=False)
        await reader.start()
        try:
            return list((await _read_to_end(reader, self.ledger, partitions)).values())
        finally:
            await reader.stop()

    async def _shutdown(self) -> None:
        self.cancel.set()  # a run still going is cancelled, and reported as failed
        if self._runs:
            await asyncio.gather(*self._runs, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
        await self._producer.stop()


async def _read_to_end(reader: AIOKafkaConsumer, topic: Topic, numbers: set[int]) -> dict[str, LedgerEntry]:
    partitions = [TopicPartition(topic.name, p) for p in sorted(numbers)]
    reader.assign(partitions)
    await reader.seek_to_beginning(*partitions)
    ends = await reader.end_offsets(partitions)
    latest: dict[str, LedgerEntry] = {}
    while [tp for tp in partitions if await reader.position(tp) < ends[tp]]:
        for records in (await reader.getmany(timeout_ms=1000)).values():
            for record in records:
                try:
                    entry = topic.decode(record.value)
                except InputError as exc:
                    log.warning("undecodable ledger record @%d: %s", record.offset, exc)
                    continue
                latest[entry.plan.key] = entry
    return latest


async def _partitions(producer: AIOKafkaProducer, name: str) -> set[int]:
    try:
        return await producer.partitions_for(name)
    except KafkaError as exc:
        raise InputError("ledger", f"topic {name} is not there ({exc}): create the topics first "
                                   "(stormdrain topics create)") from None


# -- command line ------------------------------------------------------------------


def build(args: argparse.Namespace) -> ExecutorRuntime:
    """The runtime the command line describes; a bad catalog or option stops here with the field named."""
    try:
        require_ansible()
    except RuntimeError as exc:
        raise InputError("executor", str(exc)) from None
    catalog_path = Path(args.runbooks) if args.runbooks else DEFAULT_CATALOG
    catalog = load_catalog(catalog_path)
    work = Path(args.work_dir).resolve()
    workspace = Workspace(playbook_dirs=(catalog_path.resolve().parent, DEFAULT_CATALOG.parent),
                          work_dir=work, scratch_dir=Path(args.scratch).resolve() if args.scratch else work / "scratch")
    settings = Settings(max_concurrent=args.max_concurrent, approval_ttl=parse_duration(args.approval_ttl),
                        groups=_groups(args.approver_groups))
    kafka: Kafka = kafka_of(args)
    options = Options(bootstrap=kafka.bootstrap, workspace=workspace, group_id=args.group or kafka.group("executor"),
                      lookback=parse_duration(args.lookback), max_poll_interval_ms=args.max_poll_interval_ms,
                      session_timeout_ms=args.session_timeout_ms, namespace=kafka.namespace)
    return ExecutorRuntime(Remediator(catalog, settings), options)


def _groups(path: str | None) -> dict[str, frozenset[str]]:
    if not path:
        return {}
    data = read_structured(path, "approver groups")
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise InputError(path, "approver groups must map a Slack group id to a list of user ids")
    return {str(group): frozenset(map(str, users)) for group, users in data.items()}


def run_command(args: argparse.Namespace) -> int:
    runtime = build(args)
    asyncio.run(_serve(runtime))
    return 0


async def _serve(runtime: ExecutorRuntime) -> None:
    await runtime.run(signalled_stop())
