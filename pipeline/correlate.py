"""The correlate operator: dedupe and incident windows for one scope, on event time.

`Correlator.step(state, records)` buffers records until the watermark (the
latest event time seen, less the out-of-order bound) passes them, then
releases them in event-time order, so any arrival order within the bound gives
the same incidents. Timers (end of the hold, end of the quiet period, expiry)
fire in the same event-time order. `Correlator.tick(state, now)` moves the
watermark on while a storm is quiet; `flush` closes everything at end of input.
The outputs are incident snapshots, one per incident per event time at which it
changed, and dead letters.
"""

from __future__ import annotations

import heapq
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field

from pipeline.alerts import AlertRecord, OptionalTime
from pipeline.config import Config
from pipeline.dedupe import AlertState, Decision, Reason, decide
from pipeline.graph import ServiceGraph
from pipeline.identity import Identity
from pipeline.incidents import MAX_NAMES, NO_SERVICE, Incident, ServiceSummary, add_cover, incident_id, place

SWEEP_EVERY = timedelta(hours=1)
TRUE_VALUES = {"true", "yes", "1"}


class DeadLetter(BaseModel):
    """A record the pipeline could not take, with the reason; it goes to the dead-letter topic."""

    model_config = ConfigDict(frozen=True)

    kind: str = "dead_letter"
    reason: str
    detail: str = ""
    record: Any = None


class ScopeState(BaseModel):
    """Everything correlate keeps for one scope; it snapshots and restores as JSON."""

    model_config = ConfigDict(extra="forbid")

    scope: str
    watermark: OptionalTime = None
    latest: OptionalTime = None
    next_sweep: OptionalTime = None
    pending: list[AlertRecord] = Field(default_factory=list)
    alerts: dict[str, AlertState] = Field(default_factory=dict)
    incidents: dict[str, Incident] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    # The pending records as a heap in release order: derived from `pending`, so not saved.
    # A plain field, not a private attribute: pydantic's private attributes are slow to reach.
    run: list = Field(default_factory=list, exclude=True, repr=False)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def heap(self) -> list:
        """The pending records as a heap in release order, built once after a restore."""
        run = self.run
        if not run:
            run += [[], 0]
            for record in self.pending:
                self.push(record)
        return run[0]

    def push(self, record: AlertRecord) -> None:
        run = self.run
        if not run:
            self.heap()
        run[1] += 1
        heapq.heappush(run[0], (_order(record), run[1], record))


def _order(record: AlertRecord) -> tuple:
    """Release order: event time first, then content, so ties do not depend on arrival.

    At one event time, what ended goes before what began: an alert that fires as
    another resolves does not find the other still firing.
    """
    alert = record.alert
    return (
        record.received_at,
        alert.status != "resolved",
        alert.fingerprint,
        alert.starts_at,
        record.external_url,
        record.receiver,
        record.group_key,
    )


class Correlator:
    """Built once from the config and the graph; runs the dedupe and incident logic of a scope."""

    def __init__(self, config: Config, graph: ServiceGraph, identity: Identity | None = None):
        self.config = config
        self.graph = graph
        self.identity = identity or Identity(config.identity)
        self.bound = config.incidents.out_of_order

    def initial(self, scope: str) -> ScopeState:
        return ScopeState(scope=scope)

    def step(self, state: ScopeState, records: Iterable[AlertRecord]) -> tuple[ScopeState, list]:
        """Take records of this scope; release what the watermark has passed."""
        outputs: list = []
        heap = state.heap()
        watermark, latest, taken = state.watermark, state.latest, 0
        for record in records:
            taken += 1
            if watermark is not None and record.received_at <= watermark:
                self._late(state, record, outputs)
                continue
            state.push(record)
            if latest is None or record.received_at > latest:
                latest = record.received_at
        state.count("records", taken)
        state.latest = latest
        if latest is not None:
            self._advance(state, heap, state.latest - self.bound, outputs)
        state.pending = [entry[2] for entry in heap]
        return state, outputs

    def tick(self, state: ScopeState, now: datetime) -> tuple[ScopeState, list]:
        """Move event time on to `now` (less the bound) while no records arrive."""
        outputs: list = []
        heap = state.heap()
        self._advance(state, heap, now - self.bound, outputs)
        state.pending = [entry[2] for entry in heap]
        return state, outputs

    def flush(self, state: ScopeState) -> tuple[ScopeState, list]:
        """End of input: release every record and fire every timer the recorded time reaches.

        Holds end and resolved incidents close; alerts still firing when the
        recording ends stay firing, since nothing says they stopped.
        """
        if state.latest is None:
            return state, []
        limits = self.config.incidents
        state, outputs = self.tick(state, state.latest + self.bound + max(limits.hold, limits.quiet))
        outputs += self._snapshots(state.incidents, state.watermark)  # with the final counts
        return state, outputs

    def _late(self, state: ScopeState, record: AlertRecord, outputs: list) -> None:
        state.count("late")
        if self.config.incidents.late == "dead-letter":
            outputs.append(DeadLetter(reason="late", detail=f"behind the watermark {state.watermark}",
                                      record=record.model_dump(mode="json", by_alias=True)))
            return
        changed: dict[str, Incident] = {}
        self._apply(state, record, changed)
        outputs.extend(self._snapshots(changed, state.watermark))

    def _advance(self, state: ScopeState, heap: list, target: datetime, outputs: list) -> None:
        """Release records and fire timers up to `target`, in event-time order."""
        if state.watermark is not None and target <= state.watermark:
            return
        while True:
            timer = self._next_timer(state)
            record_at = heap[0][0][0] if heap else None
            if record_at is not None and record_at <= target and (timer is None or record_at <= timer[0]):
                changed: dict[str, Incident] = {}
                while heap and heap[0][0][0] == record_at:
                    self._apply(state, heapq.heappop(heap)[2], changed)
                outputs.extend(self._snapshots(changed, record_at))
            elif timer is not None and timer[0] <= target:
                outputs.extend(self._fire(state, *timer))
            else:
                break
        state.watermark = target

    def _next_timer(self, state: ScopeState) -> tuple[datetime, str, str] | None:
        timers = [(state.next_sweep, "sweep", "")] if state.next_sweep else []
        for incident in state.incidents.values():
            if not incident.due:
                timers.append((incident.hold_until, "hold", incident.id))
            elif incident.status == "resolved" and incident.resolved_at is not None:
                timers.append((incident.resolved_at + self.config.incidents.quiet, "close", incident.id))
        return min(timers) if timers else None

    def _fire(self, state: ScopeState, at: datetime, kind: str, key: str) -> list:
        if kind == "sweep":
            return self._sweep(state, at)
        incident = state.incidents[key]
        at = max(at, incident.updated_at)  # a quiet period that ended before its resolve arrived closes now
        if kind == "hold":
            incident.due = True
        else:
            incident.status = "closed"
            del state.incidents[key]
            state.count("incidents_closed")
        return self._snapshots({key: incident}, at)

    def _sweep(self, state: ScopeState, at: datetime) -> list:
        """Expire alerts whose resolve never came; forget fingerprints past retention."""
        changed: dict[str, Incident] = {}
        expire, keep = self.config.incidents.expire_after, self.config.dedupe.retention
        for fp, alert in list(state.alerts.items()):
            if alert.status == "firing" and at - alert.last_seen >= expire:
                alert.status, alert.ends_at = "resolved", at
                state.count("expired")
                self._resolve(state, alert.incident_id, alert.service, at, changed, notified=False)
            elif alert.status == "resolved" and at - (alert.ends_at or alert.last_seen) >= keep:
                if alert.incident_id not in state.incidents:
                    del state.alerts[fp]
        state.next_sweep = at + SWEEP_EVERY if state.alerts or state.incidents else None
        return self._snapshots(changed, at)

    def _apply(self, state: ScopeState, record: AlertRecord, changed: dict[str, Incident]) -> None:
        """Run dedupe on one record and bring its decision into the incidents."""
        fp = record.alert.fingerprint
        prev = state.alerts.get(fp)
        was_firing = (prev.incident_id, prev.service, prev.starts_at) if prev is not None and prev.status == "firing" \
            else None
        alert_state, decision = decide(prev, record, self.config.dedupe)
        if was_firing and alert_state.starts_at != was_firing[2]:
            # A new episode began while the last one still looked firing: its resolve never came.
            self._resolve(state, *was_firing[:2], record.received_at, changed, notified=False)
        state.alerts[fp] = alert_state
        state.count(f"dedupe_{decision.reason.value}")
        if state.next_sweep is None:
            state.next_sweep = record.received_at + SWEEP_EVERY
        if decision.reason.opens:
            self._open(state, record, alert_state, decision, changed)
        elif decision.reason is Reason.RESOLVED:
            self._resolve(state, alert_state.incident_id, alert_state.service, record.received_at, changed,
                          notified=True, ended=record.alert.ends_at)
        elif decision.reason is not Reason.REDELIVERED:
            self._note(state, alert_state, decision, changed)

    def _note(self, state: ScopeState, alert: AlertState, decision: Decision, changed: dict) -> None:
        incident = state.incidents.get(alert.incident_id or "")
        if incident is None:
            return
        incident.notifications += 1
        incident.dedupe[decision.reason.value] = incident.dedupe.get(decision.reason.value, 0) + 1
        if decision.reason is Reason.ANNOTATIONS_CHANGED:
            changed[incident.id] = incident
        # Duplicates only count: they show in the next snapshot, not in one of their own.

    def _open(self, state: ScopeState, record: AlertRecord, alert: AlertState,
              decision: Decision, changed: dict) -> None:
        service = self.identity.service(record.alert.labels)
        node = self.graph.node_for(service)
        at = record.received_at
        incident = state.incidents.get(alert.incident_id or "") if decision.reason is Reason.FLAPPING else None
        reason = "fired again while flapping"
        if incident is None:
            placement = place(state.incidents, node, service, at, self.graph, self.config.incidents)
            incident = state.incidents.get(placement.incident_id or "")
            reason = placement.reason
        if incident is None:
            incident = self._new_incident(state, record)
            state.count("incidents_opened")
        alert.incident_id, alert.service = incident.id, service or NO_SERVICE
        self._join(incident, record, service or NO_SERVICE, node, reason, decision)
        changed[incident.id] = incident

    def _new_incident(self, state: ScopeState, record: AlertRecord) -> Incident:
        at = record.received_at
        incident = Incident(
            id=incident_id(state.scope, record.alert),
            scope=state.scope,
            opened_at=at,
            updated_at=at,
            # The hold counts from the first alert and includes the out-of-order wait,
            # so a live page goes out `hold` after the first alert arrived.
            hold_until=at + max(self.config.incidents.hold - self.bound, timedelta(0)),
            last_new_alert=at,
            external_url=record.external_url,
        )
        state.incidents[incident.id] = incident
        return incident

    def _join(self, incident: Incident, record: AlertRecord, service: str, node: str | None,
              reason: str, decision: Decision) -> None:
        alert, at = record.alert, record.received_at
        onset = min(alert.starts_at, at)
        summary = incident.services.get(service)
        if summary is None:
            summary = ServiceSummary(service=service, node=node, first_onset=onset, joined=reason)
            if node is not None:
                add_cover(incident, node, self.graph)
        updated = incident.services[service] = summarise(summary, record, onset, self.config)
        if summary.alerts == 0 or updated.ranked() != summary.ranked():
            incident.rank_revision += 1
        if decision.reason is Reason.FLAPPING and alert.fingerprint not in incident.flapping:
            incident.flapping.append(alert.fingerprint)
        incident.list_fingerprint(alert.fingerprint)
        incident.firing += 1
        incident.notifications += 1
        incident.unique_alerts += 1
        incident.revision += 1
        incident.last_new_alert = max(incident.last_new_alert, at)
        incident.updated_at = at
        incident.status = "firing"
        incident.resolved_at = None

    def _resolve(self, state: ScopeState, incident_id: str | None, service: str | None, at: datetime,
                 changed: dict, notified: bool, ended: datetime | None = None) -> None:
        """One firing alert of an incident stopped: resolved, expired, or superseded by a new episode.

        The quiet period counts from when the alerts ended (their endsAt), not from when the
        resolve arrived: Alertmanager sends resolves at its next group_interval, minutes later.
        """
        incident = state.incidents.get(incident_id or "")
        if incident is None:
            return
        summary = incident.services.get(service or NO_SERVICE)
        if summary is not None and summary.firing > 0:
            incident.services[summary.service] = summary.model_copy(update={"firing": summary.firing - 1})
        incident.firing = max(0, incident.firing - 1)
        incident.notifications += int(notified)
        incident.updated_at = at
        ended = min(ended or at, at)
        incident.last_end = max(incident.last_end or ended, ended)
        if incident.firing == 0:
            incident.status = "resolved"
            incident.resolved_at = max(incident.last_end, incident.last_new_alert)
            changed[incident.id] = incident
        # A partial recovery only counts: it shows in the next snapshot, not in one of its own.

    def _snapshots(self, changed: dict[str, Incident], at: datetime | None) -> list[Incident]:
        """Copies of the changed incidents as of `at`; the live ones go on changing."""
        return [
            incident.model_copy(update={
                "updated_at": at or incident.updated_at,
                "services": dict(incident.services),
                "fingerprints": list(incident.fingerprints),
                "flapping": list(incident.flapping),
                "cover": dict(incident.cover),
                "dedupe": dict(incident.dedupe),
            })
            for incident in changed.values()
        ]


def summarise(summary: ServiceSummary, record: AlertRecord, onset: datetime, config: Config) -> ServiceSummary:
    """The service summary with one more firing alert counted in."""
    labels = record.alert.labels
    severity = labels.get("severity", "").lower() or "unknown"
    score = config.rank.severities.get(severity, 0.5)
    name = record.alert.name
    update: dict[str, Any] = {"alerts": summary.alerts + 1, "firing": summary.firing + 1}
    if summary.alerts == 0 or onset < summary.first_onset:
        update.update(first_onset=onset, first_alert=name, first_summary=_summary_text(record),
                      first_labels=dict(labels))
    if score > summary.severity_score or not summary.severity:
        update.update(severity=severity, severity_score=score)
    if name not in summary.alertnames and len(summary.alertnames) < MAX_NAMES:
        update["alertnames"] = [*summary.alertnames, name]
    if labels.get("root_cause_candidate", "").lower() in TRUE_VALUES:
        update["candidate_label"] = True
    if labels.get("layer"):
        update["layer"] = labels["layer"].lower()[:40]
    return summary.model_copy(update=update)


def _summary_text(record: AlertRecord) -> str:
    annotations = record.alert.annotations
    text = annotations.get("summary") or annotations.get("description") or annotations.get("message") or ""
    return text[:300]


def counts_total(states: Iterable[ScopeState]) -> Counter:
    total: Counter = Counter()
    for state in states:
        total.update(state.counts)
    return total
