"""The topic catalog: namespaces, configs, value shapes, and the rendered manifests kept in step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.alerts import InputError
from tests.timeline import at
from topics.catalog import ALERTS_RAW, DIAGNOSES, SCOPE_TABLE, TABLES, TOPICS, Tick
from topics.strimzi import catalog_topics, render_manifests, write_rendered

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kafka"


def test_a_namespace_renames_every_topic_and_keeps_the_rest():
    moved = ALERTS_RAW.in_namespace("t1")
    assert (moved.name, moved.short, moved.partitions) == ("t1.alerts.raw", "alerts.raw", ALERTS_RAW.partitions)


def test_state_topics_are_compacted_and_replication_sets_min_insync():
    assert all(t.topic_configs()["cleanup.policy"] == "compact" for t in TABLES)
    assert ALERTS_RAW.topic_configs(1)["min.insync.replicas"] == "1"
    assert ALERTS_RAW.topic_configs(3)["min.insync.replicas"] == "2"
    assert int(SCOPE_TABLE.topic_configs()["max.message.bytes"]) >= 64 << 20


def test_co_partitioned_topics_have_the_same_partitions():
    by_short = {t.short: t for t in TOPICS + TABLES}
    assert by_short["alerts.raw"].partitions == by_short["correlate.scopes"].partitions
    diagnose_reads = ("incidents", "remediations", "feedback", "evidence", "diagnose.state")
    assert len({by_short[name].partitions for name in diagnose_reads}) == 1
    assert by_short["diagnose.history"].partitions == 1  # a global table: every worker reads it whole


def test_alerts_raw_carries_alerts_and_ticks_told_apart_by_kind():
    assert ALERTS_RAW.decode_any(ALERTS_RAW.encode(Tick(at=at(5)))) == Tick(at=at(5))
    with pytest.raises(InputError, match="tick.at"):
        ALERTS_RAW.decode_any(b'{"kind": "tick"}')
    with pytest.raises(InputError, match="alerts.raw"):
        ALERTS_RAW.decode_any(b'{"received_at": "2025-01-01T00:00:00Z"}')
    assert {s["$ref"].rsplit("/", 1)[1] for s in ALERTS_RAW.schema()["oneOf"]} == {"AlertRecord", "Tick"}


def test_the_rendered_manifests_in_deploy_match_the_catalog(tmp_path):
    written = write_rendered(tmp_path, catalog_topics(), "stormdrain")
    for path in written:
        kept = DEPLOY / path.relative_to(tmp_path)
        assert kept.exists() and kept.read_text() == path.read_text(), f"run `stormdrain topics render`: {kept}"


def test_a_manifest_per_topic_with_its_configs():
    docs = list(yaml.safe_load_all(render_manifests(catalog_topics(), "prod", replicas=3)))
    assert len(docs) == len(TOPICS + TABLES)
    raw = next(d for d in docs if d["spec"]["topicName"] == "stormdrain.alerts.raw")
    assert raw["metadata"]["labels"] == {"strimzi.io/cluster": "prod"} and raw["spec"]["replicas"] == 3
    assert json.loads(json.dumps(DIAGNOSES.schema()))["title"] == "Diagnosis"


@pytest.mark.parametrize("args", [
    ["--namespace", "../../etc/cron.d"],  # would write the schemas outside --out
    ["--namespace", "prod eu!"],  # no Kafka topic can carry it
    ["--namespace", ""],
    ["--replicas", "0"],
    ["--replicas", "-2"],
])
def test_topics_render_refuses_a_namespace_or_replication_kafka_cannot_take_and_writes_nothing(tmp_path, args):
    from pipeline.cli import main

    out = tmp_path / "kafka"
    with pytest.raises(SystemExit) as done:
        main(["topics", "render", "--out", str(out), *args])
    assert done.value.code == 2
    assert not out.exists() and not (tmp_path / "etc").exists()


def test_topics_render_takes_a_namespace_with_dots_and_writes_inside_out(tmp_path):
    from pipeline.cli import main

    assert main(["topics", "render", "--out", str(tmp_path), "--namespace", "prod.eu-1", "--replicas", "3"]) == 0
    assert (tmp_path / "schemas" / "prod.eu-1.alerts.raw.key.json").exists()
    assert all(d["spec"]["replicas"] == 3 for d in yaml.safe_load_all((tmp_path / "topics.yaml").read_text()))
