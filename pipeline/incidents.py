"""Incidents: which alerts belong together, and why.

An alert joins an open incident of its scope when the service graph relates
its service to the incident's likely roots, or, when the graph cannot say
(no service, or a service the graph does not know), when it fires close in
time to the incident's last new alert. Two faults at once on unrelated parts
of the graph stay two incidents.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.alerts import Alert, OptionalTime, Time
from pipeline.config import IncidentConfig
from pipeline.graph import ServiceGraph

MAX_NAMES = 20
NO_SERVICE = ""


class ServiceSummary(BaseModel):
    """What an incident knows of one service: enough to rank it, bounded in size.

    Frozen: a change makes a new summary, so an incident snapshot can share them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str
    node: str | None  # the service's node in the graph, or None
    alerts: int = 0
    firing: int = 0
    first_onset: Time
    severity: str = ""
    severity_score: float = 0.0
    first_alert: str = ""  # alertname of the earliest alert
    first_summary: str = ""
    first_labels: dict[str, str] = Field(default_factory=dict)
    alertnames: list[str] = Field(default_factory=list)
    candidate_label: bool = False  # some alert says root_cause_candidate: "true"
    layer: str = ""
    joined: str = ""  # why the service's first alert joined the incident

    def ranked(self) -> tuple:
        """What the ranking reads of this service: when it is unchanged, so is the ranking."""
        return self.first_onset, self.first_alert, self.severity_score, self.candidate_label, self.layer


class Incident(BaseModel):
    """One incident of one scope: its alerts summed up by service, and its life in event time."""

    model_config = ConfigDict(extra="forbid")

    id: str
    scope: str
    status: Literal["firing", "resolved", "closed"] = "firing"
    opened_at: Time
    updated_at: Time
    hold_until: Time
    due: bool = False  # the hold is over: a diagnosis may go out
    revision: int = 0  # bumps when an alert joins
    rank_revision: int = 0  # bumps when what the ranking reads changes (a new service, an earlier onset, ...)
    last_new_alert: Time
    resolved_at: OptionalTime = None
    last_end: OptionalTime = None  # the latest end of an alert of the incident
    services: dict[str, ServiceSummary] = Field(default_factory=dict)
    fingerprints: list[str] = Field(default_factory=list)
    firing: int = 0
    notifications: int = 0
    unique_alerts: int = 0
    flapping: list[str] = Field(default_factory=list)
    cover: dict[str, int] = Field(default_factory=dict)  # node -> graph services it explains
    roots: list[str] = Field(default_factory=list)  # nodes explaining the most graph services
    dedupe: dict[str, int] = Field(default_factory=dict)  # notifications by dedupe reason
    external_url: str = ""
    # The fingerprints as a set, derived from the list, so not saved (a plain field: fast to reach).
    listed: set[str] = Field(default_factory=set, exclude=True, repr=False)

    def list_fingerprint(self, fingerprint: str) -> None:
        """Add a fingerprint to the incident's list once, however many episodes it has."""
        listed = self.listed
        if len(listed) != len(self.fingerprints):
            listed.update(self.fingerprints)
        if fingerprint not in listed:
            listed.add(fingerprint)
            self.fingerprints.append(fingerprint)

    @property
    def graph_services(self) -> list[str]:
        return [s.node for s in self.services.values() if s.node is not None]


def incident_id(scope: str, alert: Alert) -> str:
    """Stable id from the scope and the first alert's identity: replays give the same ids."""
    key = f"{scope}|{alert.fingerprint}|{alert.starts_at.isoformat()}"
    return "inc-" + hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


class Placement(BaseModel):
    """Where an alert goes and why: an incident id (None: open a new one) and a reason."""

    model_config = ConfigDict(frozen=True)

    incident_id: str | None
    reason: str


def place(
    incidents: dict[str, Incident],
    node: str | None,
    service: str | None,
    at: datetime,
    graph: ServiceGraph,
    config: IncidentConfig,
) -> Placement:
    """Choose the incident a new firing alert joins, or decide to open one."""
    live = [i for i in incidents.values() if i.status != "closed"]
    if node is not None:
        related = _graph_related(live, node, at, graph, config)
        if related:
            return related
        live = [i for i in live if not i.cover]
    recent = [i for i in live if at - i.last_new_alert <= config.gap]
    if not recent:
        return Placement(incident_id=None, reason="opened the incident")
    best = max(recent, key=lambda i: (i.last_new_alert, i.id))
    seconds = int((at - best.last_new_alert).total_seconds())
    what = service or "an alert with no service"
    return Placement(
        incident_id=best.id,
        reason=f"{what} fired {seconds}s after the incident's last new alert, in scope {best.scope}",
    )


def _graph_related(
    live: list[Incident], node: str, at: datetime, graph: ServiceGraph, config: IncidentConfig
) -> Placement | None:
    """The incident with a service on a call chain with this one, nearest first."""
    best: tuple[int, float, str, str] | None = None
    for incident in live:
        if incident.firing == 0 and at - incident.last_new_alert > config.gap:
            continue
        link = _link(node, incident, graph)
        if link is None:
            continue
        key = (link[0], -incident.last_new_alert.timestamp(), incident.id, link[1])
        best = key if best is None or key < best else best
    if best is None:
        return None
    return Placement(incident_id=best[2], reason=best[3])


def _link(node: str, incident: Incident, graph: ServiceGraph) -> tuple[int, str] | None:
    """The shortest call path between this service and a graph service of the incident.

    Services on one call chain are related; so are two callers of one direct
    dependency, which may be the silent root of both.
    """
    found: tuple[int, str] | None = None
    down = graph.reach[node]
    for other in incident.graph_services:
        if other in down:
            hops, text = down[other], f"{node} calls {other}"
        elif node in graph.reach[other]:
            hops, text = graph.reach[other][node], f"{other} calls {node}"
        elif shared := graph.shared_callee(node, other):
            hops, text = 2, f"{node} and {other} both call {shared}"
        else:
            continue
        if hops == 0:
            return 0, f"{node} is already in the incident"
        if found is None or (hops, text) < found:
            found = (hops, f"{text} ({hops} hop{'s' if hops != 1 else ''} in the service graph)")
    return found


def add_cover(incident: Incident, node: str, graph: ServiceGraph) -> None:
    """Count a new graph service toward every node that would explain it, and refresh roots."""
    for target in graph.reach[node]:
        incident.cover[target] = incident.cover.get(target, 0) + 1
    most = max(incident.cover.values())
    incident.roots = sorted(n for n, count in incident.cover.items() if count == most)
