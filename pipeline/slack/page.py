"""The Slack page of a diagnosis: Block Kit that a person reads at 3 AM and acts on.

One header, the summary, the facts in fields, the affected services, the
evidence, the runbook with its exact command, who did what, the buttons and
the links back to Alertmanager and Prometheus. The layout has a fixed number
of blocks, so a storm of any size stays within Slack's limits: long lists end
in "and N more".
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from pipeline.alerts import NO_ALERTNAME
from pipeline.actions import INCIDENT_ID, Approval, Feedback
from pipeline.diagnose import Diagnosis
from pipeline.render import confidence, duration
from pipeline.runbooks import RUNBOOK_ID, Catalog, Runbook
from pipeline.slack import blockkit as bk

ACTION_PREFIX = "stormdrain."
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")  # what may reach a command line
MAX_ACTS_SHOWN = 9
Button = Literal["approve", "manual", "escalate", "not_actionable"]


MAX_VERSION = 10**9  # far beyond any incident's versions, far below what a hostile click may claim


class ButtonValue(BaseModel):
    """What a button carries back on a click: the incident, the version the person saw, the runbook."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    action: Button = Field(alias="a")
    incident_id: str = Field(alias="i", pattern=INCIDENT_ID)
    version: int = Field(alias="v", ge=1, le=MAX_VERSION)
    runbook: str | None = Field(default=None, alias="r", pattern=RUNBOOK_ID.pattern)

    def encode(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class Links:
    """Where a page links back to: Alertmanager (default: the diagnosis's external URL) and Prometheus."""

    alertmanager: str = ""
    prometheus: str = ""


@dataclass(frozen=True)
class Message:
    """A Slack message: the fallback text for notifications and the blocks."""

    text: str
    blocks: list[dict]


def render_message(d: Diagnosis, catalog: Catalog | None = None, links: Links = Links(),
                   acts: list[Approval | Feedback] = ()) -> Message:
    """The page of one diagnosis version, with what people did about it."""
    runbook = catalog.get(d.recommended_runbook) if catalog and d.recommended_runbook else None
    blocks = [
        bk.header(f"{_icon(d)} {_kind(d)} {_root_title(d)}"),
        bk.section(f"*{bk.escape(d.summary)}*", _fields(d)),
        bk.section(_affected(d)),
        bk.section(_evidence(d)),
        bk.section(_runbook_text(d, runbook)),
    ]
    if acts:
        blocks.append(bk.context(*_act_lines(acts)))
    blocks.append(bk.actions(_buttons(d, runbook, _approvable(d, catalog, runbook)),
                             block_id=f"{d.incident_id}:v{d.version}"))
    blocks.append(bk.context(_footer(d, links)))
    return Message(text=bk.clip(bk.escape(f"{_kind(d)} {_root_title(d)}: {d.summary}"), bk.MAX_TEXT),
                   blocks=bk.fit_blocks(blocks))


def _kind(d: Diagnosis) -> str:
    return "RESOLVED" if d.status == "resolved" else ("PAGE" if d.paged_at else "NOTICE")


def _icon(d: Diagnosis) -> str:
    return {"RESOLVED": "✅", "PAGE": "🔴", "NOTICE": "🟡"}[_kind(d)]


def _root_title(d: Diagnosis) -> str:
    root = d.root_cause
    if root.service is None:
        return "no service named by any alert"
    return f"{root.service} (inferred root)" if root.inferred else f"{root.service}: {root.alert}"


def dedup_ratio(d: Diagnosis) -> str:
    """"31 alerts, 1 page": what stormdrain saved the person from."""
    pages = "1 page" if d.paged_at else "no page"
    return f"{d.alert_count} alerts, {pages}"


def _fields(d: Diagnosis) -> list[str]:
    root = d.root_cause
    cause = ("no alert of its own: where the alerting paths meet" if root.inferred
             else f"`{bk.escape(root.alert)}`" if root.alert else "no alert")
    since = f"since {d.opened_at:%Y-%m-%d %H:%M} UTC"
    status = (f"Resolved after {duration((d.updated_at - d.opened_at).total_seconds())}"
              if d.status == "resolved" else f"Firing {since}")
    return [
        f"*Root cause*\n{bk.escape(root.service or 'unknown')}: {cause}",
        f"*Confidence*\n{confidence(d.confidence)}",
        f"*Status*\n{status}" + (" (flapping)" if d.flapping else ""),
        f"*Dedup*\n{dedup_ratio(d)} ({d.unique_alerts} unique)",
        f"*Severity*\n{bk.escape(d.severity or 'unknown')}",
        f"*Scope*\n{bk.escape(d.scope)}",
    ]


def _affected(d: Diagnosis) -> str:
    head = f"*Affected services ({len(d.affected_services)})*\n"
    names = [f"`{bk.escape(s)}`" for s in d.affected_services]
    return head + (bk.bounded_list(names, bk.MAX_TEXT - bk.slack_len(head), sep=", ") if names else "none named")


def _evidence(d: Diagnosis) -> str:
    head = "*Evidence*\n"
    facts = [f"• {bk.escape(e.text)}" for e in d.evidence]
    return head + (bk.bounded_list(facts, bk.MAX_TEXT - bk.slack_len(head)) if facts else "none yet")


def _runbook_text(d: Diagnosis, runbook: Runbook | None) -> str:
    if d.recommended_runbook is None:
        return "*No runbook matches*: investigate the root cause above."
    title = f" {bk.escape(runbook.title)}" if runbook else ""
    text = f"*Recommended runbook* `{bk.escape(d.recommended_runbook)}`{title}"
    command = manual_command(d, runbook)
    if command is None:
        return text + "\nNo command to run by hand: the runbook names no playbook or the service name is unsafe."
    return text + f"\nBy hand:\n```{bk.clip(bk.escape(command), bk.MAX_TEXT - bk.slack_len(text) - 16)}```"


def manual_command(d: Diagnosis, runbook: Runbook | None) -> str | None:
    """The exact command that runs the runbook by hand, or None when it cannot be given safely.

    Only names that match a strict pattern reach it, and they go in as one
    quoted JSON argument: a label value never becomes shell or Jinja syntax.
    """
    service = d.root_cause.service
    if runbook is None or not runbook.playbook or not service or not SAFE_NAME.match(service):
        return None
    if not SAFE_NAME.match(d.incident_id) or not SAFE_NAME.match(runbook.playbook):
        return None
    extra = json.dumps({"incident_id": d.incident_id, "service": service, "runbook": runbook.id})
    return f"ansible-playbook playbooks/{runbook.playbook} -e {shlex.quote(extra)}"


def _approvable(d: Diagnosis, catalog: Catalog | None, runbook: Runbook | None) -> str | None:
    """The runbook a person may approve: one of the catalog, or with no catalog at hand a well-formed id."""
    if runbook is not None:
        return runbook.id
    wanted = d.recommended_runbook
    return wanted if catalog is None and wanted and RUNBOOK_ID.match(wanted) else None


def _buttons(d: Diagnosis, runbook: Runbook | None, approvable: str | None) -> list[dict]:
    def value(action: Button, with_runbook: bool = False) -> str:
        return ButtonValue(action=action, incident_id=d.incident_id, version=d.version,
                           runbook=approvable if with_runbook else None).encode()

    buttons = []
    if d.status == "firing" and approvable:
        buttons.append(bk.button("Approve fix", ACTION_PREFIX + "approve", value("approve", True), "primary",
                                 bk.confirm("Approve the fix?", bk.escape(
                                     f"Run {approvable} for {d.root_cause.service} "
                                     f"(diagnosis v{d.version})?"), "Approve", "Cancel")))
        command = manual_command(d, runbook)
        if command:
            buttons.append(bk.button("Run manually", ACTION_PREFIX + "manual", value("manual", True), None,
                                     bk.confirm("Run it by hand", f"```{bk.escape(command)}```",
                                                "I am running it", "Cancel")))
    if d.status == "firing":
        buttons.append(bk.button("Escalate", ACTION_PREFIX + "escalate", value("escalate"), "danger"))
    buttons.append(bk.button("Not actionable", ACTION_PREFIX + "not_actionable", value("not_actionable")))
    return buttons


def _act_lines(acts: list[Approval | Feedback]) -> list[str]:
    """What people did, each thing once: a double click on the same button is one line."""
    first: dict[tuple, Approval | Feedback] = {}
    for a in acts:
        first.setdefault((type(a), a.user_id, getattr(a, "runbook", None), getattr(a, "verdict", None), a.version), a)
    acts = list(first.values())
    shown = [act_line(a) for a in acts[-MAX_ACTS_SHOWN:]]
    earlier = len(acts) - len(shown)
    return ([f"and {earlier} earlier"] if earlier else []) + shown


def act_line(act: Approval | Feedback) -> str:
    """Who did what and when, as the message shows it: "✅ Approved RB-DB-001 by @ana at 04:01 UTC (saw v7)"."""
    who = f"<@{act.user_id}>" if re.fullmatch(r"[UW][A-Z0-9]{2,30}", act.user_id) else bk.escape(
        act.user_name or act.user_id)
    if isinstance(act, Approval):
        what = f"✅ Approved `{act.runbook}`"
    else:
        what = {"escalate": "📣 Escalated", "not_actionable": "🔕 Marked not actionable",
                "manual": "🛠 Running the runbook by hand", "confirmed": "👍 Confirmed",
                "wrong_root": "👎 Wrong root cause"}.get(act.verdict, bk.escape(act.verdict))
    return f"{what} by {who} at {act.at:%H:%M} UTC (saw v{act.version})"


def _footer(d: Diagnosis, links: Links) -> str:
    parts = [f"incident `{bk.escape(d.incident_id)}` v{d.version}", f"updated {d.updated_at:%H:%M:%S} UTC"]
    alertmanager = (links.alertmanager or d.external_url).rstrip("/")
    if alertmanager:
        parts.append(bk.link(f"{alertmanager}/#/alerts", "Alertmanager"))
    if links.prometheus:
        parts.append(bk.link(prometheus_link(links.prometheus, d), "Prometheus"))
    return " · ".join(parts)


def prometheus_link(base: str, d: Diagnosis) -> str:
    """Prometheus' graph of the root alert's ALERTS series (all firing alerts when there is no root alert).

    An alert without an alertname came through Alertmanager's API, not a rule: ALERTS has no series of it.
    """
    alert = d.root_cause.alert
    named = alert and alert != NO_ALERTNAME
    selector = f'alertname="{_promql_string(alert)}"' if named else 'alertstate="firing"'
    return f"{base.rstrip('/')}/graph?g0.expr={quote('ALERTS{' + selector + '}', safe='')}&g0.tab=0"


def _promql_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# -- thread replies ------------------------------------------------------------


def reply_text(reason: str, d: Diagnosis, before: Diagnosis | None) -> str:
    """The one short thread reply for a significant change."""
    if reason == "new_root":
        was = _root_title(before) if before else "unknown"
        text = f"Root cause is now {_root_title(d)} ({confidence(d.confidence)} confidence); was {was}."
    elif reason == "resolved":
        text = f"Resolved after {duration((d.updated_at - d.opened_at).total_seconds())}: {d.summary}"
    elif reason == "reopened":
        text = f"Firing again: {d.summary}"
    elif reason == "paged":
        text = f"Now paging: {d.summary}"
    else:
        text = "Remediation: " + "; ".join(e.text for e in new_remediations(d, before))
    return bk.clip(bk.escape(text), bk.MAX_TEXT)


def new_remediations(d: Diagnosis, before: Diagnosis | None) -> list:
    seen = {e.text for e in before.evidence if e.kind == "remediation"} if before else set()
    return [e for e in d.evidence if e.kind == "remediation" and e.text not in seen]


def reply_message(text: str) -> Message:
    return Message(text=text, blocks=[bk.section(text)])
