"""The digest: one living Slack message per quiet channel and time window, a line per incident that did not page.

Warnings do not each get a message. The first in a window posts the digest;
later ones, and later versions, update it in place; a line changes only when
what it says changes, so a chatty warning does not make Slack calls.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict

from pipeline.alerts import Time
from pipeline.diagnose import Diagnosis
from pipeline.render import confidence
from pipeline.slack import blockkit as bk
from pipeline.slack.page import Message

MAX_ENTRIES = 500  # kept per window; more are counted, not stored
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class DigestEntry(BaseModel):
    """One incident's line in a digest, as last shown."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    incident_id: str
    version: int
    status: Literal["firing", "resolved"]
    paged: bool
    line: str  # raw text, escaped when rendered
    opened_at: Time


def window_start(at: datetime, window: timedelta) -> datetime:
    """The start of the digest window an event time falls in (windows aligned on the epoch)."""
    seconds = max(int(window.total_seconds()), 60)
    return EPOCH + timedelta(seconds=int((at - EPOCH).total_seconds()) // seconds * seconds)


def digest_key(channel: str, d: Diagnosis, window: timedelta) -> str:
    return f"digest:{channel}:{window_start(d.opened_at, window):%Y-%m-%dT%H:%MZ}"


def entry_for(d: Diagnosis) -> DigestEntry:
    """The line a diagnosis gets: what broke, how sure, how wide; not counts that change every minute."""
    root = d.root_cause
    what = (f"{root.service} (inferred)" if root.inferred else f"{root.service}: {root.alert}") \
        if root.service else "no service named"
    state = "resolved" if d.status == "resolved" else ("now paging" if d.paged_at else d.severity or "firing")
    line = f"{what}, {confidence(d.confidence)} confidence, {len(d.affected_services)} service(s), {state}"
    return DigestEntry(incident_id=d.incident_id, version=d.version, status=d.status,
                       paged=d.paged_at is not None, line=line, opened_at=d.opened_at)


def changed(entries: list[DigestEntry], entry: DigestEntry) -> bool:
    """True when the entry is newer than the one shown and says something else."""
    shown = next((e for e in entries if e.incident_id == entry.incident_id), None)
    return shown is None or (entry.version > shown.version and entry.line != shown.line)


def with_entry(entries: list[DigestEntry], entry: DigestEntry) -> list[DigestEntry]:
    kept = [e for e in entries if e.incident_id != entry.incident_id]
    return sorted([*kept, entry], key=lambda e: (e.opened_at, e.incident_id))[-MAX_ENTRIES:]


def render_digest(entries: list[DigestEntry], start: datetime, window: timedelta) -> Message:
    """The digest message: a header for the window and one line per incident, newest last."""
    end = start + window
    title = f"🟡 Alerts that did not page, {start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC"
    firing = sum(1 for e in entries if e.status == "firing")
    lines = [f"{'✅' if e.status == 'resolved' else '🔴' if e.paged else '🟡'} `{bk.escape(e.incident_id)}` "
             f"{bk.escape(e.line)}" for e in entries]
    blocks = [bk.header(title), bk.section(bk.bounded_list(lines, bk.MAX_TEXT) or "none"),
              bk.context(f"{len(entries)} incident(s), {firing} firing; updated in place")]
    return Message(text=bk.clip(bk.escape(f"{title}: {len(entries)} incident(s)"), bk.MAX_TEXT), blocks=blocks)
