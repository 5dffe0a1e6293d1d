"""One recorded storm gives the same incidents, roots and pages embedded and through Kafka."""

from __future__ import annotations

import pytest

from pipeline.bench import demo
from pipeline.cli import replay
from pipeline.embedded import Embedded
from pipeline.graph import load_graph
from pipeline.render import render_page
from tests.integration.parts import worker
from tests.integration.storms import (CATALOG, CONFIG, RecordedBridge, by_version, diagnoses, embedded_run,
                                      envelopes, finish)

pytestmark = pytest.mark.integration


def _first_pages(versions) -> dict[str, str]:
    pages: dict[str, str] = {}
    for d in sorted(versions, key=lambda d: (d.incident_id, d.version)):
        if d.paged_at is not None:
            pages.setdefault(d.incident_id, render_page(d, CATALOG))
    return pages


def _last(versions) -> dict[str, object]:
    last = {}
    for d in sorted(versions, key=lambda d: (d.incident_id, d.version)):
        last[d.incident_id] = d
    return {i: (sorted(d.fingerprints), d.root_cause, d.paged_at, d.recommended_runbook) for i, d in last.items()}


def test_the_demo_storm_through_bridge_kafka_and_worker_matches_the_embedded_runtime(kafka, tmp_path):
    storm = envelopes()
    expected = embedded_run(storm)
    proc = worker(tmp_path, kafka.bootstrap, kafka.namespace, "worker", "--graph", str(demo.GRAPH),
                  "--tick-every", "0")
    bridge = RecordedBridge(kafka)
    try:
        bridge.post(storm)
        finish(kafka, storm)
        found = by_version(diagnoses(kafka, len(expected)))
    finally:
        try:
            bridge.close()
        finally:
            proc.stop()  # a worker left running outlives the test run
    assert found == {(d.incident_id, d.version): d for d in expected}

    replayed = []
    with open(demo.STORM, "rb") as stream:
        replay(stream, Embedded(CONFIG, load_graph(demo.GRAPH), CATALOG, keep=("diagnoses",)), replayed.append)
    assert _last(found.values()) == _last(replayed)
    assert _first_pages(found.values()) == _first_pages(replayed)
    assert "order-service: DBConnectionPoolExhausted" in next(iter(_first_pages(replayed).values()))
