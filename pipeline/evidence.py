"""Metric evidence: what the series of each candidate did around an incident's onset.

An evidence provider (`pipeline.metrics` for Prometheus) answers an
`EvidenceRequest` derived from an incident snapshot with an `IncidentEvidence`:
facts a person can check ("checkoutservice CPU 4.1x its baseline from 03:54,
40 s before the first symptom") and, per service, a log-likelihood ratio that
the ranking folds in. The request is pure data, so the same incident asks the
same question in a replay and live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.alerts import OptionalTime, Time
from pipeline.config import EvidenceConfig, Signal
from pipeline.graph import ServiceGraph
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
    llr: float | None = None  # what this series adds to its service's log-likelihood ratio
    series: int | None = None  # how many series of this signal the service has
    abnormal: int | None = None  # how many of them left their baseline


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


# -- scoring: pure functions over series already fetched -----------------------

@dataclass(frozen=True)
class Window:
    """The span one request looks at: a baseline, then from `effect` on, what changed."""

    start: datetime  # the baseline begins
    effect: datetime  # the baseline ends and the look for a change begins: the lead before the first symptom
    end: datetime  # never past the request's as_of: a replay sees what a live run would have seen
    symptom: datetime  # the first symptom: the incident's earliest alert onset


def window_for(request: EvidenceRequest, config: EvidenceConfig) -> Window:
    effect = request.onset - config.lead
    end = max(min(request.as_of, request.onset + config.after), request.onset)
    return Window(start=effect - config.baseline, effect=effect, end=end, symptom=request.onset)


@dataclass(frozen=True)
class Series:
    """One series a query answered: its labels and its points in time order (unix seconds)."""

    labels: dict[str, str]
    times: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class SeriesScore:
    """How far one series left its own baseline, and when."""

    baseline: float
    peak: float
    z: float  # robust z of the peak: deviation over a floored MAD
    onset: float | None  # unix seconds at which it left the baseline; None when it never did


def robust_baseline(values: np.ndarray, floor: float, relative_floor: float) -> tuple[float, float]:
    """The median and a spread that neither a flat baseline nor a recent incident in it can fool.

    The spread is the smaller of the MAD and the shortest interval holding half
    the points (the shorth), both scaled to a standard deviation for normal data:
    a spike that took up to half the baseline (an incident a quarter of an hour
    ago) inflates the MAD but not the shorth. It is floored at `relative_floor`
    of the median and at `floor`: a series that never moved does not make its
    first wobble a thousand-sigma event.
    """
    median = float(np.median(values))
    mad = 1.4826 * float(np.median(np.abs(values - median)))
    x = np.sort(values)
    half = len(x) // 2 + 1
    shorth = float(np.min(x[half - 1:] - x[: len(x) - half + 1])) / 1.349
    return median, max(min(mad, shorth), relative_floor * abs(median), floor)


def score_series(series: Series, window: Window, signal: Signal, config: EvidenceConfig) -> SeriesScore | None:
    """Compare a series after the lead with its baseline before it; None when either part is missing."""
    ok = np.isfinite(series.values)
    times, values = series.times[ok], series.values[ok]
    effect_at = window.effect.timestamp()
    base = values[(times >= window.start.timestamp()) & (times < effect_at)]
    after = (times >= effect_at) & (times <= window.end.timestamp())
    if len(base) < config.min_baseline or not after.any():
        return None
    median, scale = robust_baseline(base, signal.floor, config.relative_floor)
    deviation = _deviation(values[after] - median, signal.direction) / scale
    peak = int(np.argmax(deviation))
    z = float(deviation[peak])
    return SeriesScore(baseline=median, peak=float(values[after][peak]), z=z,
                       onset=change_onset(times[after], deviation, peak, config.z_min))


def _deviation(delta: np.ndarray, direction: str) -> np.ndarray:
    if direction == "up":
        return delta
    if direction == "down":
        return -delta
    return np.abs(delta)


def change_onset(times: np.ndarray, deviation: np.ndarray, peak: int, z_min: float) -> float | None:
    """When the series left its baseline: the start of the excursion past z_min that holds its peak."""
    if deviation[peak] < z_min:
        return None
    start = peak
    while start > 0 and deviation[start - 1] >= z_min:
        start -= 1
    return float(times[start])


def strength(z: float, z_min: float) -> float:
    """The log-likelihood ratio of a robust z under a power-law tail for normal behaviour: log(z / z_min)."""
    return math.log(z / z_min) if z > z_min > 0 else 0.0


def assess(service: str, signal: Signal, query: str, series: list[Series], window: Window,
           config: EvidenceConfig) -> SignalEvidence | None:
    """The most abnormal series of one signal of one service, as evidence with a text; None without data."""
    scored = [(s, score) for s in series if (score := score_series(s, window, signal, config)) is not None]
    if not scored:
        return None
    best, score = max(scored, key=lambda pair: pair[1].z)
    wide = sum(1 for _, other in scored if other.z >= config.z_min)
    # A fault in the service touches all its pods, callers or calls; a fault in one peer touches one.
    llr = signal.weight * strength(score.z, config.z_min) * wide / len(scored)
    onset_at = datetime.fromtimestamp(score.onset, timezone.utc) if score.onset is not None else None
    lead_s = round((window.symptom - onset_at).total_seconds(), 1) if onset_at is not None else None
    ratio = score.peak / score.baseline if score.baseline > 0 else None
    item = SignalEvidence(service=service, signal=signal.name, query=query, baseline=score.baseline,
                          peak=score.peak, ratio=ratio, z=round(score.z, 2), onset_at=onset_at, lead_s=lead_s,
                          llr=round(llr, 3), series=len(scored), abnormal=wide)
    return item.model_copy(update={"text": describe(item, signal, _series_name(best.labels, service))})


def describe(item: SignalEvidence, signal: Signal, series_name: str = "") -> str:
    """A fact a person can check: "checkoutservice CPU 4.1x its baseline from 03:54:10, 40 s before the first
    symptom"."""
    if item.onset_at is None or item.peak is None or item.baseline is None:
        return ""
    where = f" ({series_name})" if series_name else ""
    if item.ratio is not None and item.ratio > 0:
        change = f"{item.ratio:.1f}x its baseline" if item.ratio >= 0.1 else f"{item.ratio:.2g}x its baseline"
    else:
        change = f"{_value(item.peak, signal.unit)} against a baseline of {_value(item.baseline, signal.unit)}"
    text = f"{item.service} {signal.label or signal.name}{where} {change} from {item.onset_at:%H:%M:%S}"
    text += f", {_relative(item.lead_s)} the first symptom" if item.lead_s is not None else ""
    return text + (f"; {item.abnormal} of {item.series} series" if (item.abnormal or 0) > 1 else "")


def _relative(lead_s: float) -> str:
    if abs(lead_s) < 1:
        return "at"
    amount = f"{abs(lead_s):.0f} s" if abs(lead_s) < 120 else f"{abs(lead_s) / 60:.0f} min"
    return f"{amount} {'before' if lead_s > 0 else 'after'}"


def _value(value: float, unit: str) -> str:
    return f"{value:.3g} {unit}".rstrip()


def _series_name(labels: dict[str, str], service: str) -> str:
    """The labels that tell one series of a signal from its siblings (a pod, a caller)."""
    shown = [f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__" and v != service]
    return ", ".join(shown[:2])


def service_scores(items: list[SignalEvidence], with_data: set[str], signals: dict[str, Signal],
                   config: EvidenceConfig, graph: ServiceGraph | None = None) -> dict[str, float]:
    """Each service's log-likelihood ratio of being the root, from its abnormal series.

    Every abnormal series adds its ratio to its service. A symptom (latency,
    errors, traffic) that something the service calls shows as well, no later,
    is explained away: it is likelier that callee's doing. A change that began
    after the changes of the callers it would explain makes the service likelier
    an effect than a cause. A service whose series all stayed normal is a little
    less likely than one we know nothing of.
    """
    graph = graph or ServiceGraph()
    own: dict[str, list[SignalEvidence]] = {}
    for item in items:
        if (item.llr or 0) > 0 and item.onset_at is not None:
            own.setdefault(item.service, []).append(item)
    onset = {s: min(i.onset_at for i in mine) for s, mine in own.items()}
    total = {s: sum(i.llr for i in mine) for s, mine in own.items()}
    scores = {service: config.quiet for service in with_data}
    for service, mine in own.items():
        explainers = [t for t in own if t != service and t in graph.reach.get(service, {})]
        weighed = [_explained(i, signals, explainers, onset, total, config) for i in mine]
        scores[service] = sum(weighed) - _lag_penalty(service, onset, graph, config)
    return {service: round(score, 3) for service, score in sorted(scores.items())}


def _explained(item: SignalEvidence, signals: dict[str, Signal], explainers: list[str],
               onset: dict[str, datetime], total: dict[str, float], config: EvidenceConfig) -> float:
    """A symptom's ratio, discounted when a callee changed as much, no later."""
    signal = signals.get(item.signal)
    if signal is None or signal.kind == "cause":
        return item.llr
    slack = config.step
    if any(onset[t] <= item.onset_at + slack and total[t] >= item.llr / 2 for t in explainers):
        return item.llr * config.explained
    return item.llr


def _lag_penalty(service: str, onset: dict[str, datetime], graph: ServiceGraph, config: EvidenceConfig) -> float:
    """A cause leads its effects: changes in the callers it would explain that began earlier count against it."""
    callers = [c for c in onset if c != service and service in graph.reach.get(c, {})]
    if not callers:
        return 0.0
    lag = (onset[service] - min(onset[c] for c in callers) - config.step).total_seconds()
    return min(max(lag, 0.0) / config.order_scale.total_seconds(), config.max_lag_penalty)
