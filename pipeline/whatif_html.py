"""The what-if report as one self-contained HTML page: figures inline as PNG, no external asset.

It shows the figures of both configurations, alerts and pages per hour before
and after, the largest storms side by side (each alert where it fell, coloured
by incident), and every incident that split, merged, regrouped or changed root
cause, each with its alerts listed.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from datetime import timedelta
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # no display: render to memory

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from pipeline.whatif import Change, Comparison, summary  # noqa: E402

COLOURS = ("#1f77b4", "#ff7f0e")  # current, proposed
STORMS_SHOWN = 3
CHANGES_SHOWN = 40
ALERTS_SHOWN = 200
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
td.n,th.n{text-align:right}img{max-width:100%}pre{background:#f6f6f6;padding:10px;overflow:auto}
.kind{display:inline-block;padding:1px 8px;border-radius:9px;background:#eef;font-size:12px}
"""


def render(comparison: Comparison, names: tuple[str, str], zone: str) -> str:
    """The whole page."""
    parts = [f"<h1>What if: {_e(names[0])} &rarr; {_e(names[1])}</h1>", _overview(comparison),
             f"<pre>{_e(summary(comparison, names))}</pre>",
             "<h2>Alerts and pages per hour</h2>", _img(_per_hour(comparison, names, ZoneInfo(zone)), "per hour"),
             "<h2>The largest storms, side by side</h2>",
             "<p>Each alert where and when it fired, coloured by the incident it fell in; the largest storms "
             "the change touched come first.</p>"]
    storms = sorted(comparison.changes, key=lambda c: (c.kind == "unchanged", -len(c.alerts)))
    for change in storms[:STORMS_SHOWN]:
        parts.append(_img(_storm(change, names), f"{change.kind}: storm of {len(change.alerts)} alerts"))
    changed = [c for c in comparison.changes if c.kind != "unchanged"]
    parts.append(f"<h2>Incidents that changed ({len(changed)})</h2>")
    parts += [_change(change, names) for change in changed[:CHANGES_SHOWN]]
    if len(changed) > CHANGES_SHOWN:
        parts.append(f"<p>and {len(changed) - CHANGES_SHOWN} more.</p>")
    body = "\n".join(parts)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>stormdrain what-if</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _overview(comparison: Comparison) -> str:
    alerts = comparison.history.alerts
    if not alerts:
        return "<p>The history holds no firing alert.</p>"
    span = f"{alerts[0].first_seen:%Y-%m-%d %H:%M} to {alerts[-1].first_seen:%Y-%m-%d %H:%M} UTC"
    return (f"<p>{comparison.current.alerts} alert notifications ({len(alerts)} distinct alerts) from {span}, "
            f"replayed under each configuration.</p>")


def _per_hour(comparison: Comparison, names: tuple[str, str], zone: ZoneInfo):
    """Alerts received per hour (the same under both), and pages per hour under each configuration."""
    per_hour = comparison.history.per_hour
    hours = _hours(min(per_hour), max(per_hour)) if per_hour else []
    local = [h.astimezone(zone) for h in hours]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11.5, 5.2), sharex=True)
    top.bar(local, [per_hour[h] for h in hours], width=timedelta(hours=1), color="#999", align="edge")
    top.set_ylabel("alerts / hour")
    half = timedelta(minutes=30)
    for side, (outcome, colour, name) in enumerate(zip((comparison.current, comparison.proposed), COLOURS, names)):
        pages = Counter(d.paged_at.replace(minute=0, second=0, microsecond=0) for d in _first_pages(outcome))
        bottom.bar([h + half * side for h in local], [pages[h] for h in hours], width=half, color=colour,
                   align="edge", label=f"{name}: {sum(pages.values())} pages")
    bottom.set_ylabel("pages / hour")
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlabel(f"time ({zone.key})")
    bottom.legend(loc="upper right")
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


def _hours(first, last) -> list:
    count = int((last - first) / timedelta(hours=1)) + 1
    return [first + timedelta(hours=i) for i in range(count)]


def _first_pages(outcome) -> list:
    first: dict = {}
    for d in outcome.versions or ():
        if d.paged_at is not None and d.incident_id not in first:
            first[d.incident_id] = d
    return list(first.values())


def _storm(change: Change, names: tuple[str, str]):
    """One storm: each alert at its time and service, coloured by the incident it fell in, per side."""
    services = list(dict.fromkeys(a.service for a in change.alerts))
    start = change.alerts[0].first_seen
    figure, panels = plt.subplots(1, 2, figsize=(11.5, 1.4 + 0.28 * len(services)), sharey=True)
    for side, (panel, name, incidents) in enumerate(zip(panels, names, (change.current, change.proposed))):
        colour_of = {d.incident_id: plt.cm.tab10(i % 10) for i, d in enumerate(incidents)}
        for alert in change.alerts:
            incident = change.placed[(alert.fingerprint, alert.starts_at)][side]
            panel.scatter((alert.first_seen - start).total_seconds() / 60, services.index(alert.service),
                          color=colour_of.get(incident, "#999"), s=22)
        roots = ", ".join(dict.fromkeys(d.root_cause.service or "?" for d in incidents))
        panel.set_title(f"{name}: {len(incidents)} incident(s), root {roots}"[:90], fontsize=10)
        panel.grid(axis="y", color="#eee")
        panel.set_xlabel(f"minutes after {start:%Y-%m-%d %H:%M} UTC")
    panels[0].set_yticks(range(len(services)), services, fontsize=8)
    figure.tight_layout()
    return figure


def _img(figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _change(change: Change, names: tuple[str, str]) -> str:
    head = (f"<h3><span class=kind>{_e(change.kind)}</span> {len(change.current)} incident(s) under {_e(names[0])} "
            f"&rarr; {len(change.proposed)} under {_e(names[1])}, {len(change.alerts)} alerts</h3>")
    incidents = "".join(_incident_row(names[side], d) for side, ds in enumerate((change.current, change.proposed))
                        for d in ds)
    alerts = "".join(_alert_row(a, change.placed[(a.fingerprint, a.starts_at)]) for a in change.alerts[:ALERTS_SHOWN])
    more = f"<p>and {len(change.alerts) - ALERTS_SHOWN} more alerts.</p>" if len(change.alerts) > ALERTS_SHOWN else ""
    return (head + "<table><tr><th>config</th><th>incident</th><th>root cause</th><th>opened</th>"
            "<th class=n>alerts</th><th>paged</th></tr>" + incidents + "</table>"
            "<table><tr><th>first seen (UTC)</th><th>alert</th><th>service</th><th>severity</th><th>fingerprint</th>"
            f"<th>{_e(names[0])}</th><th>{_e(names[1])}</th></tr>" + alerts + "</table>" + more)


def _incident_row(name: str, d) -> str:
    paged = f"{d.paged_at:%H:%M:%S}" if d.paged_at else "no"
    return (f"<tr><td>{_e(name)}</td><td>{_e(d.incident_id)}</td><td>{_e(d.root_cause.service or '?')}: "
            f"{_e(d.root_cause.alert or '')}</td><td>{d.opened_at:%Y-%m-%d %H:%M:%S}</td>"
            f"<td class=n>{d.unique_alerts}</td><td>{paged}</td></tr>")


def _alert_row(alert, placed: tuple[str, str]) -> str:
    return (f"<tr><td>{alert.first_seen:%Y-%m-%d %H:%M:%S}</td><td>{_e(alert.alertname)}</td>"
            f"<td>{_e(alert.service)}</td><td>{_e(alert.severity)}</td><td>{alert.fingerprint}</td>"
            f"<td>{_e(placed[0])}</td><td>{_e(placed[1])}</td></tr>")


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
