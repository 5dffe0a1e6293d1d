"""Alertmanager webhook models, Prometheus fingerprints and RFC 3339 times.

The models take what real Alertmanagers send (webhook version 4, and older
payloads without `status`, `fingerprint` or `truncatedAlerts`) and reject
anything else with an error that names the field.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)

ZERO_TIME = "0001-01-01T00:00:00Z"
_ZERO = timedelta(0)
FNV_OFFSET = 14695981039346656037
FNV_PRIME = 1099511628211
MASK64 = (1 << 64) - 1
SEPARATOR = 0xFF
CUT_MARK = "… [cut by stormdrain: "
GENERATOR_URL = "\0generatorURL"  # not a possible annotation name
NO_ALERTNAME = "(no alertname)"
# Windows, retentions and look-backs are added to and taken from times: within these bounds every result
# is still a time, so a hostile timestamp is refused where it comes in, not deep inside a window.
YEARS = range(1000, 9000)  # a time outside these years is refused; inside them, any offset converts to UTC


class InputError(ValueError):
    """Input that cannot be accepted; `field` names where, `reason` says why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason

    def __reduce__(self):
        # Raised in a worker process of tune or whatif, it crosses back by pickle with both parts.
        return InputError, (self.field, self.reason)

    def as_json(self) -> dict[str, str]:
        return {"error": self.reason, "field": self.field}


def _utc(value: datetime) -> datetime:
    """In UTC; a time already at offset zero is kept as parsed (cheaper than converting it)."""
    return value if value.utcoffset() == _ZERO else value.astimezone(timezone.utc)


def _utc_in_range(value: datetime) -> datetime:
    """In UTC and within YEARS, or a ValueError that says so."""
    if value.year not in YEARS:  # checked before converting: a time of year 1 or 9999 may not convert
        raise ValueError(f"time is out of range: must fall between the years {YEARS.start} and {YEARS.stop}")
    return _utc(value)


def _utc_or_unset(value: datetime | None) -> datetime | None:
    """Aware UTC, with Alertmanager's zero time (year 1) meaning "not set"."""
    if value is None or value.year == 1:
        return None
    return _utc_in_range(value)


def format_time(value: datetime | None) -> str | None:
    """Format an aware time as RFC 3339 UTC with a Z, microseconds kept when there are any."""
    if value is None:
        return None
    return _utc(value).isoformat().replace("+00:00", "Z")


# Times are parsed by pydantic's own parser (RFC 3339 with any fraction and offset; it is
# lenient enough to take a space for the T and unix seconds too) and must carry an offset.
Time = Annotated[AwareDatetime, AfterValidator(_utc_in_range), PlainSerializer(format_time, return_type=str)]
OptionalTime = Annotated[
    AwareDatetime | None,
    AfterValidator(_utc_or_unset),
    PlainSerializer(format_time, return_type=str | None),
]
_TIME = TypeAdapter(OptionalTime)


def parse_time(value: Any) -> datetime | None:
    """Parse an RFC 3339 time into aware UTC; the zero time means "not set"."""
    try:
        return _TIME.validate_python(value)
    except ValidationError as exc:
        raise ValueError(validation_error(exc).reason) from None


Labels = dict[str, StrictStr]


def fingerprint(labels: dict[str, str]) -> str:
    """The Prometheus fingerprint of a label set: FNV-1a 64 over sorted pairs, as %016x."""
    digest = FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                digest = ((digest ^ byte) * FNV_PRIME) & MASK64
            digest = ((digest ^ SEPARATOR) * FNV_PRIME) & MASK64
    return f"{digest:016x}"


class Alert(BaseModel):
    """One alert as an Alertmanager webhook carries it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    status: Literal["firing", "resolved"] | None = None
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    starts_at: Time = Field(alias="startsAt")
    ends_at: OptionalTime = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = ""

    @field_validator("labels")
    @classmethod
    def _needs_a_label(cls, labels: dict[str, str]) -> dict[str, str]:
        # Alertmanager's own rule: a label, not an alertname (its API takes alerts without one and sends them on).
        if not labels:
            raise ValueError("an alert needs at least one label")
        return labels

    @property
    def name(self) -> str:
        """The alertname label, or NO_ALERTNAME for an alert that came without one."""
        return self.labels.get("alertname") or NO_ALERTNAME

    def model_post_init(self, _context: Any) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint(self.labels))
        if self.status is None:
            object.__setattr__(self, "status", self._implied_status())

    def _implied_status(self) -> str:
        # Payloads older than Alertmanager 0.19 carry no status: an end time means resolved.
        return "resolved" if self.ends_at is not None else "firing"


class Webhook(BaseModel):
    """An Alertmanager webhook body (version 4): one aggregation group, not one incident."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    version: str = "4"
    group_key: str = Field(default="", alias="groupKey")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"] = "firing"
    receiver: str = ""
    group_labels: Labels = Field(default_factory=dict, alias="groupLabels")
    common_labels: Labels = Field(default_factory=dict, alias="commonLabels")
    common_annotations: Labels = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[Alert]

    @field_validator("version")
    @classmethod
    def _version_4(cls, version: str) -> str:
        if version != "4":
            raise ValueError(f"unsupported webhook version {version!r}, expected '4'")
        return version

    def latest_time(self) -> datetime:
        """The latest startsAt or endsAt among the alerts: a bare body's event time."""
        return max(max(a.starts_at, a.ends_at or a.starts_at) for a in self.alerts)


class AlertRecord(BaseModel):
    """One alert as the bridge publishes it to `alerts.raw`, with where and when it came in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["alert"] = "alert"
    received_at: Time
    scope: str
    receiver: str = ""
    group_key: str = ""
    external_url: str = ""
    truncated_alerts: int = 0
    alert: Alert

    @property
    def identity(self) -> tuple[str, datetime]:
        """Alert identity for dedupe: fingerprint plus startsAt."""
        return self.alert.fingerprint, self.alert.starts_at


def encode_within(record: AlertRecord, limit: int) -> bytes | None:
    """The record as JSON of at most `limit` bytes, or None when its labels alone do not fit.

    Labels are the alert's identity and are never cut; the longest annotation values
    (and the generator URL) are cut, each saying how much it lost, until the record fits.
    """
    encoded = record.model_dump_json().encode()
    alert = record.alert
    while len(encoded) > limit:
        texts = {**alert.annotations, GENERATOR_URL: alert.generator_url}
        name = max(texts, key=lambda k: len(texts[k]))
        value = texts[name]
        over = len(encoded) - limit + len(CUT_MARK) + 20
        if len(value) <= len(CUT_MARK) + 20:
            return None
        keep = max(0, len(value) - over)
        cut = f"{value[:keep]}{CUT_MARK}{len(value) - keep} chars]"
        alert = alert.model_copy(update={"generator_url": cut} if name == GENERATOR_URL
                                 else {"annotations": {**alert.annotations, name: cut}})
        encoded = record.model_copy(update={"alert": alert}).model_dump_json().encode()
    return encoded


def validation_error(exc: ValidationError, prefix: str = "") -> InputError:
    """Turn a pydantic error into an InputError naming the first bad field."""
    first = exc.errors()[0]
    path = ".".join(str(p) for p in first.get("loc", ()))
    message = first.get("msg", "invalid")
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return InputError(".".join(p for p in (prefix, path) if p), message)


def parse_webhook(body: Any) -> Webhook:
    """Validate a decoded webhook body; raise InputError naming the bad field."""
    if not isinstance(body, dict):
        raise InputError("", "webhook body must be a JSON object")
    try:
        return Webhook.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


def split_webhook(
    webhook: Webhook, received_at: datetime, scope_of: Any
) -> list[AlertRecord]:
    """One record per alert, as the bridge publishes them; `scope_of(labels)` keys each."""
    return [
        AlertRecord(
            received_at=received_at,
            scope=scope_of(alert.labels),
            receiver=webhook.receiver,
            group_key=webhook.group_key,
            external_url=webhook.external_url,
            truncated_alerts=webhook.truncated_alerts,
            alert=alert,
        )
        for alert in webhook.alerts
    ]
