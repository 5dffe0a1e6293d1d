"""Alertmanager's grouping and timing, simulated: alert lives in, webhook notifications out.

Given each alert's labels and its start and end, this says which webhooks an
Alertmanager route would have sent and when: one aggregation group per
`group_by` value set, the first notification `group_wait` after the group's
first alert, then at most one per `group_interval` when the group changed, a
repeat after `repeat_interval`, resolved alerts sent once (`send_resolved`), and
the same notification from each replica of an HA pair a little apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipeline.alerts import ZERO_TIME, fingerprint, format_time


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
    """The timing of one Alertmanager route and its webhook receiver."""

    receiver: str = "stormdrain"
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(hours=4)
    send_resolved: bool = True
    replicas: tuple[str, ...] = ("http://alertmanager-0:9093",)
    replica_delay: timedelta = timedelta(seconds=2)  # a peer's wait before it sends too
    path: str = "{}"


def notifications(alerts: list[AlertLife], route: Route, until: datetime) -> list[tuple[datetime, dict]]:
    """Every webhook the route would have sent up to `until`, as (received_at, body), in time order."""
    groups: dict[tuple, list[AlertLife]] = {}
    for alert in alerts:
        key = tuple((name, alert.labels.get(name, "")) for name in route.group_by)
        groups.setdefault(key, []).append(alert)
    sent: list[tuple[datetime, dict]] = []
    for key, members in groups.items():
        for at, body in _group_notifications(key, members, route, until):
            for index, url in enumerate(route.replicas):
                sent.append((at + route.replica_delay * index, {**body, "externalURL": url}))
    sent.sort(key=lambda item: (item[0], item[1]["groupKey"], item[1]["externalURL"]))
    return sent


def _group_notifications(key: tuple, members: list[AlertLife], route: Route, until: datetime):
    members = sorted(members, key=lambda a: (a.starts_at, a.fingerprint))
    group_labels = {name: value for name, value in key if value}
    at = members[0].starts_at + route.group_wait
    told: dict[str, str] = {}  # fingerprint -> status last sent
    last_sent: datetime | None = None
    while at <= until:
        current = {a.fingerprint: a for a in members if a.starts_at <= at and _unfinished(a, told, at, route)}
        statuses = {fp: "firing" if a.firing_at(at) else "resolved" for fp, a in current.items()}
        changed = any(told.get(fp) != status for fp, status in statuses.items())
        repeat = last_sent is not None and at - last_sent >= route.repeat_interval
        if current and (changed or (repeat and "firing" in statuses.values())):
            yield at, _body(key, group_labels, list(current.values()), statuses, route)
            told.update(statuses)
            last_sent = at
        nxt = _next_change(members, told, at, last_sent, route)
        if nxt is None:
            return
        at = at + route.group_interval * max(1, math.ceil((nxt - at) / route.group_interval))


def _unfinished(alert: AlertLife, told: dict[str, str], at: datetime, route: Route) -> bool:
    """Still part of the group: firing, or resolved but the resolve not yet sent."""
    if alert.firing_at(at):
        return True
    return route.send_resolved and told.get(alert.fingerprint) == "firing"


def _next_change(members: list[AlertLife], told: dict[str, str], at: datetime,
                 last_sent: datetime | None, route: Route) -> datetime | None:
    """The next time something in the group could change what a notification says."""
    times = [a.starts_at for a in members if a.starts_at > at]
    times += [a.ends_at for a in members if a.ends_at and a.ends_at > at and told.get(a.fingerprint) == "firing"]
    firing = any(a.firing_at(at) for a in members)
    if firing and last_sent is not None:
        times.append(last_sent + route.repeat_interval)
    if not times:
        return None
    return max(min(times), at + timedelta(microseconds=1))


def _body(key: tuple, group_labels: dict[str, str], alerts: list[AlertLife],
          statuses: dict[str, str], route: Route) -> dict:
    common = dict(alerts[0].labels)
    for alert in alerts[1:]:
        common = {k: v for k, v in common.items() if alert.labels.get(k) == v}
    pairs = ", ".join(f'{name}="{value}"' for name, value in key)
    return {
        "version": "4",
        "groupKey": f"{route.path}:{{{pairs}}}",
        "truncatedAlerts": 0,
        "status": "firing" if "firing" in statuses.values() else "resolved",
        "receiver": route.receiver,
        "groupLabels": group_labels,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": route.replicas[0],
        "alerts": [
            {
                "status": statuses[a.fingerprint],
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": format_time(a.starts_at),
                "endsAt": format_time(a.ends_at) if statuses[a.fingerprint] == "resolved" else ZERO_TIME,
                "generatorURL": "",
                "fingerprint": a.fingerprint,
            }
            for a in sorted(alerts, key=lambda a: a.fingerprint)
        ],
    }
