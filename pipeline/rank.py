"""Root-cause ranking: which service best explains an incident's alerts, and how likely it is.

Each candidate root is scored by how likely the incident's alerts are if it
were the root: the root usually alerts itself and fires first; its callers,
and theirs, suffer hop by hop; an alerting service it cannot explain is noise;
callers that stay quiet count against it; an alert that looks like a cause
(a pool, a crash, memory) rather than a symptom (latency, errors) and an
explicit `root_cause_candidate` label make it likelier, but only by a bounded
factor: a loud symptom that claims to be the root still loses to what explains
it. With metric evidence, an alert that fired minutes before its service's own
metrics moved is dated by the metrics: a blip does not make a service first.
The scores are posterior probabilities over the candidates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import lru_cache

from dataclasses import dataclass

from pipeline.config import RankConfig
from pipeline.evidence import IncidentEvidence
from pipeline.history import lookup, signature_key
from pipeline.graph import ServiceGraph
from pipeline.incidents import NO_SERVICE, Incident, ServiceSummary

ONSET_TOLERANCE_S = 5.0
METRICS_AFTER_ALERT_S = 120.0  # metrics that left their baseline this long after an alert say it fired on a blip


@dataclass(frozen=True, slots=True)
class Candidate:
    """One ranked root-cause candidate: its posterior probability and the reasons for it."""

    service: str
    score: float
    reasons: list[str]
    alert: str | None = None
    inferred: bool = False


@dataclass(frozen=True, slots=True)
class Ranking:
    candidates: list[Candidate]
    confidence: float

    @property
    def root(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


def rank(incident: Incident, graph: ServiceGraph, config: RankConfig,
         evidence: IncidentEvidence | None = None, evidence_weight: float = 1.0,
         history: Mapping | None = None) -> Ranking:
    """Rank every alerting service, every silent node where alerting paths meet, and every
    silent service whose metrics point at it; metric evidence weighs in when there is some."""
    named = [s for k, s in incident.services.items() if k != NO_SERVICE]
    if not named:
        return Ranking(candidates=[], confidence=0.0)
    model = _Model(named, graph, config, age_step(incident), _changed(evidence))
    scored = [model.alerted(i) for i in range(len(named))]
    meeting = [n for n in incident.roots if n not in model.alerting and _converges(n, model.alerting, graph)]
    scored += [model.silent(node, "where the alerting paths meet") for node in meeting]
    # A quiet dependency right below one of the likeliest alerting roots may be a root whose alert
    # has not come yet.
    likeliest = [named[i].node for i in sorted(range(len(named)), key=lambda i: -scored[i][0])[:BELOW_OF]]
    below = sorted({d for n in likeliest if n for d in graph.callees(n)} - model.alerting - set(meeting))
    scored += [model.silent(node, "right below an alerting service") for node in below]
    if evidence is not None:
        taken = {s.service for s in named} | set(meeting) | set(below)
        scored += [model.silent(service, "that its metrics point at")
                   for service, v in sorted(evidence.scores.items()) if v > 0 and service not in taken]
    if evidence is not None:
        scored = [_weigh(entry, evidence, evidence_weight) for entry in scored]
    if history:
        scored = [_remember(entry, history, config.history_weight) for entry in scored]
    top = max(log for log, *_ in scored)
    total = sum(math.exp(log - top) for log, *_ in scored)
    kept = sorted(((round(math.exp(log - top) / total, 4), service, alert, reasons)
                   for log, service, alert, reasons in scored), key=lambda e: (-e[0], e[1]))[: config.max_candidates]
    candidates = [Candidate(service=service, score=score, alert=alert, inferred=alert is None, reasons=reasons)
                  for score, service, alert, reasons in kept]
    return Ranking(candidates=candidates, confidence=_calibrated(candidates[0].score, config))


BELOW_OF = 3  # quiet dependencies are considered below this many likeliest alerting services
AGE_STEPS = (0, 30, 60, 120, 240, 480, 960)  # seconds; the ranking is redone as an incident ages past each


def age_step(incident: Incident) -> int:
    """How long since the first symptom, rounded down to a step, so rankings are reused between steps."""
    named = [s.first_onset for k, s in incident.services.items() if k != NO_SERVICE]
    age = (incident.updated_at - min(named)).total_seconds() if named else 0.0
    return max(step for step in AGE_STEPS if step <= max(age, 0.0))


def _changed(evidence: IncidentEvidence | None) -> dict[str, float]:
    """When each service whose metrics left their baseline did so: the earliest onset of its abnormal series."""
    changed: dict[str, float] = {}
    for item in evidence.items if evidence is not None else ():
        if (item.llr or 0) > 0 and item.onset_at is not None:
            at = item.onset_at.timestamp()
            changed[item.service] = min(changed.get(item.service, at), at)
    return changed


def _dated(summary: ServiceSummary, changed: dict[str, float]) -> float:
    """When a service began to suffer: its first alert, unless its metrics moved only well after that fired.

    A threshold alert can fire on a blip that its service's own metrics count as
    normal; then the change its metrics show dates the service, not the blip.
    """
    alerted = summary.first_onset.timestamp()
    moved = changed.get(summary.service)
    return moved if moved is not None and moved - alerted > METRICS_AFTER_ALERT_S else alerted


def _weigh(entry: tuple, evidence: IncidentEvidence, weight: float) -> tuple:
    """Fold a service's metric evidence into its log-likelihood, with the facts as reasons."""
    log, service, alert, reasons = entry
    score = evidence.scores.get(service, 0.0)
    facts = [item.text for item in evidence.items if item.service == service and item.text][:2]
    return log + weight * score, service, alert, [*reasons, *facts]


def _remember(entry: tuple, history: Mapping, weight: float) -> tuple:
    """A root seen before says so; it gains only if people confirmed it then."""
    log, service, alert, reasons = entry
    past = lookup(history, signature_key(service, alert))
    if past is None:
        return entry
    return log + past.log_ratio(weight), service, alert, [*reasons, past.text()]


def _converges(node: str, alerting: set[str], graph: ServiceGraph) -> bool:
    """A silent node is a plausible root only where alerting paths meet at it.

    If every alerting service that reaches it does so through one alerting
    service, that service is the smaller explanation.
    """
    reaching = [s for s in alerting if node in graph.reach[s]]
    frontier = [s for s in reaching if not any(t != s and t in graph.reach[s] for t in reaching)]
    return len(frontier) >= 2


class _Model:
    """The log-likelihood of an incident's alerts under each candidate root, with reasons."""

    def __init__(self, named: list[ServiceSummary], graph: ServiceGraph, config: RankConfig, age: float,
                 changed: Mapping[str, float] | None = None):
        self.named, self.graph, self.c = named, graph, config
        # A root that has not alerted yet may still: likely early in an incident, less so later.
        self.log_quiet = math.log((1 - config.p_self_alert)
                                  + config.p_self_alert * math.exp(-age / config.root_lag.total_seconds()))
        self.alerting = {s.node for s in named if s.node is not None}
        changed = changed or {}
        self.suffering = set(changed)  # no alert, but their metrics say they suffer
        self.cause = _cause_pattern(config.cause_alerts)
        self.onsets = [_dated(s, changed) for s in named]
        self.reaches = [graph.reach[s.node] if s.node is not None else {} for s in named]
        log_noise_critical, log_noise = math.log(config.p_noise_critical), math.log(config.p_noise)
        self.noise = [log_noise_critical if s.severity_score >= 1.0 else log_noise for s in named]
        self.log_spread = math.log(config.p_spread)

    def alerted(self, i: int) -> tuple[float, str, str | None, list[str]]:
        own, c = self.named[i], self.c
        log, reasons = self._explains(own.node, i)
        log += math.log(c.p_self_alert)
        if self.cause.search(own.first_alert):
            log += math.log(c.cause_ratio)
            reasons.append(f"{own.first_alert} reads as a cause, not a symptom")
        else:
            reasons.append(f"{own.first_alert} ({own.severity})")
        if own.candidate_label:
            log += math.log(c.label_ratio)
            reasons.append("labelled root_cause_candidate (weighed, not trusted)")
        log += self._layer(own.layer or (self.graph.kind(own.node) if own.node else ""))
        return log, own.service, own.first_alert, reasons

    def silent(self, node: str, why: str) -> tuple[float, str, None, list[str]]:
        """A candidate with no alert of its own: a node where paths meet, or one its metrics accuse."""
        in_graph = node in self.graph
        kind = self.graph.kind(node) if in_graph else "service"
        log, reasons = self._explains(node if in_graph else None, None)
        log += self.log_quiet + self._layer(kind)
        reasons.insert(0, f"no alert of its own: inferred as the {kind} {why}")
        return log, node, None, reasons

    def _layer(self, layer: str) -> float:
        return self.c.layers.get(layer, 0.0) * math.log(self.c.layer_ratio)

    def _explains(self, node: str | None, own: int | None) -> tuple[float, list[str]]:
        """Every other alerting service is explained (a hop cost each) or noise; then onset and quiet callers."""
        log, explained, levels = 0.0, [], []
        for j, reach in enumerate(self.reaches):
            if j == own:
                continue
            hops = reach.get(node) if node is not None else None
            if hops is None:
                log += self.noise[j]
            else:
                log += self.log_spread * hops
                explained.append(j)
                levels.append((hops, self.onsets[j]))
        total = len(self.named)
        noise = total - len(explained) - (own is not None)
        reasons = [f"explains {len(explained) + (own is not None)} of {total} alerting services"
                   + (" through call edges" if explained else "")]
        if noise:
            reasons.append(f"{noise} alerting service(s) it cannot explain")
        if own is not None and explained:
            term, text = self._onset(own, explained)
            log += term
            reasons.append(text)
        early = _out_of_order(levels)
        if early:
            log += early * math.log(1 - self.c.p_hop_order)
            reasons.append(f"{early} symptom(s) fired before services nearer to it")
        if node is not None:
            term, text = self._quiet_callers(node, explained)
            log += term
            if text:
                reasons.append(text)
        return log, reasons

    def _onset(self, own: int, explained: list[int]) -> tuple[float, str]:
        """A root fires first; a little late is plausible (`for:` delays), much later is not."""
        c = self.c
        first = min(explained, key=self.onsets.__getitem__)
        lag = self.onsets[own] - self.onsets[first]
        name, at = self.named[first].service, datetime.fromtimestamp(self.onsets[own], timezone.utc)
        if lag <= ONSET_TOLERANCE_S:
            lead = max(0.0, -lag - c.root_lead.total_seconds())
            when = f"{int(-lag)}s before {name}" if lag < 0 else f"with {name}"
            return (math.log(c.p_root_first) - lead / c.root_lag.total_seconds(), f"first to fire, at {at:%H:%M:%S}, {when}")
        return (math.log(1 - c.p_root_first) - (lag - ONSET_TOLERANCE_S) / c.root_lag.total_seconds(),
                f"fired {int(lag)}s after {name}")

    def _quiet_callers(self, node: str, explained: list[int]) -> tuple[float, str]:
        """Upstream services that stay quiet (no alert, no abnormal metric) count against a root, the nearer the more.

        Damning when the symptoms would have to pass through them; mild otherwise,
        since callers often cope (caches, retries, fallbacks).
        """
        c, log, quiet, between = self.c, 0.0, [], 0
        for caller, hops in self.graph.upstream(node).items():
            if caller in self.alerting or caller in self.suffering:
                continue
            on_path = any(caller in self.reaches[j] for j in explained)
            suffers = (c.p_path_suffers if on_path else c.p_caller_suffers) * c.p_spread ** (hops - 1)
            log += math.log(1 - suffers)
            between += on_path
            if hops == 1:
                quiet.append(caller)
        if not quiet and not between:
            return log, ""
        text = f"{len(quiet)} caller(s) not alerting: {', '.join(quiet[:3])}" if quiet else "quiet upstream"
        return log, text + (f" ({between} on the path to its symptoms)" if between else "")


def _out_of_order(levels: list[tuple[int, float]]) -> int:
    """How many explained services fired clearly before every service nearer the candidate root.

    Failures travel up the call graph hop by hop, so under the right root the
    nearer services tend to fire first.
    """
    early, nearer_min, level_min, level = 0, math.inf, math.inf, None
    for hops, onset in sorted(levels):
        if hops != level:
            nearer_min, level_min, level = min(nearer_min, level_min), math.inf, hops
        if nearer_min < math.inf and onset < nearer_min - ONSET_TOLERANCE_S:
            early += 1
        level_min = min(level_min, onset)
    return early


@lru_cache(maxsize=8)
def _cause_pattern(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _calibrated(posterior: float, config: RankConfig) -> float:
    """The calibration map from the top posterior to a probability of being right."""
    p = min(max(posterior, 1e-6), 1 - 1e-6)
    cal = config.calibration
    z = cal.intercept + cal.slope * math.log(p / (1 - p))
    return round(1.0 / (1.0 + math.exp(-z)), 3)
