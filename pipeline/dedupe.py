"""Dedupe: is this notification a new alert, a change, or something already known?

Alert identity is the fingerprint plus startsAt. `decide` takes the
fingerprint's last state and one notification and returns the new state and a
decision with a named reason. It reads no clock and no other state; to stay
cheap on the per-alert path it updates the state object it is given.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Literal


from pipeline.alerts import AlertRecord, OptionalTime, Time
from pipeline.config import DedupeConfig


RECENT = 4  # record keys remembered per fingerprint


class Reason(str, Enum):
    """Why a notification was taken as new, as a change, or as nothing new."""

    NEW = "new"
    REFIRE = "refire"  # same fingerprint fires again after a quiet period: a new episode
    FLAPPING = "flapping"  # fires again soon after it resolved: same incident, flagged
    ANNOTATIONS_CHANGED = "annotations_changed"  # an update, not a new alert
    RESOLVED = "resolved"
    HA_DUPLICATE = "ha_duplicate"  # the same notification from the other Alertmanager of a pair
    RETRY = "retry"  # the same notification again soon, from the same Alertmanager
    REPEAT = "repeat"  # a repeat notification (repeat_interval, or a group re-sent)
    RESOLVE_UNSEEN = "resolve_unseen"  # a resolve for an alert never seen firing: opens nothing
    RESOLVED_BEFORE_FIRING = "resolved_before_firing"  # its firing arrived after its resolve
    STALE_FIRING = "stale_firing"  # a firing for an episode already resolved
    OLD_EPISODE = "old_episode"  # a notification about an episode older than the current one
    REDELIVERED = "redelivered"  # a record already taken, delivered again (a replay, a restart)

    @property
    def opens(self) -> bool:
        """Whether the decision brings a firing alert into an incident."""
        return self in (Reason.NEW, Reason.REFIRE, Reason.FLAPPING)

    @property
    def duplicate(self) -> bool:
        return self in (Reason.HA_DUPLICATE, Reason.RETRY, Reason.REPEAT)


@dataclass(slots=True)
class AlertState:
    """What dedupe remembers of one fingerprint: its current episode and last notification.

    A plain dataclass, updated in place: it changes with every notification.
    """

    fingerprint: str
    starts_at: Time
    status: Literal["firing", "resolved"]
    seen_firing: bool
    annotations: str  # digest, so an annotation change is an update and not a new alert
    last_seen: Time
    last_source: str
    ends_at: OptionalTime = None
    episodes: int = 1
    flaps: int = 0
    incident_id: str | None = None  # set by correlate: the incident the episode joined
    service: str | None = None  # set by correlate: the service the alert is about
    recent: list[str] = field(default_factory=list)  # keys of the last records taken, to spot redelivery


@dataclass(frozen=True, slots=True)
class Decision:
    reason: Reason
    detail: str = ""


def annotations_digest(annotations: dict[str, str]) -> str:
    """A digest stable across processes, so a restart does not see every alert as changed."""
    text = "\x1e".join(f"{k}\x1f{v}" for k, v in sorted(annotations.items()))
    return f"{zlib.crc32(text.encode()):08x}"


def _source(record: AlertRecord) -> str:
    return f"{record.external_url}|{record.receiver}"


def decide(
    prev: AlertState | None, record: AlertRecord, config: DedupeConfig
) -> tuple[AlertState, Decision]:
    """Decide what one notification means, given its fingerprint's state."""
    key = _record_key(record)
    if prev is not None and key in prev.recent:
        return prev, Decision(reason=Reason.REDELIVERED)
    recent = prev.recent if prev is not None else []
    state, decision = _decide(prev, record, config)
    state.recent = [*recent[-(RECENT - 1):], key]
    return state, decision


def _decide(prev: AlertState | None, record: AlertRecord, config: DedupeConfig) -> tuple[AlertState, Decision]:
    alert = record.alert
    if prev is None:
        return _first(record)
    if alert.starts_at < prev.starts_at:
        return _touch(prev, record), Decision(reason=Reason.OLD_EPISODE, detail=_ago(prev.starts_at, alert.starts_at))
    if alert.starts_at > prev.starts_at:
        return _next_episode(prev, record, config)
    if alert.status == "firing":
        return _same_episode_firing(prev, record, config)
    return _same_episode_resolved(prev, record, config)


def _record_key(record: AlertRecord) -> str:
    """What makes a record itself: the same key twice is one record delivered twice."""
    alert = record.alert
    return f"{record.received_at.timestamp()}|{alert.status}|{alert.starts_at.timestamp()}|{_source(record)}"


def _first(record: AlertRecord) -> tuple[AlertState, Decision]:
    alert = record.alert
    firing = alert.status == "firing"
    state = AlertState(
        fingerprint=alert.fingerprint,
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
        status=alert.status,
        seen_firing=firing,
        annotations=annotations_digest(alert.annotations),
        last_seen=record.received_at,
        last_source=_source(record),
    )
    return state, Decision(reason=Reason.NEW if firing else Reason.RESOLVE_UNSEEN)


def _next_episode(prev: AlertState, record: AlertRecord, config: DedupeConfig) -> tuple[AlertState, Decision]:
    alert = record.alert
    state, decision = _first(record)
    if alert.status == "resolved":
        state.episodes = prev.episodes + 1
        return state, decision
    # A new startsAt means the previous episode ended, whether or not its resolve reached us.
    ended = prev.ends_at if prev.status == "resolved" and prev.ends_at else alert.starts_at
    quiet = alert.starts_at - ended
    flapping = quiet < config.flap_window
    state.episodes = prev.episodes + 1
    state.flaps = prev.flaps + 1 if flapping else 0
    state.incident_id = prev.incident_id if flapping else None
    reason = Reason.FLAPPING if flapping else Reason.REFIRE
    return state, Decision(reason=reason, detail=f"fired again after {_seconds(quiet)} quiet")


def _same_episode_firing(prev: AlertState, record: AlertRecord, config: DedupeConfig) -> tuple[AlertState, Decision]:
    if prev.status == "resolved":
        reason = Reason.STALE_FIRING if prev.seen_firing else Reason.RESOLVED_BEFORE_FIRING
        return _touch(prev, record), Decision(reason=reason)
    digest = annotations_digest(record.alert.annotations)
    if digest != prev.annotations:
        state = _touch(prev, record)
        state.annotations = digest
        return state, Decision(reason=Reason.ANNOTATIONS_CHANGED)
    decision = _duplicate(prev, record, config)
    return _touch(prev, record), decision


def _same_episode_resolved(prev: AlertState, record: AlertRecord, config: DedupeConfig) -> tuple[AlertState, Decision]:
    if prev.status == "firing":
        state = _touch(prev, record)
        state.status, state.ends_at = "resolved", record.alert.ends_at or record.received_at
        return state, Decision(reason=Reason.RESOLVED)
    decision = _duplicate(prev, record, config)
    return _touch(prev, record), decision


def _duplicate(prev: AlertState, record: AlertRecord, config: DedupeConfig) -> Decision:
    since = record.received_at - prev.last_seen
    if _source(record) != prev.last_source and since <= config.retry_window:
        return Decision(reason=Reason.HA_DUPLICATE, detail=f"from {record.external_url or 'another replica'}")
    if since <= config.retry_window:
        return Decision(reason=Reason.RETRY, detail=f"{_seconds(since)} after the last")
    return Decision(reason=Reason.REPEAT, detail=f"{_seconds(since)} after the last")


def _touch(prev: AlertState, record: AlertRecord) -> AlertState:
    prev.last_seen, prev.last_source = record.received_at, _source(record)
    return prev


def _seconds(delta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _ago(current: datetime, older: datetime) -> str:
    return f"startsAt {_seconds(current - older)} before the current episode"
