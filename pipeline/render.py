"""Page rendering for a terminal: what, where, why and what to do, in five lines."""

from __future__ import annotations

import re

from pipeline.calibration import percent as confidence
from pipeline.diagnose import Diagnosis
from pipeline.runbooks import Catalog

WIDTH = 160
# Label values reach a terminal: control characters (escape sequences, NUL) are shown, never obeyed.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def render_page(diagnosis: Diagnosis, catalog: Catalog | None = None, width: int = WIDTH) -> str:
    """The page a half-asleep engineer reads: five lines, the most important first."""
    root = diagnosis.root_cause
    head = _head(diagnosis)
    what = (f"{root.service} (inferred: no alert of its own)" if root.inferred
            else f"{root.service}: {root.alert}") if root.service else "no service named by any alert"
    lines = [
        f"{head}  {what}  ({confidence(diagnosis.confidence)} confidence)",
        f"What   {_dedup(diagnosis)}",
        f"Where  {_where(diagnosis)}",
        f"Why    {_why(diagnosis)}",
        f"Do     {_do(diagnosis, catalog)}",
    ]
    return "\n".join(_clip(printable(line), width) for line in lines)


def printable(text: str) -> str:
    """Text safe to print on a terminal: each control character becomes U+FFFD."""
    return CONTROL.sub("\ufffd", text)


def _head(d: Diagnosis) -> str:
    kind = "RESOLVED" if d.status == "resolved" else ("PAGE" if d.paged_at else "NOTICE")
    return f"{kind} {d.incident_id} v{d.version} [{d.severity}] scope {d.scope}, since {d.opened_at:%Y-%m-%d %H:%M:%S} UTC"




def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _dedup(d: Diagnosis) -> str:
    pages = "1 page" if d.paged_at else "no page"
    text = f"{d.alert_count} alerts ({d.unique_alerts} unique), {pages}; {len(d.affected_services)} services affected"
    if d.status == "resolved":
        text += f"; resolved after {duration((d.updated_at - d.opened_at).total_seconds())}"
    return text


def _where(d: Diagnosis) -> str:
    root = d.root_cause.service
    others = [s for s in d.affected_services if s != root]
    shown = ", ".join(others[:8]) + (f" and {len(others) - 8} more" if len(others) > 8 else "")
    return f"{root} (root); also alerting: {shown}" if others else f"{root or 'unknown'} only"


def _why(d: Diagnosis) -> str:
    if not d.candidates:
        return "no service to rank"
    reasons = "; ".join(d.candidates[0].reasons[:2])
    if len(d.candidates) > 1:
        reasons += f"; next: {d.candidates[1].service}"
    return reasons


def _do(d: Diagnosis, catalog: Catalog | None) -> str:
    if d.recommended_runbook is None:
        return "no runbook matches: investigate the root cause above"
    runbook = catalog.get(d.recommended_runbook) if catalog else None
    title = f" {runbook.title}" if runbook else ""
    return f"{d.recommended_runbook}{title} (approve in Slack, or run it by hand)"


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."
