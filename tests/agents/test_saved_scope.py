"""A scope's saved form: compressed, restored whole, older plain saves still read, bad bytes refused by name."""

from __future__ import annotations

import zlib

import pytest

from agents.correlate import decode_scope, encode_scope
from agents.keeper import Entry
from pipeline.config import Config
from pipeline.embedded import Embedded
from pipeline.graph import load_graph
from pipeline.replay import read_lines
from pipeline.runbooks import load_catalog
from pipeline.bench import demo
from topics.catalog import SavedScope


def storm_scope() -> Entry:
    """The demo storm's scope mid-storm, as the worker holds it: two records still pending at offsets 40 and 41."""
    engine = Embedded(Config(), load_graph(demo.GRAPH), load_catalog(), keep=())
    with open(demo.STORM, "rb") as stream:
        records = [r for line in read_lines(stream, engine.identity.scope) for r in line.records]
    engine.pipe_many(records)
    [(scope, state)] = engine.scopes.items()
    assert state.alerts and len(state.pending) >= 2, "the storm's tail is still within the out-of-order wait"
    offsets = {id(state.pending[0]): 40, id(state.pending[1]): 41}
    saved = SavedScope(partition=3, offset=41, sent=7, state=state)
    return Entry(scope, 3, saved, extra={"offset_of": offsets})


def test_a_saved_scope_restores_its_state_and_the_offsets_of_its_pending_records():
    entry = storm_scope()
    restored = decode_scope(encode_scope(entry))
    assert restored.pending == [40, 41]
    assert (restored.partition, restored.offset, restored.sent) == (3, 41, 7)
    assert restored.state.pending == []  # read again from alerts.raw by their offsets
    assert restored.state.model_dump(exclude={"pending"}) == entry.value.state.model_dump(exclude={"pending"})


def test_a_scope_is_saved_compressed_at_a_fraction_of_its_json():
    packed = encode_scope(storm_scope())
    plain = zlib.decompress(packed)
    assert plain.startswith(b"{") and not packed.startswith(b"{")
    assert len(packed) * 4 < len(plain)


def test_a_scope_saved_as_plain_json_before_compression_still_restores():
    entry = storm_scope()
    packed = encode_scope(entry)  # which also writes the pending offsets into the saved scope
    old = entry.value.model_dump_json(exclude={"state": {"pending"}}).encode()  # the saved form until compression
    restored = decode_scope(old)
    assert restored.pending == [40, 41]
    assert restored == decode_scope(packed)


@pytest.mark.parametrize("raw", [b"\x78\x01garbage", b"\x00\x01\x02", b""])
def test_bytes_that_are_no_saved_scope_are_refused_with_the_reason(raw):
    with pytest.raises(ValueError, match="neither JSON nor zlib-compressed JSON"):
        decode_scope(raw)


def test_a_saved_scope_that_would_inflate_past_the_bound_is_refused(monkeypatch):
    monkeypatch.setattr("agents.correlate.MAX_SCOPE_JSON", 1 << 20)
    bomb = zlib.compress(b" " * (1 << 24), 9)  # 16 KB that inflate to 16 MB
    with pytest.raises(ValueError, match="inflates past 1,048,576 bytes"):
        decode_scope(bomb)
