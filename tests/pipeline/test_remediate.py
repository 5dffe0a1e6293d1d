"""The executor's decisions: approval, exactly once, a lock per target, cooldown, a global cap, recovery."""

import pytest

from pipeline.actions import Approval
from pipeline.diagnose import Diagnosis, RootCause
from pipeline.remediate import (
    ExecutorState, LedgerEntry, Publish, Record, Remediator, RunResult, Settings, Start,
)
from pipeline.runbooks import parse_catalog
from tests.timeline import at
from topics.catalog import EXECUTOR_LEDGER

SERVICE = {"from": "root.service", "pattern": "[a-z][a-z0-9-]{0,62}"}
CATALOG = parse_catalog({"runbooks": [
    {"id": "RB-DEMO-001", "title": "demo", "playbook": "rb-demo-001-local.yml", "match": {"alertname": "Demo.*"},
     "parameters": {"service": SERVICE, "note": {"from": "label.note", "default": "", "pattern": "[a-z ]{0,20}"}},
     "approvers": {"users": ["UONCALL"], "groups": ["SSRE"]}, "cooldown": "10m", "timeout": "5m"},
    {"id": "RB-AUTO-001", "title": "auto", "playbook": "rb-demo-001-local.yml", "match": {"alertname": "Auto.*"},
     "parameters": {"service": SERVICE}, "auto_approve": True, "min_confidence": 0.9, "cooldown": "0s"},
]})


def diagnosis(incident="inc-1", version=1, runbook="RB-DEMO-001", service="checkout", confidence=0.8,
              when=0.0, status="firing", **labels) -> Diagnosis:
    return Diagnosis(
        incident_id=incident, version=version, status=status, scope="default", opened_at=at(0), updated_at=at(when),
        paged_at=None, root_cause=RootCause(service=service, alert="DemoDown", labels=labels), candidates=[],
        confidence=confidence, affected_services=[service], fingerprints=[], alert_count=1, unique_alerts=1,
        recommended_runbook=runbook, summary="", evidence=[])


def approval(incident="inc-1", version=1, runbook="RB-DEMO-001", user="UONCALL", when=0.0, request="req-1"):
    return Approval(incident_id=incident, version=version, user_id=user, at=at(when), request_id=request,
                    runbook=runbook)


class Executor:
    """A timeline driver: feed inputs at event times, read what the executor decided."""

    def __init__(self, **settings):
        self.remediator = Remediator(CATALOG, Settings(**settings))
        self.state = ExecutorState()
        self.outputs = []

    def feed(self, item, when: float = 0.0):
        out = self.remediator.step(self.state, item, at(when))
        self.outputs += out
        return out

    def starts(self):
        return [o.plan for o in self.outputs if isinstance(o, Start)]

    def steps(self, incident=None):
        return [o.event.step for o in self.outputs
                if isinstance(o, Publish) and (incident is None or o.event.incident_id == incident)]

    def details(self):
        return [o.event.detail for o in self.outputs if isinstance(o, Publish)]

    def approved(self, incident="inc-1", service="checkout", when: float = 0.0):
        """A diagnosis of the incident and its approval by the on-call, at `when`."""
        self.feed(diagnosis(incident=incident, service=service), when)
        return self.feed(approval(incident=incident, when=when), when)

    def finish(self, plan, when: float, step="finished"):
        return self.feed(RunResult(run_id=plan.run_id, step=step, duration_s=3.0), when)


def test_an_approved_run_is_recorded_before_it_starts():
    ex = Executor()
    ex.feed(diagnosis())
    out = ex.feed(approval(when=5), 5)
    kinds = [type(o).__name__ + ":" + (o.entry.state if isinstance(o, Record) else "") for o in out]
    assert kinds == ["Record:queued", "Publish:", "Record:started", "Publish:", "Start:"]
    plan = ex.starts()[0]
    assert plan.parameters == {"service": "checkout", "note": ""} and plan.by == "UONCALL"
    assert ex.steps() == ["approved", "started"]


def test_no_approval_no_run():
    ex = Executor()
    ex.feed(diagnosis())
    ex.feed(None, 3600)
    assert ex.starts() == [] and ex.outputs == []


@pytest.mark.parametrize("user, runs", [("UONCALL", 1), ("UMEMBER", 1), ("USTRANGER", 0)])
def test_only_an_allowed_approver_or_group_member_runs_it(user, runs):
    ex = Executor(groups={"SSRE": frozenset({"UMEMBER"})})
    ex.feed(diagnosis())
    ex.feed(approval(user=user))
    assert len(ex.starts()) == runs
    if not runs:
        assert ex.steps() == ["refused"] and "not an approver" in ex.details()[0]


def test_the_same_approval_twice_runs_once():
    ex = Executor()
    ex.feed(diagnosis())
    ex.feed(approval())
    ex.feed(approval(), 1)  # redelivered
    ex.feed(approval(request="req-2", when=2), 2)  # a second click
    assert len(ex.starts()) == 1
    assert ex.steps() == ["approved", "started", "skipped", "skipped"]


def test_a_double_click_is_answered_with_one_run_id_so_the_diagnosis_gains_one_version():
    ex = Executor(groups={})
    ex.feed(diagnosis())
    ex.feed(approval(user="USTRANGER", request="req-1"))
    ex.feed(approval(user="USTRANGER", request="req-2"), 1)  # the same person's second click on the same page
    ex.feed(approval(user="UONCALL", request="req-3"), 2)
    ex.feed(approval(user="UONCALL", request="req-4"), 3)
    events = [o.event for o in ex.outputs if isinstance(o, Publish)]
    assert [e.step for e in events] == ["refused", "refused", "approved", "started", "skipped"]
    assert events[0].run_id == events[1].run_id
    assert len({(e.run_id, e.step) for e in events}) == 4


def test_an_approval_waits_for_the_version_it_names():
    ex = Executor()
    ex.feed(approval(version=2))
    assert ex.starts() == []
    ex.feed(diagnosis(version=1), 1)
    assert ex.starts() == []
    ex.feed(diagnosis(version=2), 2)
    assert ex.starts()[0].version == 2


def test_an_approval_whose_version_never_comes_is_refused_once_old():
    ex = Executor()
    ex.feed(approval(version=9))
    ex.feed(None, 60)
    assert ex.steps() == []
    ex.feed(None, 16 * 60)
    assert ex.steps() == ["refused"] and "never seen" in ex.details()[0]


def test_an_old_approval_is_refused():
    ex = Executor()
    ex.feed(diagnosis())
    ex.feed(approval(when=0), 20 * 60)
    assert ex.starts() == [] and ex.steps() == ["refused"]


def test_an_approval_for_a_runbook_the_version_does_not_recommend_is_refused():
    ex = Executor()
    ex.feed(diagnosis(runbook="RB-AUTO-001", confidence=0.1))
    ex.feed(approval(runbook="RB-DEMO-001"))
    assert ex.starts() == [] and "recommends RB-AUTO-001" in ex.details()[-1]


@pytest.mark.parametrize("note", ["x; rm -rf /", "{{ lookup('pipe','id') }}", "a" * 10240])
def test_hostile_label_values_refuse_the_run(note):
    ex = Executor()
    ex.feed(diagnosis(note=note))
    ex.feed(approval())
    assert ex.starts() == [] and ex.steps() == ["refused"]
    assert "rejected input: parameter note" in ex.details()[0]


def test_one_run_at_a_time_per_target():
    ex = Executor(max_concurrent=5)
    ex.remediator.catalog = parse_catalog({"runbooks": [
        {**CATALOG.get("RB-DEMO-001").model_dump(by_alias=True), "cooldown": "0s"}]})
    for incident in ("inc-1", "inc-2"):
        ex.approved(incident)
    assert [p.incident_id for p in ex.starts()] == ["inc-1"]
    ex.finish(ex.starts()[0], 30)
    assert [p.incident_id for p in ex.starts()] == ["inc-1", "inc-2"]


def test_a_cooldown_follows_each_run():
    ex = Executor()
    ex.approved()
    ex.finish(ex.starts()[0], 30)
    ex.approved("inc-2", when=60)
    assert len(ex.starts()) == 1 and "cools down until" in ex.details()[-1]
    ex.approved("inc-3", when=631)
    assert len(ex.starts()) == 2


def test_a_global_cap_on_concurrent_runs():
    ex = Executor(max_concurrent=1)
    for incident, service in (("inc-1", "a"), ("inc-2", "b")):
        ex.approved(incident, service)
    assert [p.target for p in ex.starts()] == ["a"]
    ex.finish(ex.starts()[0], 10)
    assert [p.target for p in ex.starts()] == ["a", "b"]


def test_a_finished_run_is_recorded_and_reported_with_its_duration():
    ex = Executor()
    ex.approved()
    out = ex.finish(ex.starts()[0], 40, step="failed")
    assert [o.entry.result for o in out if isinstance(o, Record)] == ["failed"]
    final = [o.event for o in out if isinstance(o, Publish)][0]
    assert final.final and final.duration_s == 3.0 and final.by == "UONCALL"


def test_auto_approve_runs_above_the_threshold_only_once():
    ex = Executor()
    ex.feed(diagnosis(runbook="RB-AUTO-001", confidence=0.95))
    ex.feed(diagnosis(runbook="RB-AUTO-001", confidence=0.97, version=2), 1)
    assert len(ex.starts()) == 1 and ex.starts()[0].by == "auto"


def test_auto_approve_below_the_threshold_says_so_once_and_waits():
    ex = Executor()
    for version in (1, 2, 3):
        ex.feed(diagnosis(runbook="RB-AUTO-001", confidence=0.5, version=version), version)
    assert ex.starts() == [] and ex.steps() == ["skipped"]
    assert "needs confidence above 90%" in ex.details()[0]


def test_auto_approve_never_acts_on_an_old_or_resolved_diagnosis():
    ex = Executor()
    ex.feed(diagnosis(runbook="RB-AUTO-001", confidence=0.99, when=0), 3600)
    ex.feed(diagnosis(runbook="RB-AUTO-001", confidence=0.99, status="resolved", version=2, when=3600), 3600)
    assert ex.starts() == []


def test_a_run_found_started_after_a_restart_is_reported_interrupted_and_never_rerun():
    before = Executor()
    before.approved()
    ledger = [o.entry for o in before.outputs if isinstance(o, Record)][-1]
    assert ledger.state == "started"
    after = Executor()
    out = after.remediator.recover(after.state, [ledger], at(100))
    assert [o.entry.result for o in out if isinstance(o, Record)] == ["interrupted"]
    after.outputs += out
    after.feed(diagnosis(), 101)
    after.feed(approval(when=101), 101)  # the approval, delivered again
    assert after.starts() == [] and after.steps() == ["interrupted", "skipped"]


def test_a_run_found_queued_after_a_restart_still_runs():
    before = Executor(max_concurrent=1)
    for incident, service in (("inc-1", "a"), ("inc-2", "b")):
        before.approved(incident, service)
    latest = {o.entry.plan.key: o.entry for o in before.outputs if isinstance(o, Record)}
    after = Executor(max_concurrent=1)
    out = after.remediator.recover(after.state, list(latest.values()), at(100))
    assert [o.plan.incident_id for o in out if isinstance(o, Start)] == ["inc-2"]


def test_a_ledger_entry_round_trips_through_its_topic():
    ex = Executor()
    ex.approved()
    entry = [o.entry for o in ex.outputs if isinstance(o, Record)][-1]
    assert EXECUTOR_LEDGER.decode(EXECUTOR_LEDGER.encode(entry)) == entry
    assert isinstance(EXECUTOR_LEDGER.decode(EXECUTOR_LEDGER.encode(entry)), LedgerEntry)


def test_remembered_diagnoses_are_bounded():
    ex = Executor(versions_kept=3, incidents_kept=2)
    for incident in ("a", "b", "c"):
        for version in range(1, 6):
            ex.feed(diagnosis(incident=incident, version=version))
    assert list(ex.state.diagnoses) == ["b", "c"] and sorted(ex.state.diagnoses["c"]) == [3, 4, 5]


def test_pending_approvals_are_bounded():
    ex = Executor(pending_limit=2)
    for n in range(3):
        ex.feed(approval(incident=f"inc-{n}"))
    assert len(ex.state.pending) == 2 and ex.steps() == ["refused"]


def test_a_final_step_gives_the_diagnosis_a_new_version_that_says_what_ran():
    from tests.timeline import alert, driver, webhook

    run = driver()
    run.pipe_webhook(webhook(alert("StormdrainDemoDown", "checkout", namespace="shop")), at(30))
    run.advance(60)
    first = run.read("diagnoses")[-1]
    ex = Executor()
    ex.remediator.catalog = parse_catalog({"runbooks": [
        {**CATALOG.get("RB-DEMO-001").model_dump(by_alias=True), "match": {"alertname": "StormdrainDemo.*"}}]})
    ex.feed(first, 60)
    ex.feed(approval(incident=first.incident_id, version=first.version, when=60), 60)
    for output in ex.finish(ex.starts()[0], 90):
        if isinstance(output, Publish):
            run.remediate(output.event)
    latest = run.read("diagnoses")[-1]
    assert latest.version == first.version + 1
    assert any("RB-DEMO-001 finished after 3s (approved by UONCALL)" in e.text for e in latest.evidence)
