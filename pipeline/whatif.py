"""The what-if comparison: one history under the current and a proposed configuration.

Each alert (a fingerprint and its start) lands in one incident under each
configuration; incidents that share alerts are linked, and each linked group
says what changed: one incident became several (split), several became one
(merged), both (regrouped), or the same alerts got another root cause. The
report (pipeline/whatif_html.py) draws it; `summary` says it in a few lines.
"""

from __future__ import annotations

import argparse
import bisect
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.arguments import count
from pipeline.config import load_config
from pipeline.diagnose import Diagnosis
from pipeline.identity import Identity
from pipeline.replay import open_input, read_lines, write_output
from pipeline.tune import Job, Outcome, Variant, add_scoring_options, check_paths, run_jobs, scoring

NEAR = timedelta(minutes=50)  # how far from an incident an alert of its fingerprint may still be its


@dataclass(frozen=True)
class AlertSeen:
    """One alert of the history: its identity, when it first came in, what it says."""

    fingerprint: str
    starts_at: datetime
    first_seen: datetime
    alertname: str
    service: str
    severity: str


@dataclass
class History:
    """What the report needs of the history itself: the alerts, and notifications per hour."""

    alerts: list[AlertSeen]
    per_hour: Counter  # hour (a UTC datetime) -> alert records received


@dataclass
class Change:
    """Incidents of the two runs linked by shared alerts, and what became of them."""

    kind: str  # split, merged, regrouped, root changed, unchanged
    current: list[Diagnosis]
    proposed: list[Diagnosis]
    alerts: list[AlertSeen]
    placed: dict[tuple, tuple[str, str]] = field(default_factory=dict)  # alert key -> (current id, proposed id)


@dataclass
class Comparison:
    current: Outcome
    proposed: Outcome
    history: History
    changes: list[Change]

    def of_kind(self, *kinds: str) -> list[Change]:
        return [c for c in self.changes if c.kind in kinds]


def read_history(path: str, identity: Identity) -> History:
    """Every firing alert's first appearance, and the alert records received per hour."""
    seen: dict[tuple, AlertSeen] = {}
    per_hour: Counter = Counter()
    with open_input(path) as stream:
        for line in read_lines(stream, identity.scope):
            for record in line.records:
                per_hour[record.received_at.replace(minute=0, second=0, microsecond=0)] += 1
                alert = record.alert
                key = (alert.fingerprint, alert.starts_at)
                if alert.status == "firing" and key not in seen:
                    seen[key] = AlertSeen(alert.fingerprint, alert.starts_at, record.received_at,
                                          alert.name, identity.service(alert.labels) or "-",
                                          alert.labels.get("severity", ""))
    return History(sorted(seen.values(), key=lambda a: (a.first_seen, a.fingerprint)), per_hour)


def compare(current: Outcome, proposed: Outcome, history: History) -> Comparison:
    """Link the incidents of the two runs through the alerts they share; name each change."""
    latest = {("c", d.incident_id): d for d in current.versions} | {("p", d.incident_id): d for d in proposed.versions}
    placed = _place(history.alerts, _locator(current.versions), _locator(proposed.versions))
    parent: dict[tuple, tuple] = {}
    for ours, theirs in placed.values():
        _union(parent, ("c", ours), ("p", theirs))
    nodes: dict[tuple, list[tuple]] = defaultdict(list)
    alerts: dict[tuple, list[AlertSeen]] = defaultdict(list)
    for node in list(parent):
        nodes[_find(parent, node)].append(node)
    for alert in history.alerts:
        if (key := (alert.fingerprint, alert.starts_at)) in placed:
            alerts[_find(parent, ("c", placed[key][0]))].append(alert)
    changes = [_change(nodes[root], latest, alerts[root], placed) for root in nodes]
    changes.sort(key=lambda c: (-len(c.alerts), c.alerts[0].first_seen))
    return Comparison(current, proposed, history, changes)


def _place(alerts: list[AlertSeen], ours, theirs) -> dict[tuple, tuple[str, str]]:
    """Each alert found in an incident of both runs -> (its current incident, its proposed incident)."""
    placed = {}
    for alert in alerts:
        here, there = ours(alert), theirs(alert)
        if here and there:
            placed[(alert.fingerprint, alert.starts_at)] = (here, there)
    return placed


def _change(nodes: list[tuple], latest: dict, alerts: list[AlertSeen], placed: dict) -> Change:
    current = sorted((latest[n] for n in nodes if n[0] == "c"), key=lambda d: d.opened_at)
    proposed = sorted((latest[n] for n in nodes if n[0] == "p"), key=lambda d: d.opened_at)
    if len(current) == 1 == len(proposed):
        same = current[0].root_cause.service == proposed[0].root_cause.service
        kind = "unchanged" if same else "root changed"
    else:
        kind = {(True, False): "split", (False, True): "merged"}.get((len(current) == 1, len(proposed) == 1),
                                                                      "regrouped")
    mine = {(a.fingerprint, a.starts_at): placed[(a.fingerprint, a.starts_at)] for a in alerts}
    return Change(kind, current, proposed, alerts, mine)


def _locator(versions: list[Diagnosis]):
    """A function from an alert to the incident of this run that holds it (or None)."""
    spans: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for d in {d.incident_id: d for d in versions}.values():
        for fp in d.fingerprints:
            spans[fp].append((d.opened_at, d.updated_at, d.incident_id))
    for found in spans.values():
        found.sort()

    def locate(alert: AlertSeen) -> str | None:
        found = spans.get(alert.fingerprint, [])
        index = bisect.bisect_right(found, (alert.first_seen, datetime.max.replace(tzinfo=alert.first_seen.tzinfo)))
        if index and found[index - 1][1] >= alert.first_seen:
            return found[index - 1][2]  # the latest incident opened before it, still open when it came
        near = [s for s in found if abs(s[0] - alert.first_seen) < NEAR]
        return min(near, key=lambda s: abs(s[0] - alert.first_seen))[2] if near else None

    return locate


def _find(parent: dict, node: tuple) -> tuple:
    parent.setdefault(node, node)
    while parent[node] != node:
        parent[node] = parent[parent[node]]
        node = parent[node]
    return node


def _union(parent: dict, a: tuple, b: tuple) -> None:
    parent[_find(parent, a)] = _find(parent, b)


def summary(comparison: Comparison, names: tuple[str, str]) -> str:
    """The comparison for a terminal: the figures side by side, then what changed."""
    c, p = comparison.current, comparison.proposed
    w = max(10, *(len(n) for n in names)) + 2
    rows = [f"{'':<22}{names[0]:>{w}}{names[1]:>{w}}{'change':>10}"]
    for label, a, b in (("pages", c.pages, p.pages), ("incidents", c.incidents, p.incidents),
                        ("pages at night", c.night_pages, p.night_pages),
                        ("alerts per page", c.alerts_per_page, p.alerts_per_page), ("AC@1", c.ac_at_1, p.ac_at_1)):
        rows.append(f"{label:<22}{_num(a):>{w}}{_num(b):>{w}}{_delta(a, b):>10}")
    counts = Counter(change.kind for change in comparison.changes)
    rows.append(f"{c.alerts} alerts replayed under each; incidents linked by shared alerts: "
                + ", ".join(f"{counts[k]} {k}" for k in ("merged", "split", "regrouped", "root changed", "unchanged")))
    for change in [c for c in comparison.changes if c.kind != "unchanged"][:3]:
        rows.append(f"largest change: {len(change.alerts)} alerts, {len(change.current)} incident(s) -> "
                    f"{len(change.proposed)} ({change.kind})")
    return "\n".join(rows)


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) and value < 1 else f"{value:g}"


def _delta(a, b) -> str:
    if a is None or b is None or a == b:
        return ""
    return f"{b - a:+.3g}"


def add_command(sub) -> None:
    """Register `stormdrain report whatif`."""
    report = sub.add_parser("report", help="reports on replays")
    kinds = report.add_subparsers(title="reports", metavar="REPORT")
    whatif = kinds.add_parser("whatif", help="compare the current and a proposed configuration on a history")
    whatif.add_argument("--history", required=True, help="NDJSON history (.gz ok)")
    whatif.add_argument("--graph", help="service graph file")
    whatif.add_argument("--runbooks", help="runbook catalog (default: the bundled one)")
    whatif.add_argument("--current", help="the configuration in use (default: the defaults)")
    whatif.add_argument("--proposed", required=True, help="the configuration to try")
    whatif.add_argument("--out", required=True, help="where to write the HTML report")
    add_scoring_options(whatif)
    whatif.add_argument("--jobs", type=count, default=2, help="processes (default %(default)s: one per side)")
    whatif.set_defaults(run=run_whatif)


def run_whatif(args: argparse.Namespace) -> int:
    from pipeline.whatif_html import render

    check_paths(args)
    current, proposed = load_config(args.current), load_config(args.proposed)
    zone, night, faults = scoring(args, current)
    names = (Path(args.current).name if args.current else "defaults", Path(args.proposed).name)
    jobs = [Job(args.history, args.graph, args.runbooks, Variant(name, config.model_dump()), zone, night, faults,
                keep_versions=True) for name, config in zip(names, (current, proposed))]
    outcomes = run_jobs(jobs, min(args.jobs, 2))
    comparison = compare(*outcomes, read_history(args.history, Identity(current.identity)))
    write_output(args.out, render(comparison, names, zone))
    print(summary(comparison, names))
    print(f"report: {args.out}", file=sys.stderr)
    return 0
