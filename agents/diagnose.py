"""The diagnose agent: incident snapshots and remediation results in, diagnosis versions out.

It calls the same `Diagnoser` as the embedded runtime. Each incident's state
remembers the last offset it took from each source topic, so a snapshot read
again after a restart is skipped instead of making an old version new again.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

import faust

from agents.keeper import Entry, Keeper
from pipeline.actions import RemediationEvent
from pipeline.alerts import InputError
from pipeline.correlate import DeadLetter
from pipeline.diagnose import Diagnoser
from pipeline.incidents import Incident
from topics.catalog import SEQ_HEADER, SavedDiagnosis, Topic

log = logging.getLogger("stormdrain.diagnose")


class Diagnose:
    """Runs the diagnoser over batches of incident and remediation events."""

    def __init__(self, diagnoser: Diagnoser, states: Keeper, sources: dict[str, Topic]):
        self.diagnoser = diagnoser
        self.states = states
        self.sources = sources  # topic name -> catalog topic

    def take(self, events: Iterable[faust.EventT]) -> list[tuple[str, bytes, Any, dict]]:
        """Process a batch; return the outputs to send, in order."""
        outputs: list[tuple[str, bytes, Any, dict]] = []
        for event in events:
            item = self._decode(event)
            if isinstance(item, DeadLetter):
                outputs.append(("dead_letters", event.message.topic.encode(), item, {}))
                continue
            key = item.id if isinstance(item, Incident) else item.incident_id
            entry = self.states.get(key, event) or self.states.add(key, event, SavedDiagnosis())
            if self._seen(entry.value, event, item):
                continue
            for result in self._step(entry, item):
                role = "dead_letters" if isinstance(result, DeadLetter) else "diagnoses"
                outputs.append((role, key.encode(), result, {}))
            entry.dirty = True
        return outputs

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

    def _step(self, entry: Entry, item: Incident | RemediationEvent) -> list:
        saved: SavedDiagnosis = entry.value
        if saved.closed:
            return []  # what comes after the close is a late echo
        try:
            saved.state, diagnoses = self.diagnoser.step(saved.state, item)
            saved.closed = isinstance(item, Incident) and item.status == "closed"
        except Exception as exc:  # noqa: BLE001 - one bad snapshot must not stop the stream
            log.exception("diagnose failed on %s", entry.key)
            return [DeadLetter(reason="operator_error", detail=f"{type(exc).__name__}: {exc}",
                               record=item.model_dump(mode="json"))]
        return diagnoses

    def _decode(self, event: faust.EventT) -> Incident | RemediationEvent | DeadLetter:
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
