"""Button clicks from Slack: the request signature check, and a click turned into an approval or feedback.

Slack signs each request with the app's signing secret: HMAC SHA-256 of
`v0:<timestamp>:<body>`, sent as `X-Slack-Signature: v0=<hex>` with
`X-Slack-Request-Timestamp`. A request is taken only when the signature
matches (compared in constant time) and the timestamp is within five minutes
of now; `verify` returns the named reason when it is not. Time is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.actions import Approval, Feedback
from pipeline.alerts import InputError, validation_error
from pipeline.slack.page import ACTION_PREFIX, ButtonValue

TOLERANCE_S = 300
MAX_ACTIONS = 5


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """Slack's request signature: "v0=" and the hex HMAC SHA-256 of v0:timestamp:body."""
    return "v0=" + hmac.new(secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, timestamp: str | None, sent: str | None, now: float) -> str | None:
    """None when the request is Slack's and fresh; otherwise why not: missing, malformed, stale, forged."""
    if not timestamp or not sent:
        return "missing"
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return "malformed"
    if abs(now - int(timestamp)) > TOLERANCE_S:
        return "stale"
    expected = signature(secret, timestamp, body).encode()
    return None if hmac.compare_digest(expected, sent.encode("utf-8", "replace")) else "forged"


class _Named(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=64)
    username: str = Field(default="", max_length=200)
    name: str = Field(default="", max_length=200)


class _Action(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action_id: str = Field(max_length=255)
    value: str = Field(default="", max_length=2000)
    action_ts: str = Field(default="", max_length=32)


class BlockActions(BaseModel):
    """The parts of Slack's block_actions payload that a click needs; the rest is ignored."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(max_length=64)
    user: _Named
    team: _Named | None = None
    trigger_id: str = Field(min_length=1, max_length=128)
    actions: list[_Action] = Field(default_factory=list, max_length=MAX_ACTIONS)


def parse_payload(body: bytes) -> BlockActions | None:
    """The payload of a form-encoded interaction body; None for interactions that are not button clicks."""
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=10)
        raw = json.loads(fields["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError, RecursionError):
        raise InputError("payload", "the body must be form-encoded with payload=<JSON>") from None
    if not isinstance(raw, dict):
        raise InputError("payload", "the payload must be a JSON object")
    if raw.get("type") != "block_actions":
        return None
    try:
        return BlockActions.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, prefix="payload") from None


def acts_from(payload: BlockActions, received: datetime) -> list[Approval | Feedback]:
    """One approval or feedback per stormdrain button in a click, with who, when and what they saw."""
    acts = []
    for action in payload.actions:
        if not action.action_id.startswith(ACTION_PREFIX):
            continue  # another app's button in the same message: not ours to judge
        acts.append(_act(payload, action, received))
    return acts


def _act(payload: BlockActions, action: _Action, received: datetime) -> Approval | Feedback:
    try:
        value = ButtonValue.model_validate_json(action.value)
    except ValidationError as exc:
        raise validation_error(exc, prefix="payload.actions.value") from None
    if ACTION_PREFIX + value.action != action.action_id:
        raise InputError("payload.actions.value", "the button value does not belong to its action")
    team = payload.team.id if payload.team else "-"
    common = dict(incident_id=value.incident_id, version=value.version, user_id=payload.user.id,
                  user_name=payload.user.username or payload.user.name, at=_clicked_at(action, received),
                  request_id=f"slack:{team}:{payload.trigger_id}:{action.action_id}"[:200], source="slack")
    if value.action == "approve":
        if value.runbook is None:
            raise InputError("payload.actions.value", "an approval must name its runbook")
        return Approval(runbook=value.runbook, **common)
    return Feedback(verdict=value.action, **common)


def _clicked_at(action: _Action, received: datetime) -> datetime:
    """When the person clicked: Slack's action_ts when it is a plausible time, else when it arrived."""
    try:
        at = datetime.fromtimestamp(float(action.action_ts), timezone.utc)
    except (ValueError, OverflowError, OSError):
        return received
    return at if abs((at - received).total_seconds()) <= TOLERANCE_S else received
