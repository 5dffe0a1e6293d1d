"""History: what happened the last times an incident with this root cause was seen.

When an incident closes, its signature (root service and root alert) is
recorded with the affected set, the runbook that closed it, and what people
said of the diagnosis. A recurring incident says "seen 3 times, last closed by
RB-DB-001"; it gains confidence only when past diagnoses were confirmed.

The store is any mapping from key to JSON text: a dict in tests, a RocksDB
file through rocksdict in the embedded runtime, a faust table on Kafka.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.actions import Feedback
from pipeline.alerts import OptionalTime

MAX_REMEMBERED = 20


def signature_key(service: str, alert: str | None) -> str:
    return f"sig:{service}|{alert or '-'}"


def incident_key(incident_id: str) -> str:
    return f"inc:{incident_id}"


class PastIncident(BaseModel):
    """What history keeps of one root-cause signature."""

    model_config = ConfigDict(extra="forbid")

    service: str
    alert: str | None
    seen: int = 0
    last_closed_at: OptionalTime = None
    last_runbook: str | None = None
    affected: list[str] = Field(default_factory=list)
    confirmed: int = 0
    wrong: int = 0
    not_actionable: int = 0
    incidents: list[str] = Field(default_factory=list)
    late_requests: list[str] = Field(default_factory=list)  # request ids of verdicts counted after a close

    def trusted(self) -> bool:
        """People confirmed this diagnosis before, more often than they corrected it."""
        return self.confirmed > self.wrong

    def log_ratio(self, weight: float) -> float:
        """How much likelier a confirmed past makes this root: grows slowly with confirmations."""
        return weight * math.log1p(self.confirmed - self.wrong) if self.trusted() else 0.0

    def text(self) -> str:
        when = f", last closed {self.last_closed_at:%Y-%m-%d %H:%M} UTC" if self.last_closed_at else ""
        runbook = f" by {self.last_runbook}" if self.last_runbook else ""
        said = []
        if self.confirmed:
            said.append(f"confirmed {self.confirmed}x")
        if self.wrong:
            said.append(f"corrected {self.wrong}x")
        if self.not_actionable:
            said.append(f"marked not actionable {self.not_actionable}x")
        verdict = f" ({', '.join(said)})" if said else " (never confirmed: no confidence added)"
        return f"seen {self.seen} time(s) before{when}{runbook}{verdict}"


class HistoryUpdate(BaseModel):
    """An output of diagnose: write this record under this key."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["history"] = "history"
    key: str
    value: str  # the record's JSON, or the signature key for an incident index entry


Verdicts = dict[str, int]


def closed(history: MutableMapping | None, incident_id: str, service: str, alert: str | None,
           at, affected: list[str], runbook: str | None, verdicts: Verdicts) -> list[HistoryUpdate]:
    """The updates that record a closed incident under its signature."""
    key = signature_key(service, alert)
    past = lookup(history, key) or PastIncident(service=service, alert=alert)
    index = HistoryUpdate(key=incident_key(incident_id), value=key)
    if incident_id in past.incidents:
        return [index]  # the close taken again (a restart redoes unsaved work): counted once
    record = past.model_copy(update={
        "seen": past.seen + 1, "last_closed_at": at, "affected": affected[:50],
        "last_runbook": runbook or past.last_runbook,
        "confirmed": past.confirmed + verdicts.get("confirmed", 0), "wrong": past.wrong + verdicts.get("wrong_root", 0),
        "not_actionable": past.not_actionable + verdicts.get("not_actionable", 0),
        "incidents": [*past.incidents, incident_id][-MAX_REMEMBERED:],
    })
    return [HistoryUpdate(key=key, value=record.model_dump_json()), index]


def late_feedback(history: MutableMapping | None, feedback: Feedback) -> list[HistoryUpdate]:
    """A verdict given after the incident closed still counts toward its signature."""
    if history is None or incident_key(feedback.incident_id) not in history:
        return []
    key = _text(history[incident_key(feedback.incident_id)])
    past = lookup(history, key)
    field = {"confirmed": "confirmed", "wrong_root": "wrong", "not_actionable": "not_actionable"}.get(feedback.verdict)
    if past is None or field is None or feedback.request_id in past.late_requests:
        return []  # unknown, no verdict for history, or the same verdict delivered again
    record = past.model_copy(update={field: getattr(past, field) + 1,
                                     "late_requests": [*past.late_requests, feedback.request_id][-MAX_REMEMBERED:]})
    return [HistoryUpdate(key=key, value=record.model_dump_json())]


def lookup(history: MutableMapping | None, key: str) -> PastIncident | None:
    if history is None:
        return None
    raw = history.get(key)
    return _parse(_text(raw)) if raw is not None else None


@lru_cache(maxsize=4096)
def _parse(raw: str) -> PastIncident:
    """Parsed once per stored text: rankings look history up for every candidate."""
    return PastIncident.model_validate_json(raw)


def apply(history: MutableMapping, updates: list[HistoryUpdate]) -> None:
    for update in updates:
        history[update.key] = update.value


def _text(raw) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def open_store(path: str | Path | None) -> MutableMapping:
    """A history store: a RocksDB directory through rocksdict, or memory when no path is given."""
    if path is None:
        return {}
    from rocksdict import Rdict

    return Rdict(str(path))
