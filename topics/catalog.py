"""The one catalog of topics and tables: names, partitions, retention, keys and value schemas.

Nothing else in stormdrain spells a topic or table name; the embedded runtime,
the Kafka agents and the rendered manifests all read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from pipeline.actions import Approval, Feedback, RemediationEvent
from pipeline.alerts import AlertRecord, InputError, validation_error
from pipeline.correlate import DeadLetter, ScopeState
from pipeline.diagnose import Diagnosis, DiagnosisState
from pipeline.incidents import Incident
from pipeline.slack.lifecycle import MessageRef
from pipeline.remediate import LedgerEntry

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    """A Kafka topic: its name, its key, the model of its values and its configs."""

    name: str
    key: str
    value: type[BaseModel]
    partitions: int = 6
    retention_ms: int = 7 * DAY_MS
    compact: bool = False
    description: str = ""
    configs: dict[str, str] = field(default_factory=dict)

    def topic_configs(self) -> dict[str, str]:
        base = {
            "cleanup.policy": "compact" if self.compact else "delete",
            "retention.ms": str(self.retention_ms),
        }
        return {**base, **self.configs}

    def encode(self, value: BaseModel) -> bytes:
        return value.model_dump_json(by_alias=True).encode()

    def decode(self, raw: bytes | str) -> Any:
        """Decode a value; an InputError names the field that is wrong."""
        try:
            return self.value.model_validate_json(raw)
        except ValidationError as exc:
            raise validation_error(exc, prefix=self.name) from None

    def schema(self) -> dict:
        return self.value.model_json_schema(by_alias=True)


ALERTS_RAW = Topic(
    "stormdrain.alerts.raw", "scope", AlertRecord, retention_ms=30 * DAY_MS,
    description="One record per alert as the bridge received it, keyed by correlation scope.",
)
INCIDENTS = Topic(
    "stormdrain.incidents", "incident_id", Incident, compact=True,
    description="Incident snapshots from correlate, keyed by incident id; the latest per key is kept.",
)
DIAGNOSES = Topic(
    "stormdrain.diagnoses", "incident_id", Diagnosis, retention_ms=30 * DAY_MS,
    description="Every version of every incident's diagnosis, keyed by incident id.",
)
DEAD_LETTERS = Topic(
    "stormdrain.alerts.dlq", "source", DeadLetter, partitions=1, retention_ms=30 * DAY_MS,
    description="Records that could not be taken, with the reason.",
)
APPROVALS = Topic(
    "stormdrain.approvals", "incident_id", Approval, partitions=3, retention_ms=90 * DAY_MS,
    description="Approvals of runbook runs, from Slack buttons, keyed by incident id.",
)
FEEDBACK = Topic(
    "stormdrain.feedback", "incident_id", Feedback, partitions=3, retention_ms=365 * DAY_MS,
    description="People's verdicts on diagnoses (not actionable, escalate, confirmed, wrong root).",
)
REMEDIATIONS = Topic(
    "stormdrain.remediations", "incident_id", RemediationEvent, partitions=3, retention_ms=365 * DAY_MS,
    description="Every step of every runbook run: the audit trail.",
)
SLACK_MESSAGES = Topic(
    "stormdrain.notifier.messages", "key", MessageRef, partitions=3, compact=True, retention_ms=30 * DAY_MS,
    configs={"cleanup.policy": "compact,delete"},
    description="Where each Slack message is (channel, ts) and what it shows, keyed by incident id or digest key; "
                "the Slack notifier reloads it at start so a redelivered diagnosis updates, never posts twice.",
)
EXECUTOR_LEDGER = Topic(
    "stormdrain.executor.ledger", "incident_id/runbook", LedgerEntry, partitions=1, compact=True,
    retention_ms=365 * DAY_MS,
    description="The executor's run ledger: each run's plan and state (queued, started, finished), written "
                "before the run starts; the latest per incident and runbook is kept.",
)
SCOPE_TABLE = Topic(
    "stormdrain.correlate.scopes", "scope", ScopeState, compact=True,
    description="Changelog of correlate's per-scope state.",
)
DIAGNOSIS_TABLE = Topic(
    "stormdrain.diagnose.state", "incident_id", DiagnosisState, compact=True,
    description="Changelog of diagnose's per-incident version state.",
)

TOPICS: tuple[Topic, ...] = (ALERTS_RAW, INCIDENTS, DIAGNOSES, DEAD_LETTERS, APPROVALS, FEEDBACK, REMEDIATIONS,
                             SLACK_MESSAGES, EXECUTOR_LEDGER)
TABLES: tuple[Topic, ...] = (SCOPE_TABLE, DIAGNOSIS_TABLE)


def by_name(name: str) -> Topic:
    for topic in TOPICS + TABLES:
        if name in (topic.name, topic.name.removeprefix("stormdrain.")):
            return topic
    raise InputError("topic", f"no topic named {name!r}")
