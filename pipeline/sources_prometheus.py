"""Prometheus's own record of alerts: the ALERTS series, read back into alert lives.

While an alerting rule's alert fires, every evaluation writes a sample of
`ALERTS{alertstate="firing", <alert labels>}` and of `ALERTS_FOR_STATE{<alert
labels>}`, whose value is the time the alert became active. This reads both
by time range, in chunks, as raw samples (a range selector at the end of each
chunk): raw samples carry the exact evaluation times, where a `query_range`
would round them to its step and smear them over the 5 minute lookback.

An alert's life starts at its first firing sample (Prometheus's FiredAt, the
`startsAt` it sends) and ends one evaluation interval after its last (the
evaluation that found it inactive, its `endsAt`); a new active time, or a gap
in the samples of more than one and a half intervals, starts a new life. The
interval comes from the samples themselves, else from the rule's group.
ALERTS keeps no annotations, so the lives have none.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.alerts import InputError
from pipeline.grouping import AlertLife

log = logging.getLogger("stormdrain.sources")
FIRING = 'ALERTS{alertstate="firing"}'
ACTIVE = "ALERTS_FOR_STATE"
DROPPED_LABELS = ("__name__", "alertstate")
DEFAULT_INTERVAL = 60.0  # Prometheus's default evaluation_interval
GAP_FACTOR = 1.5
MAX_SERIES = 200_000
MAX_SAMPLES = 50_000_000


class _Series(BaseModel):
    """One series of a matrix result, as the query API returns it."""

    model_config = ConfigDict(extra="ignore")

    metric: dict[str, str]
    values: list[tuple[float, str]]


@dataclass
class Samples:
    """The samples of one alert's series: firing times, and the active time at each evaluation."""

    labels: dict[str, str]
    firing: set[float] = field(default_factory=set)
    active: dict[float, float] = field(default_factory=dict)


@dataclass
class AlertHistory:
    """What Prometheus recorded over a time range: alert lives, and what could not be taken."""

    lives: list[AlertLife]
    skipped: Counter
    notes: list[str]


def read_alert_history(client: Any, start: datetime, end: datetime, chunk: timedelta) -> AlertHistory:
    """Read ALERTS and ALERTS_FOR_STATE from `start` to `end` and rebuild every alert life."""
    skipped: Counter = Counter()
    series: dict[tuple, Samples] = {}
    for at, span in _chunks(start, end, chunk):
        for item in _query(client, f"{FIRING}[{span}s]", at):
            _take(series, item, skipped, firing=True)
        for item in _query(client, f"{ACTIVE}[{span}s]", at):
            _take(series, item, skipped, firing=False)
    external, notes = external_labels(client)
    intervals = rule_intervals(client)
    lives: list[AlertLife] = []
    for samples in series.values():
        if samples.firing:
            labels = {**external, **samples.labels}  # external labels never override an alert's own
            interval = _interval(samples, intervals.get(samples.labels["alertname"]))
            lives += episodes(labels, sorted(samples.firing), samples.active, interval, end)
    lives.sort(key=lambda life: (life.starts_at, life.fingerprint))
    return AlertHistory(lives, skipped, notes)


def episodes(labels: dict[str, str], times: list[float], active: dict[float, float], interval: float,
             end: datetime) -> list[AlertLife]:
    """Split one alert's firing sample times (sorted, unix seconds) into its lives."""
    lives: list[AlertLife] = []
    first = prev = times[0]
    for t in times[1:]:
        if _new_life(prev, t, active, interval):
            lives.append(_life(labels, first, prev + interval))
            first = t
        prev = t
    ongoing = end.timestamp() - prev <= interval * GAP_FACTOR  # still firing when the range ends
    lives.append(_life(labels, first, None if ongoing else prev + interval))
    return lives


def _new_life(prev: float, t: float, active: dict[float, float], interval: float) -> bool:
    before, now = active.get(prev), active.get(t)
    if before is not None and now is not None:
        return before != now  # a missed evaluation keeps the active time; a new life has a new one
    return t - prev > interval * GAP_FACTOR


def _life(labels: dict[str, str], start: float, end: float | None) -> AlertLife:
    return AlertLife(labels=labels, starts_at=_utc(start), ends_at=_utc(end) if end is not None else None)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _interval(samples: Samples, rule_interval: float | None) -> float:
    """The evaluation interval: the usual spacing of the samples, else the rule group's, else the default."""
    times = sorted(samples.firing | set(samples.active))
    steps = [b - a for a, b in zip(times, times[1:]) if b > a]
    if len(steps) >= 2:
        return statistics.median(steps)
    return rule_interval or DEFAULT_INTERVAL


def _chunks(start: datetime, end: datetime, chunk: timedelta):
    """(evaluation time, range in whole seconds) per chunk; ranges overlap at their ends, samples dedupe."""
    if end <= start:
        raise InputError("--since", f"the time range is empty: {start.isoformat()} is not before {end.isoformat()}")
    at = start
    while at < end:
        stop = min(at + chunk, end)
        yield stop, max(1, math.ceil((stop - at).total_seconds()))
        at = stop


def _take(series: dict[tuple, Samples], item: _Series, skipped: Counter, firing: bool) -> None:
    labels = {k: v for k, v in item.metric.items() if k not in DROPPED_LABELS}
    if not labels.get("alertname"):
        skipped["series without alertname"] += 1
        return
    key = tuple(sorted(labels.items()))
    samples = series.get(key) or series.setdefault(key, Samples(labels))
    for ts, value in item.values:
        if firing:
            samples.firing.add(ts)
        else:
            try:
                samples.active[ts] = float(value)
            except ValueError:
                skipped["ALERTS_FOR_STATE sample that is not a number"] += 1


def _query(client: Any, query: str, at: datetime) -> list[_Series]:
    """One instant query for a range selector; errors name Prometheus and the query."""
    data = _call(client, query, lambda: client.custom_query(query, params={"time": f"{at.timestamp():.3f}"}))
    if not isinstance(data, list):
        raise InputError("prometheus", f"answer to {query!r} is not a list of series")
    if len(data) > MAX_SERIES:
        raise InputError("prometheus", f"{query!r} returned {len(data)} series, over the {MAX_SERIES} limit; "
                                       "use a shorter --chunk")
    try:
        series = [_Series.model_validate(item) for item in data]
    except ValidationError as exc:
        raise InputError("prometheus", f"answer to {query!r} is not a matrix: {exc.errors()[0]['msg']}") from None
    if sum(len(s.values) for s in series) > MAX_SAMPLES:
        raise InputError("prometheus", f"{query!r} returned over {MAX_SAMPLES} samples; use a shorter --chunk")
    return series


def _call(client: Any, what: str, call):
    """Run one client call; whatever goes wrong becomes an InputError that says what was asked."""
    try:
        return call()
    except InputError:
        raise
    except (KeyError, TypeError, ValueError) as exc:  # ValueError covers a body that is not JSON
        raise InputError("prometheus", f"answer to {what!r} is not a Prometheus API answer: {exc!r:.200}") from None
    except Exception as exc:  # requests' and the client's own errors: unreachable, HTTP 4xx/5xx
        raise InputError("prometheus", f"{what!r} failed at {client.url}: {str(exc)[:300]}") from None


def _get(client: Any, path: str) -> Any:
    """GET an API path with the client's session (the client has no call for rules or config)."""
    def call():
        response = client._session.get(f"{client.url}{path}", headers=client.headers, auth=client.auth,
                                       timeout=client._timeout or 30)
        response.raise_for_status()
        return response.json()["data"]
    return _call(client, path, call)


def rule_intervals(client: Any) -> dict[str, float]:
    """alertname -> evaluation interval in seconds, from the rule groups Prometheus runs now."""
    try:
        groups = _get(client, "/api/v1/rules?type=alert").get("groups", [])
        out: dict[str, float] = {}
        for group in groups:
            for rule in group.get("rules", []):
                name, interval = rule.get("name"), float(group.get("interval") or 0)
                if name and interval > 0:
                    out[name] = min(out.get(name, interval), interval)
        return out
    except (InputError, AttributeError, TypeError, ValueError) as exc:
        log.warning("no rule intervals from Prometheus (%s); using the sample spacing", exc)
        return {}


def external_labels(client: Any) -> tuple[dict[str, str], list[str]]:
    """The external labels Prometheus adds to the alerts it sends, and notes on what is not simulated."""
    try:
        config = yaml.safe_load(_get(client, "/api/v1/status/config")["yaml"]) or {}
        labels = (config.get("global") or {}).get("external_labels") or {}
        notes = []
        if any(am.get("alert_relabel_configs") for am in (config.get("alerting") or {}).get("alertmanagers") or []) \
                or (config.get("alerting") or {}).get("alert_relabel_configs"):
            notes.append("Prometheus relabels alerts (alert_relabel_configs); the replay uses the labels unrelabelled")
        return {str(k): str(v) for k, v in labels.items()}, notes
    except (InputError, AttributeError, TypeError, KeyError, yaml.YAMLError) as exc:
        return {}, [f"no external labels from Prometheus ({str(exc)[:120]}); alerts carry only their own labels"]

