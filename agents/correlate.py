"""The correlate agent: `alerts.raw` in, incident snapshots and dead letters out.

Per batch it decodes each event, gives each scope its records (split where a
tick falls, so ticks act where they stand in the partition), calls the same
`Correlator` as the embedded runtime, and sends what comes out. A record the
scope's saved state already holds is skipped; one that cannot be decoded goes
to the dead-letter topic with the reason.
"""

from __future__ import annotations

import logging
import zlib
from collections import defaultdict
from typing import Any, Iterable

import faust

from agents.keeper import Entry, Keeper
from pipeline.alerts import AlertRecord, InputError
from pipeline.correlate import Correlator, DeadLetter
from pipeline.incidents import Incident
from topics.catalog import ALERTS_RAW, SCOPE_TABLE, SEQ_HEADER, SavedScope, ScopeIndex, Tick

log = logging.getLogger("stormdrain.correlate")
SCOPE_LEVEL = 1  # zlib's fastest level: most of the size gained for the least time
MAX_SCOPE_JSON = 16 * SCOPE_TABLE.max_message_bytes  # a saved scope inflates to at most this
Output = tuple[str, bytes, Any, dict]  # (role of the topic: "incidents" or "dead_letters", key, value, headers)


class Correlate:
    """Runs the correlator over batches of `alerts.raw` events, scope by scope."""

    def __init__(self, correlator: Correlator, scopes: Keeper, index: Keeper):
        self.correlator = correlator
        self.scopes = scopes
        self.index = index

    def take(self, events: Iterable[faust.EventT]) -> list[Output]:
        """Process a batch; return the outputs to send, in order."""
        outputs: list[Output] = []
        by_partition: dict[int, list[faust.EventT]] = defaultdict(list)
        for event in events:
            by_partition[event.message.partition].append(event)
        for partition_events in by_partition.values():
            self._partition(partition_events, outputs)
        return outputs

    def pending(self, partition: int) -> set[int]:
        """Offsets on this partition that live states still hold as pending records."""
        offsets: set[int] = set()
        for entry in self.scopes.entries.values():
            if entry.partition == partition:
                offsets.update(_pending_offsets(entry))
        return offsets

    def _partition(self, events: list[faust.EventT], outputs: list[Output]) -> None:
        runs: dict[str, list[tuple[faust.EventT, AlertRecord]]] = defaultdict(list)
        for event in events:
            item = _decode(event.value)
            if isinstance(item, DeadLetter):
                outputs.append(("dead_letters", b"alerts.raw", item, {}))
            elif isinstance(item, Tick):
                self._step_runs(runs, outputs)
                self._tick(event, item, outputs)
            elif self._scope(item.scope, event).extra["wants"](event.message.offset):
                runs[item.scope].append((event, item))
        self._step_runs(runs, outputs)

    def _step_runs(self, runs: dict, outputs: list[Output]) -> None:
        for scope, run in runs.items():
            entry = self._scope(scope, run[0][0])
            offset_of = entry.extra["offset_of"]
            offset_of.update((id(record), event.message.offset) for event, record in run)
            self._apply(entry, lambda state: self.correlator.step(state, [r for _, r in run]), outputs,
                        [r for _, r in run])
            entry.value.offset = max(entry.value.offset, run[-1][0].message.offset)
        runs.clear()

    def _tick(self, event: faust.EventT, tick: Tick, outputs: list[Output]) -> None:
        for scope in self._index(event).value.scopes:
            entry = self._scope(scope, event)
            if event.message.offset > entry.value.offset:
                self._apply(entry, lambda state: self.correlator.tick(state, tick.at), outputs, [])
                entry.value.offset = event.message.offset

    def _apply(self, entry: Entry, operate, outputs: list[Output], records: list[AlertRecord]) -> None:
        """Call the operator; an exception is a bug, and its records go to the dead-letter topic."""
        saved: SavedScope = entry.value
        before = len(saved.state.pending)
        try:
            saved.state, results = operate(saved.state)
        except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the stream
            log.exception("correlate failed on scope %s", entry.key)
            results = [DeadLetter(reason="operator_error", detail=f"{type(exc).__name__}: {exc}",
                                  record=r.model_dump(mode="json")) for r in records]
        entry.dirty = entry.dirty or bool(records or results) or len(saved.state.pending) != before
        for result in results:
            if isinstance(result, Incident):
                saved.sent += 1  # a restart that does this work again numbers the snapshots the same
                outputs.append(("incidents", result.id.encode(), result, {SEQ_HEADER: str(saved.sent).encode()}))
            else:
                outputs.append(("dead_letters", entry.key.encode(), result, {}))

    def _scope(self, scope: str, event: faust.EventT) -> Entry:
        entry = self.scopes.get(scope, event)
        if entry is None:
            entry = self.scopes.add(scope, event, SavedScope(partition=event.message.partition,
                                                             state=self.correlator.initial(scope)))
            index = self._index(event)
            index.value.scopes.append(scope)
            index.dirty = True
        if "offset_of" not in entry.extra:
            entry.extra.update(offset_of={}, wants=_wants(entry.value))
        return entry

    def _index(self, event: faust.EventT) -> Entry:
        key = str(event.message.partition)
        return self.index.get(key, event) or self.index.add(key, event, ScopeIndex())


def _wants(saved: SavedScope):
    """Whether a record at an offset is new to the saved state: past its offset, or one of its pending."""
    pending = set(saved.pending)
    return lambda offset: offset > saved.offset or offset in pending


def _decode(raw: Any) -> AlertRecord | Tick | DeadLetter:
    try:
        return ALERTS_RAW.decode_any(raw if raw is not None else b"")
    except InputError as exc:
        text = raw[:4096].decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)[:4096]
        return DeadLetter(reason="malformed", detail=str(exc), record=text)


def _pending_offsets(entry: Entry) -> list[int]:
    """The offsets of the records a scope still holds; records it has let go are forgotten here.

    Done when saving rather than after every step: it walks the whole pending buffer.
    """
    offset_of = entry.extra["offset_of"]
    live = {id(r) for r in entry.value.state.pending}
    entry.extra["offset_of"] = offset_of = {k: v for k, v in offset_of.items() if k in live}
    return sorted(offset_of.values())


def encode_scope(entry: Entry) -> bytes:
    """The saved form of a scope: its state without the pending records, and their offsets, zlib-compressed.

    A scope's state holds every alert it remembers (megabytes in a long storm)
    and is saved every second: compressed it is a small share of the bytes to
    send, store and replicate, and far below the changelog's message bound
    (`python -m agents.scope_sizes` measures both).
    """
    saved: SavedScope = entry.value
    saved.pending = _pending_offsets(entry)
    return zlib.compress(saved.model_dump_json(exclude={"state": {"pending"}}).encode(), SCOPE_LEVEL)


def decode_scope(raw: bytes) -> SavedScope:
    """A saved scope, compressed or, as saved before compression, plain JSON (which starts with `{`)."""
    return SavedScope.model_validate_json(raw if raw[:1] == b"{" else _inflate(raw))


def _inflate(raw: bytes) -> bytes:
    """Compressed JSON back to JSON, refusing what would inflate past the bound."""
    inflate = zlib.decompressobj()
    try:
        plain = inflate.decompress(raw, MAX_SCOPE_JSON)
    except zlib.error as exc:
        raise ValueError(f"a saved scope is neither JSON nor zlib-compressed JSON ({exc})") from None
    if inflate.unconsumed_tail:
        raise ValueError(f"a saved scope inflates past {MAX_SCOPE_JSON:,} bytes")
    if not inflate.eof:
        raise ValueError("a saved scope is neither JSON nor zlib-compressed JSON (it ends early)")
    return plain
