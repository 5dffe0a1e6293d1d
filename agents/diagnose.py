"""The diagnose agent: incident snapshots, remediation results, feedback and metric evidence in,
diagnosis versions out, history written when an incident closes.

It calls the same `Diagnoser` as the embedded runtime. Each incident's state
remembers the last offset it took from each source topic, so a snapshot read
again after a restart is skipped instead of making an old version new again.
History updates go straight to the history table; a close or a late verdict
taken again after a restart is recognised there and counted once.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any, Callable, Iterable

import faust

from agents.keeper import Entry, Keeper
from pipeline.actions import Feedback, RemediationEvent
from pipeline.alerts import InputError
from pipeline.correlate import DeadLetter
from pipeline.diagnose import Diagnoser, Diagnosis, DiagnosisState
from pipeline.evidence import IncidentEvidence
from pipeline.history import HistoryUpdate
from pipeline.history import apply as apply_history
from pipeline.incidents import Incident
from topics.catalog import SEQ_HEADER, SavedDiagnosis, Topic

log = logging.getLogger("stormdrain.diagnose")


Item = Incident | RemediationEvent | Feedback | IncidentEvidence
AfterVersion = Callable[[DiagnosisState, Diagnosis], None]


class Diagnose:
    """Runs the diagnoser over batches of incident, remediation, feedback and evidence events."""

    def __init__(self, diagnoser: Diagnoser, states: Keeper, sources: dict[str, Topic],
                 history: MutableMapping | None = None, after_version: AfterVersion | None = None):
        self.diagnoser = diagnoser
        self.states = states
        self.sources = sources  # topic name -> catalog topic
        self.history = history  # the table the diagnoser reads history from; updates are written to it
        self.after_version = after_version  # told of each version a snapshot made (to ask for evidence)

    def take(self, events: Iterable[faust.EventT]) -> list[tuple[str, bytes, Any, dict]]:
        """Process a batch; return the outputs to send, in order."""
        outputs: list[tuple[str, bytes, Any, dict]] = []
        for event in events:
            item = self._decode(event)
            if isinstance(item, DeadLetter):
                outputs.append(("dead_letters", event.message.topic.encode(), item, {}))
                continue
            key = item.id if isinstance(item, Incident) else item.incident_id
            entry = self._entry(key, event, item)
            if entry is None or self._seen(entry.value, event, item):
                continue
            for result in self._step(entry, item):
                role = "dead_letters" if isinstance(result, DeadLetter) else "diagnoses"
                outputs.append((role, key.encode(), result, {}))
            entry.dirty = True
        return outputs

    def _entry(self, key: str, event: faust.EventT, item: Item) -> Entry | None:
        """The incident's state; only a snapshot starts one (a click or an answer about no known incident is not kept)."""
        entry = self.states.get(key, event)
        if entry is None and isinstance(item, Incident):
            entry = self.states.add(key, event, SavedDiagnosis())
        elif entry is None:
            log.info("%s for incident %s, which this worker has never seen: skipped", item.kind, key[:64])
        return entry

    def _results(self, entry: Entry, item: Item, results: list) -> list:
        """Write history, tell of a new version, and return what goes to topics."""
        if self.history is not None:
            apply_history(self.history, [r for r in results if isinstance(r, HistoryUpdate)])
        sent = [r for r in results if not isinstance(r, HistoryUpdate)]
        state = entry.value.state
        if self.after_version and isinstance(item, Incident) and state is not None and sent:
            self.after_version(state, sent[-1])
        return sent

    def _seen(self, saved: SavedDiagnosis, event: faust.EventT, item) -> bool:
        """Whether the state has taken this record (read again) or this snapshot (sent again); note it if not."""
        topic, offset = event.message.topic, event.message.offset
        if offset <= saved.offsets.get(topic, -1):
            return True
        saved.offsets[topic] = offset
        seq = _seq(event.message.headers) if isinstance(item, Incident) else None
        if seq is not None and seq <= saved.seq:
            return True
        saved.seq = seq if seq is not None else saved.seq
        return False

    def _step(self, entry: Entry, item: Item) -> list:
        saved: SavedDiagnosis = entry.value
        if saved.closed and not isinstance(item, Feedback):
            return []  # what comes after the close is a late echo; a late verdict still counts in history
        try:
            saved.state, results = self.diagnoser.step(saved.state, item)
        except Exception as exc:  # noqa: BLE001 - one bad snapshot must not stop the stream
            log.exception("diagnose failed on %s", entry.key)
            return [DeadLetter(reason="operator_error", detail=f"{type(exc).__name__}: {exc}",
                               record=item.model_dump(mode="json"))]
        saved.closed = saved.closed or (isinstance(item, Incident) and item.status == "closed")
        return self._results(entry, item, results)

    def _decode(self, event: faust.EventT) -> Item | DeadLetter:
        topic = self.sources[event.message.topic]
        try:
            return topic.decode(event.value if event.value is not None else b"")
        except InputError as exc:
            raw = event.value or b""
            return DeadLetter(reason="malformed", detail=str(exc), record=raw[:4096].decode("utf-8", "replace"))


def _seq(headers) -> int | None:
    for name, value in (headers.items() if isinstance(headers, dict) else headers or ()):
        if name == SEQ_HEADER:
            return int(value)
    return None


def encode_diagnosis(entry: Entry) -> bytes:
    return entry.value.model_dump_json().encode()


def decode_diagnosis(raw: bytes) -> SavedDiagnosis:
    return SavedDiagnosis.model_validate_json(raw)
