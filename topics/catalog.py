"""The one catalog of topics and tables: names, partitions, retention, keys and value schemas.

Nothing else in stormdrain spells a topic or table name; the embedded runtime,
the Kafka agents and the rendered manifests all read them from here. Every
name starts with a namespace (`stormdrain` unless a deployment picks another),
so several pipelines can share one cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from pipeline.actions import Approval, Feedback, RemediationEvent
from pipeline.alerts import AlertRecord, InputError, Time, validation_error
from pipeline.correlate import DeadLetter, ScopeState
from pipeline.diagnose import Diagnosis, DiagnosisState
from pipeline.evidence import IncidentEvidence
from pipeline.history import PastIncident
from pipeline.incidents import Incident
from pipeline.slack.lifecycle import MessageRef
from pipeline.remediate import LedgerEntry

DAY_MS = 24 * 3600 * 1000
MIB = 1 << 20
NAMESPACE = "stormdrain"


class Tick(BaseModel):
    """The ticker's record on `alerts.raw`: event time has reached `at` on this partition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["tick"] = "tick"
    at: Time


class SavedScope(BaseModel):
    """Correlate's table value: a scope's state and the source offsets it has taken.

    Pending records are not stored: their offsets are, and they are read again
    from `alerts.raw` after a restart, because the agent acknowledges a record
    only once it has left the pending buffer.
    """

    model_config = ConfigDict(extra="forbid")

    partition: int
    offset: int = -1  # the last alerts.raw offset applied to this scope
    pending: list[int] = Field(default_factory=list)  # offsets of records still pending
    sent: int = 0  # incident snapshots sent so far; each carries its number, so a repeat is known
    state: ScopeState


class SavedDiagnosis(BaseModel):
    """Diagnose's table value: an incident's diagnosis state and the last offset taken per source topic.

    A closed incident keeps a small entry with no state, so a snapshot read
    again after a restart cannot start its versions over.
    """

    model_config = ConfigDict(extra="forbid")

    offsets: dict[str, int] = Field(default_factory=dict)
    seq: int = 0  # number of the last incident snapshot taken: a snapshot sent again is not news
    state: DiagnosisState | None = None
    closed: bool = False


class NotifiedVersion(BaseModel):
    """The notifier's note of the latest diagnosis version its sinks have handled for an incident."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    incident_id: str = Field(min_length=1, max_length=64)
    version: int = Field(ge=1)


class ScopeIndex(BaseModel):
    """The scopes correlate keeps on one partition, so a tick reaches the quiet ones too."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Topic:
    """A Kafka topic: its name, its key, the models of its values and its configs."""

    name: str
    key: str
    value: type[BaseModel]
    partitions: int = 6
    retention_ms: int = 7 * DAY_MS
    compact: bool = False
    description: str = ""
    replicas: int = 3
    max_message_bytes: int = MIB
    also: tuple[type[BaseModel], ...] = ()  # other values the topic carries, told apart by `kind`
    configs: dict[str, str] = field(default_factory=dict)

    def topic_configs(self, replicas: int | None = None) -> dict[str, str]:
        """Broker configs; min.insync.replicas follows the replication actually used."""
        replicas = self.replicas if replicas is None else replicas
        base = {
            "cleanup.policy": "compact" if self.compact else "delete",
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(self.max_message_bytes),
            "min.insync.replicas": str(max(1, min(2, replicas - 1))),
        }
        return {**base, **self.configs}

    def in_namespace(self, namespace: str) -> "Topic":
        """The same topic under another namespace: `stormdrain.alerts.raw` becomes `<ns>.alerts.raw`."""
        if namespace == NAMESPACE:
            return self
        return replace(self, name=namespace + self.name[len(NAMESPACE):])

    @property
    def short(self) -> str:
        return self.name.split(".", 1)[1]

    def encode(self, value: BaseModel) -> bytes:
        return value.model_dump_json(by_alias=True).encode()

    def decode(self, raw: bytes | str) -> Any:
        """Decode a value of the topic's main model; an InputError names the field that is wrong."""
        try:
            return self.value.model_validate_json(raw)
        except ValidationError as exc:
            raise validation_error(exc, prefix=self.name) from None

    def decode_any(self, raw: bytes | str) -> Any:
        """Decode any value the topic carries (the main model or one of `also`, by `kind`)."""
        try:
            return _adapter(self).validate_json(raw)
        except ValidationError as exc:
            raise validation_error(exc, prefix=self.name) from None

    def schema(self) -> dict:
        return _adapter(self).json_schema(by_alias=True)

    def key_schema(self) -> dict:
        return {"type": "string", "description": f"the {self.key}, UTF-8"}


def _kind(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if isinstance(kind, str) else "alert"


_ADAPTERS: dict[tuple, TypeAdapter] = {}


def _adapter(topic: Topic) -> TypeAdapter:
    """One validator per value shape; a topic with several values picks by `kind`."""
    key = (topic.value, *topic.also)
    if key not in _ADAPTERS:
        if not topic.also:
            _ADAPTERS[key] = TypeAdapter(topic.value)
        else:
            tagged = [Annotated[m, Tag(m.model_fields["kind"].default)] for m in key]
            _ADAPTERS[key] = TypeAdapter(Annotated[_union(tagged), Discriminator(_kind)])
    return _ADAPTERS[key]


def _union(members: list) -> Any:
    union = members[0]
    for member in members[1:]:
        union = union | member
    return union


ALERTS_RAW = Topic(
    "stormdrain.alerts.raw", "scope", AlertRecord, retention_ms=30 * DAY_MS, also=(Tick,),
    description="One record per alert as the bridge received it, keyed by correlation scope; "
                "the ticker's records move event time on per partition.",
)
SEQ_HEADER = "stormdrain-seq"  # on incident snapshots: their number within the scope
INCIDENTS = Topic(
    "stormdrain.incidents", "incident_id", Incident, compact=True, max_message_bytes=16 * MIB,
    description="Incident snapshots from correlate, keyed by incident id; the latest per key is kept.",
)
DIAGNOSES = Topic(
    "stormdrain.diagnoses", "incident_id", Diagnosis, retention_ms=30 * DAY_MS, max_message_bytes=16 * MIB,
    description="Every version of every incident's diagnosis, keyed by incident id.",
)
DEAD_LETTERS = Topic(
    "stormdrain.alerts.dlq", "source", DeadLetter, partitions=1, retention_ms=30 * DAY_MS, max_message_bytes=4 * MIB,
    description="Records that could not be taken, with the reason.",
)
APPROVALS = Topic(
    "stormdrain.approvals", "incident_id", Approval, partitions=3, retention_ms=90 * DAY_MS,
    description="Approvals of runbook runs, from Slack buttons, keyed by incident id.",
)
FEEDBACK = Topic(
    # As many partitions as incidents: diagnose reads it into the same table, partition by partition.
    "stormdrain.feedback", "incident_id", Feedback, retention_ms=365 * DAY_MS,
    description="People's verdicts on diagnoses (not actionable, escalate, confirmed, wrong root).",
)
REMEDIATIONS = Topic(
    # As many partitions as incidents: diagnose reads both into one table, partition by partition.
    "stormdrain.remediations", "incident_id", RemediationEvent, retention_ms=365 * DAY_MS,
    description="Every step of every runbook run: the audit trail.",
)
EVIDENCE = Topic(
    # Keyed and partitioned like incidents: diagnose reads it into the same table.
    "stormdrain.evidence", "incident_id", IncidentEvidence, max_message_bytes=4 * MIB,
    description="Metric evidence gathered from Prometheus after a diagnosis version went out, keyed by incident "
                "id; diagnose folds it into a later version.",
)
SLACK_MESSAGES = Topic(
    "stormdrain.notifier.messages", "key", MessageRef, partitions=3, compact=True, retention_ms=30 * DAY_MS,
    configs={"cleanup.policy": "compact,delete"}, max_message_bytes=16 * MIB,  # it holds the diagnosis shown
    description="Where each Slack message is (channel, ts) and what it shows, keyed by incident id or digest key; "
                "the Slack notifier reloads it at start so a redelivered diagnosis updates, never posts twice.",
)
NOTIFIER_VERSIONS = Topic(
    "stormdrain.notifier.versions", "incident_id", NotifiedVersion, partitions=3, compact=True,
    retention_ms=30 * DAY_MS, configs={"cleanup.policy": "compact,delete"},
    description="The latest diagnosis version the notifier has handled per incident, reloaded at start and on "
                "every rebalance, so a version delivered again is handled once.",
)
EXECUTOR_LEDGER = Topic(
    "stormdrain.executor.ledger", "incident_id/runbook", LedgerEntry, partitions=1, compact=True,
    retention_ms=365 * DAY_MS,
    description="The executor's run ledger: each run's plan and state (queued, started, finished), written "
                "before the run starts; the latest per incident and runbook is kept.",
)
SCOPE_TABLE = Topic(
    "stormdrain.correlate.scopes", "scope", SavedScope, compact=True, max_message_bytes=64 * MIB,
    description="Changelog of correlate's per-scope state, zlib-compressed JSON (co-partitioned with alerts.raw).",
)
SCOPE_INDEX = Topic(
    "stormdrain.correlate.partitions", "partition", ScopeIndex, compact=True,
    description="Changelog of the scopes correlate keeps on each alerts.raw partition.",
)
DIAGNOSIS_TABLE = Topic(
    "stormdrain.diagnose.state", "incident_id", SavedDiagnosis, compact=True, max_message_bytes=16 * MIB,
    description="Changelog of diagnose's per-incident version state (co-partitioned with incidents).",
)
HISTORY_TABLE = Topic(
    # One partition: every worker reads the whole history (a global table) and looks up any signature.
    "stormdrain.diagnose.history", "sig:<service>|<alert> or inc:<incident id>", PastIncident, partitions=1,
    compact=True, retention_ms=365 * DAY_MS,
    description="Changelog of the incident history: what each root-cause signature did the last times it closed "
                "(sig: keys), and which signature each closed incident had (inc: keys, the signature key as text).",
)

TOPICS: tuple[Topic, ...] = (ALERTS_RAW, INCIDENTS, DIAGNOSES, DEAD_LETTERS, APPROVALS, FEEDBACK, REMEDIATIONS,
                             EVIDENCE, SLACK_MESSAGES, NOTIFIER_VERSIONS, EXECUTOR_LEDGER)
TABLES: tuple[Topic, ...] = (SCOPE_TABLE, SCOPE_INDEX, DIAGNOSIS_TABLE, HISTORY_TABLE)


def by_name(name: str) -> Topic:
    for topic in TOPICS + TABLES:
        if name in (topic.name, topic.short):
            return topic
    raise InputError("topic", f"no topic named {name!r}")
