"""Alertmanager's grouping and timing, simulated: alert lives in, webhook notifications out.

Given each alert's labels and its start and end, this says which webhooks an
Alertmanager would have sent and when. `notifications` does it for one route;
`dispatch` for a whole configuration (pipeline/routing.py): the route tree,
one aggregation group per route and group label set, inhibit rules, receivers.

Within an aggregation group it follows Alertmanager's dispatcher and
notification log: the group is created by its first alert and flushes
`group_wait` later, then every `group_interval`; a flush notifies when a firing
alert is new, when an alert resolved (`send_resolved`), when all resolved, or
after `repeat_interval`; resolved alerts leave the group once flushed, and an
empty group ends (the next alert starts a new one, which waits `group_wait`
again). Inhibited alerts are left out of a flush. Each replica of an HA pair
sends the same notification a little apart.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Iterator

from pipeline.alerts import ZERO_TIME, fingerprint, format_time

if TYPE_CHECKING:
    from pipeline.routing import AlertmanagerConfig, InhibitRule

@dataclass(frozen=True)
class AlertLife:
    """One alert as Prometheus fired it: labels, annotations, start and (maybe) end."""

    labels: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    def firing_at(self, at: datetime) -> bool:
        return self.starts_at <= at and (self.ends_at is None or at < self.ends_at)


@dataclass(frozen=True)
class Route:
    """The timing of one Alertmanager route and its receiver."""

    receiver: str = "stormdrain"
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(hours=4)
    send_resolved: bool = True
    replicas: tuple[str, ...] = ("http://alertmanager-0:9093",)
    replica_delay: timedelta = timedelta(seconds=2)  # a peer's wait before it sends too
    path: str = "{}"  # the route key, the first half of the group key
    max_alerts: int = 0  # a webhook carries at most this many alerts (0: all)


@dataclass(frozen=True)
class _Sent:
    """The notification log entry of a group: what the last notification said, and when."""

    firing: frozenset[str]
    resolved: frozenset[str]
    at: datetime


def notifications(alerts: list[AlertLife], route: Route, until: datetime,
                  inhibitor: Inhibitor | None = None) -> list[tuple[datetime, dict]]:
    """Every webhook one route would have sent up to `until`, as (received_at, body), in time order."""
    groups: dict[str, tuple[dict, list[AlertLife]]] = {}
    for alert in alerts:
        labels = {name: alert.labels[name] for name in route.group_by if name in alert.labels}
        groups.setdefault(label_set(labels), (labels, []))[1].append(alert)
    return _sorted(_send(route, labels, members, until, inhibitor) for labels, members in groups.values())


def dispatch(alerts: list[AlertLife], config: AlertmanagerConfig, until: datetime,
             receivers: tuple[str, ...] | None = None, external_url: str = "") -> list[tuple[datetime, dict]]:
    """Every webhook an Alertmanager with `config` would have sent up to `until`, in time order.

    Receivers without integrations send nothing; `receivers` keeps only the named ones.
    """
    inhibitor = Inhibitor(config.inhibit_rules, alerts) if config.inhibit_rules else None
    groups: dict[tuple[int, str], tuple[Route, dict, list[AlertLife]]] = {}
    for alert in alerts:
        for node in config.root.match(alert.labels):
            labels = node.group_labels(alert.labels)
            route = replace(node.route, replicas=(external_url,))
            groups.setdefault((node.index, label_set(labels)), (route, labels, []))[2].append(alert)
    wanted = {name for name, r in config.receivers.items() if r.integrations and (not receivers or name in receivers)}
    return _sorted(_send(route, labels, members, until, inhibitor)
                   for route, labels, members in groups.values() if route.receiver in wanted)


def label_set(labels: dict[str, str]) -> str:
    """A label set as Alertmanager prints it in a group key: {a="1", b="2"}, sorted by name."""
    return "{" + ", ".join(f"{name}={json.dumps(labels[name], ensure_ascii=False)}" for name in sorted(labels)) + "}"


def _sorted(batches) -> list[tuple[datetime, dict]]:
    sent = [item for batch in batches for item in batch]
    sent.sort(key=lambda item: (item[0], item[1]["groupKey"], item[1]["receiver"], item[1]["externalURL"]))
    return sent


def _send(route: Route, labels: dict, members: list[AlertLife], until: datetime,
          inhibitor: Inhibitor | None) -> Iterator[tuple[datetime, dict]]:
    for at, body in _group_notifications(route, labels, members, until, inhibitor):
        for index, url in enumerate(route.replicas):
            yield at + route.replica_delay * index, {**body, "externalURL": url}


def _group_notifications(route: Route, labels: dict, members: list[AlertLife], until: datetime,
                         inhibitor: Inhibitor | None) -> Iterator[tuple[datetime, dict]]:
    """The flushes of one aggregation group, across its lives (an empty group ends, the next alert restarts it)."""
    pending = deque(sorted(members, key=lambda a: (a.starts_at, a.fingerprint)))
    present: dict[str, AlertLife] = {}  # by fingerprint: a re-fire replaces the previous life
    last: _Sent | None = None  # the notification log outlives the group, as in Alertmanager
    while pending or present:
        if not present:
            at = pending[0].starts_at + route.group_wait
        if at > until:
            return
        while pending and pending[0].starts_at <= at:
            alert = pending.popleft()
            present[alert.fingerprint] = alert
        body, last = _flush(route, labels, present, at, last, inhibitor)
        if body is not None:
            yield at, body
        for fp in [fp for fp, a in present.items() if not a.firing_at(at)]:
            del present[fp]  # resolved alerts leave the group once flushed
        at = _next_flush(at, present, pending, last, route, inhibitor)
        if at is None:
            return


def _flush(route: Route, labels: dict, present: dict[str, AlertLife], at: datetime, last: _Sent | None,
           inhibitor: Inhibitor | None) -> tuple[dict | None, _Sent | None]:
    """One flush of a group: the webhook it sends (or None) and the notification log after it."""
    shown = [a for a in present.values() if not (inhibitor and inhibitor.muted(a, at))]
    firing = frozenset(a.fingerprint for a in shown if a.firing_at(at))
    resolved = frozenset(a.fingerprint for a in shown) - firing
    if not shown or not _needs_update(last, firing, resolved, at, route):
        return None, last  # all muted: Alertmanager stops before its dedup stage and logs nothing
    sent = [a for a in shown if a.fingerprint in firing or route.send_resolved]
    return (_body(route, labels, sent, firing) if sent else None), _Sent(firing, resolved, at)


def _needs_update(last: _Sent | None, firing: frozenset, resolved: frozenset, at: datetime, route: Route) -> bool:
    """Alertmanager's dedup stage: is this flush worth a notification?"""
    if last is None:
        return bool(firing)
    if not firing <= last.firing:
        return True
    if not firing:
        return bool(last.firing)  # all resolved: said even without send_resolved, to clear the log
    if route.send_resolved and not resolved <= last.resolved:
        return True
    return last.at < at - route.repeat_interval


def _next_flush(at: datetime, present: dict[str, AlertLife], pending: deque, last: _Sent | None,
                route: Route, inhibitor: Inhibitor | None) -> datetime | None:
    """The first flush tick at which something could change; None when nothing ever will."""
    if not present:
        return at  # the loop restarts the group at its next alert
    times = [pending[0].starts_at] if pending else []
    times += [a.ends_at for a in present.values() if a.ends_at is not None and a.ends_at > at]
    if last is not None and last.firing:
        times.append(last.at + route.repeat_interval)
    change = inhibitor.next_change(at) if inhibitor else None
    if change is not None:
        times.append(change)
    if not times:
        return None
    steps = max(1, math.ceil((min(times) - at) / route.group_interval))
    return at + route.group_interval * steps


def _body(route: Route, group_labels: dict[str, str], alerts: list[AlertLife], firing: frozenset) -> dict:
    alerts = sorted(alerts, key=lambda a: a.fingerprint)
    shown = alerts[:route.max_alerts] if route.max_alerts else alerts
    return {
        "version": "4",
        "groupKey": f"{route.path}:{label_set(group_labels)}",
        "truncatedAlerts": len(alerts) - len(shown),
        "status": "firing" if firing else "resolved",
        "receiver": route.receiver,
        "groupLabels": group_labels,
        "commonLabels": _common([a.labels for a in alerts]),
        "commonAnnotations": _common([a.annotations for a in alerts]),
        "externalURL": route.replicas[0],
        "alerts": [_alert(a, a.fingerprint in firing) for a in shown],
    }


def _alert(alert: AlertLife, firing: bool) -> dict:
    return {
        "status": "firing" if firing else "resolved",
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": format_time(alert.starts_at),
        "endsAt": ZERO_TIME if firing else format_time(alert.ends_at),
        "generatorURL": "",
        "fingerprint": alert.fingerprint,
    }


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    common = dict(maps[0])
    for other in maps[1:]:
        common = {k: v for k, v in common.items() if other.get(k) == v}
    return common


class Inhibitor:
    """Alertmanager's inhibit rules over a known history: is an alert muted at a time?"""

    def __init__(self, rules: tuple[InhibitRule, ...], alerts: list[AlertLife]):
        self.rules = rules
        self.sources: list[dict[tuple, list[AlertLife]]] = []
        edges: set[datetime] = set()
        for rule in rules:
            by_equal: dict[tuple, list[AlertLife]] = defaultdict(list)
            for alert in alerts:
                if all(m.matches(alert.labels) for m in rule.source):
                    by_equal[tuple(alert.labels.get(name, "") for name in rule.equal)].append(alert)
                    edges.update(t for t in (alert.starts_at, alert.ends_at) if t is not None)
            self.sources.append(by_equal)
        self.edges = sorted(edges)

    def muted(self, alert: AlertLife, at: datetime) -> bool:
        """Whether a firing source alert with equal labels mutes `alert` at `at`."""
        for rule, sources in zip(self.rules, self.sources):
            if not all(m.matches(alert.labels) for m in rule.target):
                continue
            # An alert that matches both sides is not muted by sources that match both sides too.
            both = all(m.matches(alert.labels) for m in rule.source)
            for source in sources.get(tuple(alert.labels.get(name, "") for name in rule.equal), ()):
                if source.firing_at(at) and source.fingerprint != alert.fingerprint and not (
                        both and all(m.matches(source.labels) for m in rule.target)):
                    return True
        return False

    def next_change(self, at: datetime) -> datetime | None:
        """The next time a source alert starts or ends: muting can change only then."""
        index = bisect.bisect_right(self.edges, at)
        return self.edges[index] if index < len(self.edges) else None
