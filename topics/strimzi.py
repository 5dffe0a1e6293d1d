"""Strimzi `KafkaTopic` manifests and JSON Schemas, rendered from the catalog."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from topics.catalog import TABLES, TOPICS, Topic

HEADER = "# Rendered by `stormdrain topics render` from topics/catalog.py; edit the catalog, not this file.\n"


def kafka_topic(topic: Topic, cluster: str, replicas: int | None = None) -> dict:
    """One KafkaTopic resource (kafka.strimzi.io/v1beta2) for a catalog topic."""
    replicas = topic.replicas if replicas is None else replicas
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {"name": topic.name.replace("_", "-"), "labels": {"strimzi.io/cluster": cluster},
                     "annotations": {"stormdrain.io/description": topic.description}},
        "spec": {"topicName": topic.name, "partitions": topic.partitions, "replicas": replicas,
                 "config": topic.topic_configs(replicas)},
    }


def render_manifests(topics: list[Topic], cluster: str, replicas: int | None = None) -> str:
    docs = [kafka_topic(t, cluster, replicas) for t in topics]
    return HEADER + yaml.safe_dump_all(docs, sort_keys=False, width=120)


def write_rendered(out: Path, namespace_topics: list[Topic], cluster: str, replicas: int | None = None) -> list[Path]:
    """Write topics.yaml and one key and value schema per topic under `out`; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "topics.yaml"]
    written[0].write_text(render_manifests(namespace_topics, cluster, replicas))
    schemas = out / "schemas"
    schemas.mkdir(exist_ok=True)
    for topic in namespace_topics:
        for part, schema in (("key", topic.key_schema()), ("value", topic.schema())):
            path = schemas / f"{topic.name}.{part}.json"
            path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
            written.append(path)
    return written


def catalog_topics() -> list[Topic]:
    return list(TOPICS + TABLES)
