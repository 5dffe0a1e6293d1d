"""The diagnose operator: from an incident snapshot to a versioned diagnosis.

A diagnosis goes out once the incident's hold is over, and then again only when
it changes: a new version for each change, the same incident id throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from collections.abc import Mapping

from pipeline.actions import Feedback, RemediationEvent
from pipeline.alerts import OptionalTime, Time
from pipeline.calibration import percent
from pipeline.config import Config
from pipeline.evidence import IncidentEvidence
from pipeline.history import HistoryUpdate, closed, late_feedback
from pipeline.graph import ServiceGraph
from pipeline.incidents import NO_SERVICE, Incident
from pipeline.rank import Ranking, age_step, rank
from pipeline.runbooks import Catalog

MAX_SYMPTOMS = 20
MAX_REMEDIATIONS = 10
PICTURE_CACHE = 4096


class RootCause(BaseModel):
    model_config = ConfigDict(frozen=True)

    service: str | None
    alert: str | None
    inferred: bool = False
    labels: dict[str, str] = Field(default_factory=dict)  # the root alert's labels: routing, runbook parameters


class RankedCandidate(BaseModel):
    model_config = ConfigDict(frozen=True)

    service: str
    score: float
    reasons: list[str]


class Evidence(BaseModel):
    """One fact behind a diagnosis, with where and when it was seen."""

    model_config = ConfigDict(frozen=True)

    kind: str
    text: str
    service: str | None = None
    at: OptionalTime = None
    value: float | None = None


class Diagnosis(BaseModel):
    """The diagnoses topic value: one version of one incident's diagnosis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    incident_id: str
    version: int = Field(ge=1)
    status: Literal["firing", "resolved"]
    scope: str
    opened_at: Time
    updated_at: Time
    paged_at: OptionalTime
    root_cause: RootCause
    candidates: list[RankedCandidate]
    confidence: float = Field(ge=0.0, le=1.0)
    affected_services: list[str]
    fingerprints: list[str]
    alert_count: int
    unique_alerts: int
    recommended_runbook: str | None
    summary: str
    evidence: list[Evidence]
    severity: str = ""
    flapping: bool = False
    external_url: str = ""


class DiagnosisState(BaseModel):
    """What diagnose remembers of one incident: its last snapshot, version, page and remediations."""

    model_config = ConfigDict(extra="forbid")

    incident_id: str
    version: int = 0
    signature: str = ""
    paged_at: OptionalTime = None
    incident: Incident | None = None
    remediations: list[RemediationEvent] = Field(default_factory=list)
    evidence: IncidentEvidence | None = None
    verdicts: dict[str, int] = Field(default_factory=dict)  # feedback while the incident is open


class Diagnoser:
    """Built once from the config, graph and runbook catalog; ranks and versions diagnoses."""

    def __init__(self, config: Config, graph: ServiceGraph, catalog: Catalog, history: Mapping | None = None):
        self.config = config
        self.graph = graph
        self.catalog = catalog
        self.history = history
        self.page_severities = {s.lower() for s in config.page.severities}
        # Caches: a picture depends on the revision, a ranking only on what it reads.
        self._pictures: dict[tuple, _Picture] = {}
        self._rankings: dict[tuple, Ranking] = {}

    def step(self, state: DiagnosisState | None, event: Incident | RemediationEvent | IncidentEvidence | Feedback
             ) -> tuple[DiagnosisState | None, list[Diagnosis | HistoryUpdate]]:
        """Take an incident snapshot, a remediation result, metric evidence or feedback; return a new version
        if anything changed, and history to record when an incident closes."""
        if isinstance(event, RemediationEvent):
            return self._remediated(state, event)
        if isinstance(event, IncidentEvidence):
            return self._evidenced(state, event)
        if isinstance(event, Feedback):
            return self._judged(state, event)
        incident = event
        if incident.status == "closed":
            return None, self._remember(state, incident)
        if not incident.due:
            return state, []
        state = state or DiagnosisState(incident_id=incident.id)
        return self._version(state, incident, state.remediations, state.evidence)

    def _judged(self, state: DiagnosisState | None, feedback: Feedback) -> tuple[DiagnosisState | None, list]:
        """Keep a verdict for the history written at close; after close, it goes to history directly."""
        if state is None:
            return None, late_feedback(self.history, feedback)
        verdicts = {**state.verdicts, feedback.verdict: state.verdicts.get(feedback.verdict, 0) + 1}
        return state.model_copy(update={"verdicts": verdicts}), []

    def _remember(self, state: DiagnosisState | None, incident: Incident) -> list[HistoryUpdate]:
        """A closed incident is recorded under its root-cause signature."""
        if state is None or state.incident is None:
            return []
        root = self._picture(state.incident, state.evidence).ranking.root
        if root is None:
            return []
        runbook = next((r.runbook for r in reversed(state.remediations) if r.step == "finished"), None)
        affected = sorted(s for s in state.incident.services if s != NO_SERVICE)
        return closed(self.history, incident.id, root.service, root.alert, incident.updated_at, affected, runbook,
                      state.verdicts)

    def _evidenced(self, state: DiagnosisState | None,
                   event: IncidentEvidence) -> tuple[DiagnosisState | None, list[Diagnosis]]:
        """Metric evidence arrives after the first page; the diagnosis gains a version with it."""
        if state is None or state.incident is None:
            return state, []
        if state.evidence is not None and (state.evidence.revision, state.evidence.at) >= (event.revision, event.at):
            return state, []  # older or the same answer, delivered again
        return self._version(state, state.incident, state.remediations, event)

    def _remediated(self, state: DiagnosisState | None,
                    event: RemediationEvent) -> tuple[DiagnosisState | None, list[Diagnosis]]:
        """A finished run is part of the picture: the diagnosis gains a version that says so."""
        if state is None or state.incident is None or not event.final:
            return state, []
        if any(r.run_id == event.run_id and r.step == event.step for r in state.remediations):
            return state, []
        remediations = [*state.remediations, event][-MAX_REMEDIATIONS:]
        return self._version(state, state.incident, remediations, state.evidence)

    def _version(self, state: DiagnosisState, incident: Incident, remediations: list[RemediationEvent],
                 evidence: IncidentEvidence | None) -> tuple[DiagnosisState, list[Diagnosis]]:
        paged_at = state.paged_at or (incident.updated_at if self._pages(incident) else None)
        signature = (f"{incident.revision}|{incident.firing}|{incident.notifications}|{paged_at is not None}"
                     f"|{len(remediations)}|{_evidence_key(evidence)}")
        if signature == state.signature:
            return state, []
        diagnosis = self.diagnose(incident, paged_at, state.version + 1, remediations, evidence)
        new_state = DiagnosisState(incident_id=incident.id, version=diagnosis.version, signature=signature,
                                   paged_at=paged_at, incident=incident, remediations=remediations,
                                   evidence=evidence, verdicts=state.verdicts)
        return new_state, [diagnosis]

    def _pages(self, incident: Incident) -> bool:
        """An incident pages once it is firing and one of its services fired a paging severity."""
        return incident.status == "firing" and any(
            s.severity in self.page_severities for s in incident.services.values()
        )

    def diagnose(self, incident: Incident, paged_at: datetime | None, version: int,
                 remediations: list[RemediationEvent] = (), evidence: IncidentEvidence | None = None) -> Diagnosis:
        """The diagnosis of a snapshot: the revision's picture plus this moment's counts."""
        picture = self._picture(incident, evidence)
        return Diagnosis(
            incident_id=incident.id,
            version=version,
            status="firing" if incident.status == "firing" else "resolved",
            scope=incident.scope,
            opened_at=incident.opened_at,
            updated_at=incident.updated_at,
            paged_at=paged_at,
            root_cause=picture.root_cause,
            candidates=picture.candidates,
            confidence=picture.ranking.confidence,
            affected_services=picture.affected,
            fingerprints=sorted(incident.fingerprints),
            alert_count=incident.notifications,
            unique_alerts=incident.unique_alerts,
            recommended_runbook=picture.runbook,
            summary=_summary(incident, picture.ranking, picture.runbook, len(picture.affected)),
            evidence=picture.evidence + _counts_evidence(incident) + _remediation_evidence(remediations),
            severity=picture.severity,
            flapping=bool(incident.flapping),
            external_url=incident.external_url,
        )

    def _picture(self, incident: Incident, evidence: IncidentEvidence | None) -> "_Picture":
        key = (incident.id, incident.revision, age_step(incident), _evidence_key(evidence))
        picture = self._pictures.get(key)
        if picture is None:
            if len(self._pictures) >= PICTURE_CACHE:
                self._pictures.clear()
            picture = self._pictures[key] = self._draw(incident, evidence)
        return picture

    def _rank(self, incident: Incident, evidence: IncidentEvidence | None) -> Ranking:
        key = (incident.id, incident.rank_revision, age_step(incident), _evidence_key(evidence))
        ranking = self._rankings.get(key)
        if ranking is None:
            if len(self._rankings) >= PICTURE_CACHE:
                self._rankings.clear()
            ranking = self._rankings[key] = rank(incident, self.graph, self.config.rank, evidence,
                                                 self.config.evidence.weight, self.history)
        return ranking

    def _draw(self, incident: Incident, evidence: IncidentEvidence | None) -> "_Picture":
        ranking = self._rank(incident, evidence)
        root = ranking.root
        runbook = self._runbook(incident, ranking)
        summary = incident.services.get(root.service) if root else None
        affected = sorted({s for s in incident.services if s != NO_SERVICE} | ({root.service} if root else set()))
        return _Picture(
            ranking=ranking,
            root_cause=RootCause(service=root.service if root else None, alert=root.alert if root else None,
                                 inferred=root.inferred if root else False,
                                 labels=dict(summary.first_labels) if summary and not root.inferred else {}),
            candidates=[RankedCandidate(service=c.service, score=c.score, reasons=c.reasons)
                        for c in ranking.candidates],
            runbook=runbook,
            affected=affected,
            severity=max(incident.services.values(), key=lambda s: s.severity_score).severity,
            evidence=_evidence(incident, ranking) + _metric_evidence(evidence),
        )

    def _runbook(self, incident: Incident, ranking: Ranking) -> str | None:
        root = ranking.root
        if root is None:
            return None
        summary = incident.services.get(root.service)
        labels = summary.first_labels if summary else {}
        kind = self.graph.kind(root.service) if root.service in self.graph else "service"
        names = summary.alertnames if summary else [None]
        for name in names:
            chosen = self.catalog.choose(name, labels, kind)
            if chosen is not None:
                return chosen.id
        return None


@dataclass(frozen=True)
class _Picture:
    """What a diagnosis says that depends only on the incident's revision: computed once."""

    ranking: Ranking
    root_cause: RootCause
    candidates: list[RankedCandidate]
    runbook: str | None
    affected: list[str]
    severity: str
    evidence: list[Evidence]


def _summary(incident: Incident, ranking: Ranking, runbook: str | None, affected: int) -> str:
    root = ranking.root
    if root is None:
        return f"{incident.unique_alerts} alerts with no service named; no root cause to rank"
    what = f"{root.service} (inferred: no alert of its own)" if root.inferred else f"{root.service} {root.alert}"
    state = "resolved: " if incident.status != "firing" else ""
    tail = f"; runbook {runbook}" if runbook else ""
    return (f"{state}{what} is the likely root cause of {affected} affected service(s), "
            f"{incident.unique_alerts} alerts, {percent(ranking.confidence)} confidence{tail}")


def _evidence(incident: Incident, ranking: Ranking) -> list[Evidence]:
    facts: list[Evidence] = []
    root = ranking.root
    named = sorted((s for k, s in incident.services.items() if k != NO_SERVICE), key=lambda s: s.first_onset)
    if root is not None:
        facts.append(Evidence(kind="root", service=root.service, text=f"{root.service}: " + "; ".join(root.reasons)))
    for summary in named[:MAX_SYMPTOMS]:
        text = (f"{summary.service}: {', '.join(summary.alertnames)} ({summary.severity}) "
                f"from {summary.first_onset:%H:%M:%S}; {summary.joined}")
        if summary.first_summary:
            text += f"; \"{summary.first_summary}\""
        facts.append(Evidence(kind="alert", service=summary.service, at=summary.first_onset, text=text))
    if len(named) > MAX_SYMPTOMS:
        facts.append(Evidence(kind="alert", text=f"and {len(named) - MAX_SYMPTOMS} more services"))
    nameless = incident.services.get(NO_SERVICE)
    if nameless is not None:
        facts.append(Evidence(kind="alert", at=nameless.first_onset, text=(
            f"{nameless.alerts} alert(s) name no service: {', '.join(nameless.alertnames)}; {nameless.joined}")))
    if incident.flapping:
        facts.append(Evidence(kind="flapping", value=float(len(incident.flapping)),
                              text=f"{len(incident.flapping)} alert(s) flapping"))
    if len(ranking.candidates) > 1:
        second = ranking.candidates[1]
        facts.append(Evidence(kind="runner_up", service=second.service, value=second.score,
                              text=f"runner-up {second.service}: " + "; ".join(second.reasons)))
    return facts


def _evidence_key(evidence: IncidentEvidence | None) -> str:
    return f"{evidence.revision}@{evidence.at.isoformat()}" if evidence is not None else ""


def _metric_evidence(evidence: IncidentEvidence | None) -> list[Evidence]:
    """The series behind the ranking, with values and times; or why there are none."""
    if evidence is None:
        return []
    facts = [Evidence(kind="metric", service=i.service, at=i.onset_at, value=i.ratio, text=i.text)
             for i in evidence.items if i.text]
    if evidence.status != "ok":
        facts.append(Evidence(kind="metric", at=evidence.at, text=f"metric evidence {evidence.status}: {evidence.detail}"))
    return facts


def _remediation_evidence(remediations: list[RemediationEvent]) -> list[Evidence]:
    return [
        Evidence(kind="remediation", at=r.at, value=r.duration_s,
                 text=f"{r.runbook} {r.step.replace('_', ' ')}"
                      + (f" after {r.duration_s:.0f}s" if r.duration_s is not None else "")
                      + (f" (approved by {r.by})" if r.by else "") + (f": {r.detail}" if r.detail else ""))
        for r in remediations
    ]


def _counts_evidence(incident: Incident) -> list[Evidence]:
    """The dedupe fact, which changes with every duplicate and so is not cached."""
    if not incident.dedupe:
        return []
    dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(incident.dedupe.items()))
    return [Evidence(kind="dedupe", value=float(incident.notifications),
                     text=f"{incident.notifications} notifications for {incident.unique_alerts} alerts ({dropped})")]
