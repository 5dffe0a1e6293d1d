"""The embedded runtime: the same operators as the Kafka agents, in one process.

It is also the broker-free test driver: `pipe` a record (or a webhook) at an
event time, `advance` time, `read` what each topic would have received. With
`serialize=True` every record crosses the real topic serializers on its way,
as it would through Kafka.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Iterable

from collections.abc import MutableMapping

from pipeline.actions import Feedback, RemediationEvent
from pipeline.alerts import AlertRecord, InputError, Webhook, parse_webhook, split_webhook
from pipeline.config import Config
from pipeline.correlate import Correlator, DeadLetter, ScopeState, counts_total
from pipeline.diagnose import Diagnoser, Diagnosis, DiagnosisState
from pipeline.evidence import EvidenceProvider, needs_refresh, request_for
from pipeline.graph import ServiceGraph
from pipeline.history import HistoryUpdate
from pipeline.history import apply as apply_history
from pipeline.identity import Identity
from pipeline.incidents import Incident
from pipeline.runbooks import Catalog
from topics.catalog import ALERTS_RAW, DEAD_LETTERS, DIAGNOSES, INCIDENTS, Topic, by_name


class Embedded:
    """Correlate and diagnose wired in memory, scope by scope, in event time."""

    def __init__(self, config: Config, graph: ServiceGraph, catalog: Catalog, serialize: bool = False,
                 keep: tuple[str, ...] | None = None, evidence: EvidenceProvider | None = None,
                 history: MutableMapping | None = None):
        self.config = config
        self.identity = Identity(config.identity)
        self.correlator = Correlator(config, graph, self.identity)
        self.history = history if history is not None else {}
        self.diagnoser = Diagnoser(config, graph, catalog, self.history)
        self.serialize = serialize
        self.scopes: dict[str, ScopeState] = {}
        self.diagnosis_states: dict[str, DiagnosisState] = {}
        self.outbox: dict[str, list[Any]] = defaultdict(list)
        self.now: datetime | None = None
        self.kept = {by_name(t).name for t in keep} if keep is not None else None
        self.evidence = evidence

    # -- input ---------------------------------------------------------------

    def pipe(self, record: AlertRecord | bytes | str, at: datetime | None = None) -> None:
        """Take one `alerts.raw` record (a model or its bytes), optionally re-timed to `at`."""
        self.pipe_many([record], at)

    def pipe_many(self, records: Iterable[AlertRecord | bytes | str], at: datetime | None = None) -> None:
        by_scope: dict[str, list[AlertRecord]] = defaultdict(list)
        for record in records:
            record = self._decode(record)
            if record is None:
                continue
            if at is not None:
                record = record.model_copy(update={"received_at": at})
            by_scope[record.scope].append(record)
            self.now = max(self.now or record.received_at, record.received_at)
        for scope, batch in by_scope.items():
            state = self.scopes.get(scope) or self.correlator.initial(scope)
            self.scopes[scope], outputs = self.correlator.step(state, batch)
            self._route(outputs)

    def remediate(self, event: RemediationEvent | Feedback) -> None:
        """Take a step the executor reported, or a person's verdict; a finished run gives a new version."""
        state = self.diagnosis_states.get(event.incident_id)
        self._keep_diagnosis(event.incident_id, *self.diagnoser.step(state, event))

    def pipe_webhook(self, body: dict | Webhook, at: datetime) -> list[AlertRecord]:
        """Split a webhook body into records as the bridge does, and take them."""
        webhook = body if isinstance(body, Webhook) else parse_webhook(body)
        records = split_webhook(webhook, at, self.identity.scope)
        self.pipe_many(records)
        return records

    def _decode(self, record: AlertRecord | bytes | str) -> AlertRecord | None:
        if isinstance(record, AlertRecord) and not self.serialize:
            return record
        raw = ALERTS_RAW.encode(record) if isinstance(record, AlertRecord) else record
        try:
            return ALERTS_RAW.decode(raw)
        except InputError as exc:
            self._send(DEAD_LETTERS, DeadLetter(reason="malformed", detail=str(exc), record=_text(raw)))
            return None

    # -- time ----------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Let `seconds` of event time pass with no input, as the ticker does."""
        if self.now is None:
            return
        self.tick(self.now + timedelta(seconds=seconds))

    def tick(self, now: datetime) -> None:
        self.now = max(self.now or now, now)
        for scope, state in self.scopes.items():
            self.scopes[scope], outputs = self.correlator.tick(state, now)
            self._route(outputs)

    def flush(self) -> None:
        """End of input: release every record and let every incident close."""
        for scope, state in self.scopes.items():
            self.scopes[scope], outputs = self.correlator.flush(state)
            self._route(outputs)

    # -- output --------------------------------------------------------------

    def read(self, topic: str) -> list[Any]:
        """Take what has been published to a topic since the last read."""
        name = by_name(topic).name
        out, self.outbox[name] = self.outbox[name], []
        return out

    def counts(self) -> dict[str, int]:
        return dict(counts_total(self.scopes.values()))

    def _route(self, outputs: list) -> None:
        for output in outputs:
            if isinstance(output, Incident):
                self._diagnose(self._send(INCIDENTS, output))
            else:
                self._send(DEAD_LETTERS, output)

    def _diagnose(self, incident: Incident) -> None:
        diagnoses = self._keep_diagnosis(incident.id, *self.diagnoser.step(self.diagnosis_states.get(incident.id),
                                                                             incident))
        if self.evidence is not None and diagnoses:
            self._gather(self.diagnosis_states[incident.id], diagnoses[-1])

    def _gather(self, state: DiagnosisState, diagnosis) -> None:
        """Ask for metric evidence after a version went out: the page never waits for it."""
        request = request_for(state.incident, [c.service for c in diagnosis.candidates])
        if needs_refresh(state.evidence, request, self.config.evidence.refresh):
            answer = self.evidence.gather(request)
            self._keep_diagnosis(state.incident_id, *self.diagnoser.step(state, answer))

    def _keep_diagnosis(self, incident_id: str, state: DiagnosisState | None, outputs: list) -> list:
        if state is None:
            self.diagnosis_states.pop(incident_id, None)
        else:
            self.diagnosis_states[incident_id] = state
        diagnoses = [o for o in outputs if isinstance(o, Diagnosis)]
        for diagnosis in diagnoses:
            self._send(DIAGNOSES, diagnosis)
        apply_history(self.history, [o for o in outputs if isinstance(o, HistoryUpdate)])
        return diagnoses

    def _send(self, topic: Topic, value: Any) -> Any:
        if self.serialize:
            value = topic.decode(topic.encode(value))
        if self.kept is None or topic.name in self.kept:
            self.outbox[topic.name].append(value)
        return value


def _text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw[:4096].decode("utf-8", "replace")
    return str(raw)[:4096]

