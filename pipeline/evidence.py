"""Metric evidence: what the series of each candidate did around an incident's onset.

An evidence provider (`pipeline.metrics` for Prometheus) answers an
`EvidenceRequest` derived from an incident snapshot with an `IncidentEvidence`:
facts a person can check ("checkoutservice CPU 4.1x its baseline from 03:54,
40 s before the first symptom") and, per service, a log-likelihood ratio that
the ranking folds in. The request is pure data, so the same incident asks the
same question in a replay and live.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from pipeline.alerts import OptionalTime, Time
from pipeline.incidents import NO_SERVICE, Incident

MAX_SERVICES = 12


class EvidenceRequest(BaseModel):
    """Which services to look at, and when: from the first symptom back to a baseline."""

    model_config = ConfigDict(frozen=True)

    incident_id: str
    revision: int
    scope: str
    services: tuple[str, ...]
    onset: Time  # the earliest alert onset in the incident
    as_of: Time  # the event time of the snapshot asked about


class SignalEvidence(BaseModel):
    """One series of one service, compared with its own baseline."""

    model_config = ConfigDict(frozen=True)

    service: str
    signal: str  # cpu, memory, latency, errors, throughput, saturation, ...
    query: str = ""
    baseline: float | None = None
    peak: float | None = None
    ratio: float | None = None  # peak / baseline
    z: float | None = None  # robust z-score of the peak
    onset_at: OptionalTime = None  # when the series left its baseline
    lead_s: float | None = None  # how long before the first symptom (negative: after)
    text: str = ""


class IncidentEvidence(BaseModel):
    """The answer to an evidence request; it becomes part of the incident's diagnosis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["evidence"] = "evidence"
    incident_id: str
    revision: int
    at: Time
    status: Literal["ok", "partial", "timeout", "unavailable"] = "ok"
    detail: str = ""
    items: list[SignalEvidence] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)  # service -> log-likelihood ratio of being the root


class EvidenceProvider(Protocol):
    """Gathers evidence for a request; never raises: failures come back as a status."""

    def gather(self, request: EvidenceRequest) -> IncidentEvidence: ...


def request_for(incident: Incident, candidates: list[str]) -> EvidenceRequest:
    """The evidence question for a snapshot: its alerting services and top candidates."""
    named = [s for s in incident.services.values() if s.service != NO_SERVICE]
    services = list(dict.fromkeys([*candidates, *sorted(s.service for s in named)]))[:MAX_SERVICES]
    onset = min((s.first_onset for s in named), default=incident.opened_at)
    return EvidenceRequest(incident_id=incident.id, revision=incident.revision, scope=incident.scope,
                           services=tuple(services), onset=onset, as_of=incident.updated_at)


def needs_refresh(last: IncidentEvidence | None, request: EvidenceRequest, every: timedelta) -> bool:
    """Ask again when services joined since the last answer, at most once per `every` of event time."""
    if last is None:
        return True
    if last.revision == request.revision:
        return False
    return request.as_of - last.at >= every


def unavailable(request: EvidenceRequest, at: datetime, detail: str) -> IncidentEvidence:
    return IncidentEvidence(incident_id=request.incident_id, revision=request.revision, at=at,
                            status="unavailable", detail=detail)
