"""The remediation executor end to end: real Kafka, real ansible-runner running the local playbook on localhost.

Each test uses its own incidents and services; the executor runs as a child
process (so it can be SIGKILLed), or in this process where a test reads its
rebalance counts.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import pytest

from tests.integration.remediation_support import (
    ROOT, Bus, ExecutorProcess, approval, create_topics, diagnosis, has, local_kafka, steps,
)
from tests.timeline import require_ci_part

pytestmark = pytest.mark.integration
CATALOG = ROOT / "tests" / "fixtures" / "runbooks" / "executor.yaml"
FINAL = ("finished", "failed", "timed_out", "interrupted", "refused")


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    kafka = local_kafka()
    data = tmp_path_factory.mktemp("kafka")
    try:
        bootstrap = kafka.start(port=0, data_dir=data)
    except (kafka.KafkaError, FileNotFoundError, OSError) as exc:
        require_ci_part(f"no local Kafka broker: {exc}")
    try:
        asyncio.run(create_topics(bootstrap))
        yield bootstrap
    finally:
        kafka.stop(data_dir=data)


@pytest.fixture
def bus(kafka):
    bus = Bus(kafka)
    yield bus
    bus.close()


@pytest.fixture
def executor(kafka, tmp_path):
    started: list[ExecutorProcess] = []

    def start(group: str = "") -> ExecutorProcess:
        process = ExecutorProcess(kafka, CATALOG, tmp_path, group or f"executor-{uuid.uuid4().hex[:8]}").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def executions(scratch: Path, service: str) -> list[str]:
    """The journal of the local playbook: one file per real execution."""
    runs = scratch / service / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.exists() else []


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_approved_runs_once_unapproved_never_and_twice_delivered_once(bus, executor, tmp_path):
    quiet, stranger, approved = name("quiet"), name("stranger"), name("approved")
    executor()
    bus.diagnosis(diagnosis(quiet, quiet))  # no approval at all
    bus.diagnosis(diagnosis(stranger, stranger))
    bus.approve(approval(stranger, user="USTRANGER"))
    bus.diagnosis(diagnosis(approved, approved, note="pool raised"))
    bus.approve(approval(approved))
    bus.approve(approval(approved))  # the same approval, delivered twice

    done = bus.wait_for(approved, lambda e: "finished" in steps(e) and "skipped" in steps(e))
    run = [e for e in done if e.step != "skipped"]
    assert steps(run) == ["approved", "started", "check", "finished"] and steps(done).count("skipped") == 1
    assert run[0].by == "UONCALL" and run[-1].duration_s > 0 and "succeeded" in run[-1].detail
    assert "pool raised" in run[2].diff and "state.json" in run[2].diff  # check mode's diff, before the run
    assert len(executions(tmp_path / "scratch", approved)) == 1

    refused = bus.wait_for(stranger, has("refused"))
    assert "not an approver" in refused[0].detail
    assert bus.events(quiet) == []  # its diagnosis came first on the one partition, and nothing ran
    assert executions(tmp_path / "scratch", stranger) == [] and executions(tmp_path / "scratch", quiet) == []


HOSTILE = [("note", "x; rm -rf /"), ("note", "{{ lookup('pipe','id') }}"), ("note", "a" * 10 * 1024),
           ("seconds", "1; sleep 100"), ("fail", "{{ true }}")]


def test_injection_values_reach_the_playbook_only_as_rejected_input(bus, executor, tmp_path):
    executor()
    incidents = [name("hostile") for _ in HOSTILE]
    for incident, (label, value) in zip(incidents, HOSTILE):
        bus.diagnosis(diagnosis(incident, incident, **{label: value}))
        bus.approve(approval(incident))
    for incident, (label, value) in zip(incidents, HOSTILE):
        events = bus.wait_for(incident, lambda e: any(s in FINAL for s in steps(e)))
        assert steps(events) == ["refused"]
        assert f"rejected input: parameter {label}" in events[0].detail and len(events[0].detail) < 300
        assert not (tmp_path / "scratch" / incident).exists()
    assert list((tmp_path / "work").glob("run-*")) == []  # no playbook was even prepared


def test_a_value_that_passes_its_pattern_is_never_templated(bus, executor, tmp_path):
    """Defence in depth: a catalog that allows braces still passes the value as text, never as a template."""
    incident = name("text")
    executor()
    text = "{{ lookup('pipe','id') }}"
    bus.diagnosis(diagnosis(incident, incident, runbook="RB-DEMO-002", note=text))
    bus.approve(approval(incident, runbook="RB-DEMO-002"))
    assert "finished" in steps(bus.wait_for(incident, has("finished")))
    recorded = (tmp_path / "scratch" / incident / "state.json").read_text()
    assert text in recorded and "uid=" not in recorded


def test_a_killed_executor_restarted_mid_run_reports_the_run_interrupted_and_never_reruns_it(bus, executor, tmp_path):
    incident = name("killed")
    first = executor(group="executor-killed")
    bus.diagnosis(diagnosis(incident, incident, seconds="20"))
    bus.approve(approval(incident))
    bus.wait_for(incident, has("started"))
    _wait_until(lambda: executions(tmp_path / "scratch", incident), "the playbook never began its real run")
    first.kill()  # SIGKILL: no chance to finish the ledger entry

    executor(group="executor-killed")
    events = bus.wait_for(incident, has("interrupted"))
    assert "not run again" in events[-1].detail
    bus.approve(approval(incident))  # the approval again, as a redelivery would bring it
    events = bus.wait_for(incident, has("skipped"))
    assert steps(events) == ["approved", "started", "check", "interrupted", "skipped"]
    assert len(executions(tmp_path / "scratch", incident)) == 1


def test_a_stopped_executor_cancels_its_run_and_reports_it(bus, executor, tmp_path):
    incident = name("stopped")
    process = executor()
    bus.diagnosis(diagnosis(incident, incident, seconds="60"))
    bus.approve(approval(incident))
    _wait_until(lambda: executions(tmp_path / "scratch", incident), "the playbook never began its real run")
    assert process.stop() == 0  # SIGTERM
    events = bus.wait_for(incident, has("failed"))
    assert "cancelled as the executor stopped" in events[-1].detail
    assert not (tmp_path / "scratch" / incident / "state.json").exists()  # it never got to its change


def test_a_long_playbook_does_not_rebalance_the_group_and_other_runs_keep_flowing(kafka, bus, tmp_path):
    """max.poll.interval is 3 s here and the playbook takes 15 s: the same property as 5 min against 10 min."""
    from agents.remediation import ExecutorRuntime, Options
    from agents.runbook_runner import Workspace
    from pipeline.remediate import Remediator, Settings
    from pipeline.runbooks import DEFAULT_CATALOG, load_catalog

    workspace = Workspace((DEFAULT_CATALOG.parent,), tmp_path / "work", tmp_path / "scratch")
    runtime = ExecutorRuntime(Remediator(load_catalog(CATALOG), Settings()), Options(
        bootstrap=kafka, workspace=workspace, group_id=name("executor"), max_poll_interval_ms=3000,
        session_timeout_ms=6000))
    stop, thread = _serve_in_thread(runtime)
    try:
        slow, quick = name("slow"), name("quick")
        bus.diagnosis(diagnosis(slow, slow, seconds="15"))
        bus.approve(approval(slow))
        bus.wait_for(slow, has("check"))
        bus.diagnosis(diagnosis(quick, quick))
        bus.approve(approval(quick))
        assert "finished" in steps(bus.wait_for(quick, has("finished")))
        assert "finished" not in steps(bus.events(slow))  # the quick run went through while the slow one ran
        assert "finished" in steps(bus.wait_for(slow, has("finished")))
        assert (runtime.stats.assignments, runtime.stats.revocations) == (1, 0)
    finally:
        stop()
        thread.join(timeout=60)


def test_an_unreadable_record_is_counted_and_the_executor_goes_on(bus, executor, tmp_path):
    from topics.catalog import APPROVALS, DIAGNOSES

    incident = name("after-junk")
    process = executor()
    bus.send(APPROVALS, "junk", b"{not json")
    bus.send(APPROVALS, "junk", b'{"incident_id": "' + b"x" * 100_000 + b'"}')
    bus.send(DIAGNOSES, "junk", b"\x00\xff" * 1000)
    bus.diagnosis(diagnosis(incident, incident))
    bus.approve(approval(incident, user="USTRANGER"))  # a quick answer that shows the executor went on
    assert steps(bus.wait_for(incident, has("refused"))) == ["refused"]
    # the junk sits on two topics, read independently: wait for all three to be counted
    _wait_until(lambda: process.log.read_text().count("undecodable") >= 3, "three undecodable records counted", 30)
    assert process.log.read_text().count("undecodable") == 3


def _serve_in_thread(runtime):
    stop = None
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def main():
        nonlocal stop
        stop = asyncio.Event()
        ready.set()
        await runtime.run(stop)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    return (lambda: loop.call_soon_threadsafe(stop.set)), thread


def _wait_until(condition, message: str, timeout: float = 90.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(message)
