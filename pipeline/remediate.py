"""The remediation executor's decisions: whether a run may start, exactly once, one per target, within the caps.

The operator takes its state, an event (a diagnosis, an approval, a run's
result, or nothing for a tick) and `now`, and returns what to do: ledger
records to write, remediation events to publish, runs to start. It never runs
anything itself; the Kafka runtime writes the ledger record of a run and waits
for the broker's acknowledgement before it starts the playbook, so a run is
recorded before it begins and a restart finds it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict

from pipeline.actions import Approval, RemediationEvent, RemediationStep
from pipeline.alerts import Time
from pipeline.diagnose import Diagnosis
from pipeline.parameters import ParameterError, resolve
from pipeline.runbooks import Catalog, Runbook, Scalar

RAN = ("finished", "failed", "timed_out", "interrupted")  # results that count as the one run


class RunPlan(BaseModel):
    """One approved run: which playbook, with which checked parameters, for whom, within what limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    incident_id: str
    version: int
    runbook: str
    playbook: str
    parameters: dict[str, Scalar]
    target: str
    by: str
    check_first: bool
    timeout_s: float
    cooldown_s: float

    @property
    def key(self) -> str:
        return ledger_key(self.incident_id, self.runbook)


class LedgerEntry(BaseModel):
    """The executor ledger topic value: a run's plan and how far it got, keyed by incident and runbook."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plan: RunPlan
    state: Literal["queued", "started", "finished"]
    result: RemediationStep | None = None
    at: Time

    @property
    def blocks(self) -> bool:
        """Whether this entry is the one run of its incident and runbook (a refusal is not)."""
        return self.state != "finished" or self.result in RAN


class RunResult(BaseModel):
    """What the runtime reports when a playbook run ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    step: Literal["finished", "failed", "timed_out"]
    duration_s: float
    detail: str = ""
    output_tail: str = ""


@dataclass(frozen=True)
class Record:
    entry: LedgerEntry


@dataclass(frozen=True)
class Publish:
    event: RemediationEvent


@dataclass(frozen=True)
class Start:
    plan: RunPlan


Output = Record | Publish | Start


@dataclass(frozen=True)
class Settings:
    """How the executor behaves beyond the catalog."""

    max_concurrent: int = 2  # runs at a time, over all targets
    approval_ttl: timedelta = timedelta(minutes=15)  # an older approval is refused, not run
    auto_max_age: timedelta = timedelta(minutes=10)  # auto-approve never acts on an older diagnosis
    pending_limit: int = 1000  # approvals waiting for their diagnosis version
    versions_kept: int = 64
    incidents_kept: int = 1000
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)  # Slack group id -> user ids


@dataclass
class ExecutorState:
    """What the executor knows: the ledger, recent diagnoses, waiting approvals and runs, locks and cooldowns."""

    ledger: dict[str, LedgerEntry] = field(default_factory=dict)
    diagnoses: dict[str, dict[int, Diagnosis]] = field(default_factory=dict)
    pending: list[Approval] = field(default_factory=list)
    queue: list[str] = field(default_factory=list)  # ledger keys, oldest first
    running: dict[str, str] = field(default_factory=dict)  # target -> ledger key
    cooldown_until: dict[str, datetime] = field(default_factory=dict)
    noted: set[str] = field(default_factory=set)  # auto-approve notes already published
    counts: Counter = field(default_factory=Counter)


def ledger_key(incident_id: str, runbook: str) -> str:
    return f"{incident_id}/{runbook}"


def run_id(incident_id: str, runbook: str, request_id: str) -> str:
    digest = hashlib.sha256(f"{incident_id}|{runbook}|{request_id}".encode()).hexdigest()
    return f"run-{digest[:16]}"


def answer_id(incident_id: str, runbook: str, by: str, version: int, answer: str) -> str:
    """The id of a refusal or skip: the same for the same person asking the same of the same version, so a double
    click is answered once in the diagnosis (its events are told apart by run id and step)."""
    return run_id(incident_id, runbook, f"{answer}|{by}|v{version}")


class Refused(Exception):
    """A run that may not happen whoever approves it: `reason` names why (a count), `why` says it."""

    def __init__(self, reason: str, why: str):
        super().__init__(why)
        self.reason, self.why = reason, why

    @property
    def detail(self) -> str:
        """As the refusal event says it: "rejected input: parameter note: ..."."""
        return f"{self.reason.replace('_', ' ')}: {self.why}"


def plan_run(runbook: Runbook, diagnosis: Diagnosis, by: str, rid: str) -> RunPlan:
    """The run of `runbook` for `diagnosis`, parameters checked; Refused when its input or its playbook forbid it.

    The executor plans every approved run with it, and its dry run asks it what a run would do."""
    try:
        parameters = resolve(runbook, diagnosis)
    except ParameterError as exc:
        raise Refused("rejected_input", str(exc)) from None
    if not runbook.playbook:
        raise Refused("no_playbook", "the runbook has no playbook")
    target = str(parameters.get(runbook.target, diagnosis.root_cause.service or diagnosis.scope))
    return RunPlan(run_id=rid, incident_id=diagnosis.incident_id, version=diagnosis.version,
                   runbook=runbook.id, playbook=runbook.playbook, parameters=parameters, target=target,
                   by=by, check_first=runbook.check_first, timeout_s=runbook.timeout.total_seconds(),
                   cooldown_s=runbook.cooldown.total_seconds())


def event(plan: RunPlan, step: RemediationStep, at: datetime, **fields) -> RemediationEvent:
    """A remediation event about a planned run."""
    return RemediationEvent(incident_id=plan.incident_id, runbook=plan.runbook, run_id=plan.run_id, step=step,
                            at=at, by=plan.by, **fields)


class Remediator:
    """Built once from the runbook catalog and settings; decides every run."""

    def __init__(self, catalog: Catalog, settings: Settings = Settings()):
        self.catalog = catalog
        self.settings = settings

    def step(self, state: ExecutorState, item: Diagnosis | Approval | RunResult | None,
             now: datetime) -> list[Output]:
        """Take one input (None is a tick); update the state in place and return what to do."""
        if isinstance(item, Diagnosis):
            outputs = self._diagnosis(state, item, now)
        elif isinstance(item, Approval):
            outputs = self._approval(state, item, now)
        elif isinstance(item, RunResult):
            outputs = self._finished(state, item, now)
        else:
            outputs = self._expire(state, now)
        return outputs + self._dispatch(state, now)

    def recover(self, state: ExecutorState, entries: list[LedgerEntry], now: datetime) -> list[Output]:
        """Rebuild from the ledger: a run found started was interrupted; report it, never run it again."""
        outputs: list[Output] = []
        for entry in entries:
            state.ledger[entry.plan.key] = entry
            if entry.state == "queued":
                state.queue.append(entry.plan.key)
            elif entry.state == "started":
                outputs += self._interrupted(state, entry, now)
        return outputs + self._dispatch(state, now)

    # -- inputs ------------------------------------------------------------------

    def _diagnosis(self, state: ExecutorState, diagnosis: Diagnosis, now: datetime) -> list[Output]:
        self._remember(state, diagnosis)
        outputs = self._auto(state, diagnosis, now)
        waiting = [a for a in state.pending if a.incident_id == diagnosis.incident_id
                   and a.version == diagnosis.version]
        state.pending = [a for a in state.pending if a not in waiting]
        for approval in waiting:
            outputs += self._approved(state, approval, diagnosis, now)
        return outputs

    def _approval(self, state: ExecutorState, approval: Approval, now: datetime) -> list[Output]:
        runbook = self.catalog.get(approval.runbook)
        refusal = self._approval_refusal(approval, runbook, now)
        if refusal:
            return self._refuse_approval(state, approval, *refusal, now)
        diagnosis = state.diagnoses.get(approval.incident_id, {}).get(approval.version)
        if diagnosis is not None:
            return self._approved(state, approval, diagnosis, now)
        if len(state.pending) >= self.settings.pending_limit:
            return self._refuse_approval(state, approval, "pending_full",
                                         "too many approvals wait for their diagnosis", now)
        state.pending.append(approval)
        state.counts["approval_pending"] += 1
        return []

    def _approval_refusal(self, approval: Approval, runbook: Runbook | None,
                          now: datetime) -> tuple[str, str] | None:
        """Why an approval cannot be taken whatever the diagnosis says (a reason name and a sentence), or None."""
        if runbook is None:
            return "unknown_runbook", f"{approval.runbook} is not in the runbook catalog"
        if not self._may_approve(approval.user_id, runbook):
            return "not_an_approver", f"{approval.user_id} is not an approver of {runbook.id}"
        if now - approval.at > self.settings.approval_ttl:
            return "approval_expired", f"the approval is older than {self.settings.approval_ttl}"
        return None

    def _may_approve(self, user_id: str, runbook: Runbook) -> bool:
        groups = self.settings.groups
        return user_id in runbook.approvers.users or any(
            user_id in groups.get(g, ()) for g in runbook.approvers.groups)

    def _approved(self, state: ExecutorState, approval: Approval, diagnosis: Diagnosis,
                  now: datetime) -> list[Output]:
        if diagnosis.recommended_runbook != approval.runbook:
            why = f"version {diagnosis.version} recommends {diagnosis.recommended_runbook}, not {approval.runbook}"
            return self._refuse_approval(state, approval, "not_recommended", why, now)
        runbook = self.catalog.get(approval.runbook)
        return self._request(state, runbook, diagnosis, approval.user_id, approval.request_id, now)

    def _auto(self, state: ExecutorState, diagnosis: Diagnosis, now: datetime) -> list[Output]:
        """Auto-approve: only a firing, fresh diagnosis above the runbook's confidence threshold."""
        runbook = self.catalog.get(diagnosis.recommended_runbook or "")
        if runbook is None or not runbook.auto_approve or diagnosis.status != "firing":
            return []
        if now - diagnosis.updated_at > self.settings.auto_max_age:
            state.counts["auto_stale"] += 1
            return []
        if diagnosis.confidence <= runbook.min_confidence:
            why = (f"auto-approve needs confidence above {runbook.min_confidence:.0%}, "
                   f"this is {diagnosis.confidence:.0%}: waiting for a person")
            return self._note(state, diagnosis, runbook, "low_confidence", why, now)
        return self._request(state, runbook, diagnosis, "auto", f"auto-v{diagnosis.version}", now)

    def _finished(self, state: ExecutorState, result: RunResult, now: datetime) -> list[Output]:
        key = next((k for k, e in state.ledger.items() if e.plan.run_id == result.run_id), None)
        entry = state.ledger.get(key) if key else None
        if entry is None or entry.state != "started":
            state.counts["result_unknown"] += 1
            return []
        plan = entry.plan
        self._release(state, plan, now)
        done = LedgerEntry(plan=plan, state="finished", result=result.step, at=now)
        state.ledger[key] = done
        final = event(plan, result.step, now, duration_s=result.duration_s, detail=result.detail,
                      output_tail=result.output_tail[-8000:])
        return [Record(done), Publish(final)]

    def _expire(self, state: ExecutorState, now: datetime) -> list[Output]:
        """A tick: approvals whose diagnosis never came are refused once they are too old."""
        old = [a for a in state.pending if now - a.at > self.settings.approval_ttl]
        state.pending = [a for a in state.pending if a not in old]
        outputs: list[Output] = []
        for approval in old:
            why = f"diagnosis version {approval.version} of {approval.incident_id} was never seen"
            outputs += self._refuse_approval(state, approval, "diagnosis_unseen", why, now)
        return outputs

    # -- runs --------------------------------------------------------------------

    def _request(self, state: ExecutorState, runbook: Runbook, diagnosis: Diagnosis, by: str,
                 request_id: str, now: datetime) -> list[Output]:
        """An approved run: queued once per incident and runbook, with checked parameters, outside cooldown."""
        key = ledger_key(diagnosis.incident_id, runbook.id)
        rid = run_id(diagnosis.incident_id, runbook.id, request_id)
        seen = state.ledger.get(key)
        if seen is not None and seen.blocks:
            state.counts["already_ran"] += 1
            if by == "auto":
                return []
            detail = f"already {seen.result or seen.state} as {seen.plan.run_id}: a runbook runs once per incident"
            rid = answer_id(diagnosis.incident_id, runbook.id, by, diagnosis.version, "skipped")
            return [Publish(self._bare(diagnosis, runbook, rid, "skipped", by, detail, now))]
        try:
            plan = plan_run(runbook, diagnosis, by, rid)
        except Refused as refused:
            return self._decline(state, diagnosis, runbook, by, refused.reason, refused.detail, now)
        until = state.cooldown_until.get(plan.target)
        if until is not None and now < until:
            why = f"{plan.target} cools down until {until:%H:%M:%S}"
            return self._decline(state, diagnosis, runbook, by, "cooldown", why, now)
        entry = LedgerEntry(plan=plan, state="queued", at=now)
        state.ledger[key] = entry
        state.queue.append(key)
        state.counts["approved"] += 1
        detail = f"approved by {by} for version {diagnosis.version}"
        return [Record(entry), Publish(event(plan, "approved", now, detail=detail))]

    def _dispatch(self, state: ExecutorState, now: datetime) -> list[Output]:
        """Start queued runs whose target is free, up to the global cap, oldest first."""
        outputs: list[Output] = []
        for key in list(state.queue):
            if len(state.running) >= self.settings.max_concurrent:
                break
            plan = state.ledger[key].plan
            if plan.target in state.running:
                continue
            state.queue.remove(key)
            outputs += self._begin(state, plan, now)
        return outputs

    def _begin(self, state: ExecutorState, plan: RunPlan, now: datetime) -> list[Output]:
        until = state.cooldown_until.get(plan.target)
        if until is not None and now < until:
            entry = LedgerEntry(plan=plan, state="finished", result="refused", at=now)
            state.ledger[plan.key] = entry
            detail = f"{plan.target} cools down until {until:%H:%M:%S} after the run before it"
            return [Record(entry), Publish(event(plan, "refused", now, detail=detail))]
        entry = LedgerEntry(plan=plan, state="started", at=now)
        state.ledger[plan.key] = entry
        state.running[plan.target] = plan.key
        shown = ", ".join(f"{k}={v}" for k, v in plan.parameters.items())
        return [Record(entry), Publish(event(plan, "started", now, detail=f"parameters: {shown}")), Start(plan)]

    def _release(self, state: ExecutorState, plan: RunPlan, now: datetime) -> None:
        if state.running.get(plan.target) == plan.key:
            del state.running[plan.target]
        state.cooldown_until[plan.target] = now + timedelta(seconds=plan.cooldown_s)

    def _interrupted(self, state: ExecutorState, entry: LedgerEntry, now: datetime) -> list[Output]:
        plan = entry.plan
        state.cooldown_until[plan.target] = now + timedelta(seconds=plan.cooldown_s)
        done = LedgerEntry(plan=plan, state="finished", result="interrupted", at=now)
        state.ledger[plan.key] = done
        state.counts["interrupted"] += 1
        detail = (f"the executor stopped during this run (started {entry.at:%H:%M:%S}); it is not run again: "
                  f"check {plan.target} by hand")
        return [Record(done), Publish(event(plan, "interrupted", now, detail=detail))]

    # -- refusals and notes ------------------------------------------------------

    def _refuse_approval(self, state: ExecutorState, approval: Approval, reason: str, why: str,
                         now: datetime) -> list[Output]:
        state.counts[f"refused_{reason}"] += 1
        rid = answer_id(approval.incident_id, approval.runbook, approval.user_id, approval.version, reason)
        return [Publish(RemediationEvent(incident_id=approval.incident_id, runbook=approval.runbook, run_id=rid,
                                         step="refused", at=now, by=approval.user_id, detail=why))]

    def _decline(self, state: ExecutorState, diagnosis: Diagnosis, runbook: Runbook, by: str,
                 reason: str, why: str, now: datetime) -> list[Output]:
        """No run: a person's approval is refused; auto-approve notes it once (a refusal would version the
        diagnosis, and a new version would ask again)."""
        if by == "auto":
            return self._note(state, diagnosis, runbook, reason, why, now)
        state.counts[f"refused_{reason}"] += 1
        rid = answer_id(diagnosis.incident_id, runbook.id, by, diagnosis.version, reason)
        return [Publish(self._bare(diagnosis, runbook, rid, "refused", by, why, now))]

    def _note(self, state: ExecutorState, diagnosis: Diagnosis, runbook: Runbook, reason: str, why: str,
              now: datetime) -> list[Output]:
        """Auto-approve did not run: say so once per incident, runbook and reason."""
        key = f"{ledger_key(diagnosis.incident_id, runbook.id)}|{reason}"
        state.counts[f"auto_{reason}"] += 1
        if key in state.noted:
            return []
        state.noted.add(key)
        rid = run_id(diagnosis.incident_id, runbook.id, f"auto-v{diagnosis.version}")
        return [Publish(self._bare(diagnosis, runbook, rid, "skipped", "auto", why, now))]

    @staticmethod
    def _bare(diagnosis: Diagnosis, runbook: Runbook, rid: str, step: RemediationStep, by: str, detail: str,
              now: datetime) -> RemediationEvent:
        return RemediationEvent(incident_id=diagnosis.incident_id, runbook=runbook.id, run_id=rid, step=step,
                                at=now, by=by, detail=detail[:2000])

    def _remember(self, state: ExecutorState, diagnosis: Diagnosis) -> None:
        """Keep a slim copy of recent versions: an approval names the version the person saw."""
        slim = diagnosis.model_copy(update={"evidence": [], "candidates": [], "fingerprints": []})
        versions = state.diagnoses.pop(diagnosis.incident_id, {})
        versions[diagnosis.version] = slim
        while len(versions) > self.settings.versions_kept:
            del versions[min(versions)]
        state.diagnoses[diagnosis.incident_id] = versions  # re-inserted: the dict keeps recent incidents last
        while len(state.diagnoses) > self.settings.incidents_kept:
            del state.diagnoses[next(iter(state.diagnoses))]
