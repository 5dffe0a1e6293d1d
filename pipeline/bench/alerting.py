"""Alerting rules evaluated over recorded history, as Prometheus would have evaluated them live.

Prometheus does not evaluate alerting rules over backfilled blocks, so this
runs each rule's expression as a range query (step = the group's evaluation
interval) against the real Prometheus, and applies the rule's `for:` as the
rule manager does: an alert is pending from the first evaluation that returns
its series, fires at the first evaluation at least `for` later while it stays
returned (its `startsAt` is that time, as Prometheus sends it), and resolves at
the first evaluation that no longer returns it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from pipeline.config import parse_duration
from pipeline.grouping import AlertLife
from pipeline.metrics import client_for

_TEMPLATE = re.compile(r"\{\{\s*\$labels\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class Rule:
    """One alerting rule of a Prometheus rule file."""

    alert: str
    expr: str
    hold: timedelta = timedelta(0)  # the rule's `for:`
    interval: timedelta = timedelta(minutes=1)  # its group's evaluation interval
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def load_rules(path: str | Path, substitutions: dict[str, str] | None = None) -> list[Rule]:
    """Read the alerting rules of a Prometheus rule file; `$name` placeholders are filled from `substitutions`."""
    text = Path(path).read_text(encoding="utf-8")
    for name, value in (substitutions or {}).items():
        text = text.replace(f"${name}", value)
    rules = []
    for group in (yaml.safe_load(text) or {}).get("groups", []):
        interval = parse_duration(group.get("interval", "1m"))
        rules += [Rule(alert=r["alert"], expr=r["expr"], hold=parse_duration(r.get("for", 0)), interval=interval,
                       labels={k: str(v) for k, v in (r.get("labels") or {}).items()},
                       annotations={k: str(v) for k, v in (r.get("annotations") or {}).items()})
                  for r in group.get("rules", []) if "alert" in r]
    return rules


def evaluate(url: str, rule: Rule, start: datetime, end: datetime,
             timeout: timedelta = timedelta(seconds=120)) -> list[AlertLife]:
    """Every alert the rule would have fired between start and end."""
    step = rule.interval.total_seconds()
    first = datetime.fromtimestamp(-(-start.timestamp() // step) * step, timezone.utc)  # evaluations are aligned
    rows = client_for(url, timeout).custom_query_range(rule.expr, first, end, step=f"{step:g}s")
    lives = []
    for row in rows:
        labels = {k: v for k, v in row["metric"].items() if k != "__name__"}
        times = [float(t) for t, _ in row["values"]]
        lives += [_life(rule, labels, run) for run in _runs(times, step, end.timestamp())]
    return [life for life in lives if life is not None]


def _runs(times: list[float], step: float, end: float) -> list[tuple[float, float, float | None]]:
    """Spans of consecutive evaluations that returned the series: (first, last, first absent or None)."""
    runs, begin = [], None
    for i, t in enumerate(times):
        begin = t if begin is None else begin
        if i + 1 == len(times) or times[i + 1] - t > step * 1.5:
            runs.append((begin, t, t + step if t + step <= end else None))
            begin = None
    return runs


def _life(rule: Rule, labels: dict[str, str], run: tuple[float, float, float | None]) -> AlertLife | None:
    """The alert of one span, if it lasted `for`: it starts when it fired, not when it became pending."""
    active, last, resolved = run
    step = rule.interval.total_seconds()
    fired = active + -(-rule.hold.total_seconds() // step) * step
    if fired > last:
        return None  # pending only: it never fired
    full = {**labels, **rule.labels, "alertname": rule.alert}
    return AlertLife(labels=full, starts_at=datetime.fromtimestamp(fired, timezone.utc),
                     ends_at=datetime.fromtimestamp(resolved, timezone.utc) if resolved is not None else None,
                     annotations={k: _fill(v, full) for k, v in rule.annotations.items()})


def _fill(template: str, labels: dict[str, str]) -> str:
    return _TEMPLATE.sub(lambda m: labels.get(m.group(1), ""), template)
