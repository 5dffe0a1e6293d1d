"""A recorded storm through the embedded runtime and through bridge, Kafka and worker."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from agents.bridge import build_app
from agents.producer import Publisher
from agents.options import Kafka
from pipeline.alerts import parse_time
from pipeline.bench import demo
from pipeline.config import Config
from pipeline.diagnose import Diagnosis
from pipeline.embedded import Embedded
from pipeline.graph import load_graph
from pipeline.identity import Identity
from pipeline.runbooks import load_catalog
from tests.integration.parts import BridgeThread, Clock, post, read_topic, tick
from topics.catalog import ALERTS_RAW, DIAGNOSES

CONFIG = Config()
CATALOG = load_catalog()


def envelopes(path: Path = demo.STORM) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def end_of(storm: list[dict], config: Config = CONFIG) -> datetime:
    """An event time past every hold and quiet period of the storm: everything due has happened."""
    latest = max(parse_time(e["received_at"]) for e in storm)
    limits = config.incidents
    return latest + limits.out_of_order + max(limits.hold, limits.quiet) + timedelta(seconds=1)


def embedded_run(storm: list[dict]) -> list[Diagnosis]:
    """The storm through the embedded runtime, ending with the same tick the Kafka run gets."""
    engine = Embedded(CONFIG, load_graph(demo.GRAPH), CATALOG, keep=("diagnoses",))
    for envelope in storm:
        engine.pipe_webhook(envelope["webhook"], at=parse_time(envelope["received_at"]))
    engine.tick(end_of(storm))
    return engine.read("diagnoses")


class RecordedBridge:
    """An in-process bridge whose receive clock follows the recording."""

    def __init__(self, kafka: Kafka):
        self.clock = Clock(datetime.now().astimezone())
        publisher = Publisher(kafka.bootstrap, kafka.topic(ALERTS_RAW).name, timeout=20)
        self.server = BridgeThread(build_app(publisher, Identity(CONFIG.identity), clock=self.clock))
        self.url = self.server.url + "/alerts"
        self.server.wait_ready()

    def post(self, storm: list[dict]) -> None:
        for envelope in storm:
            self.clock.now = parse_time(envelope["received_at"])
            status, _, body = post(self.url, json.dumps(envelope["webhook"]).encode())
            assert status == 200, body

    def close(self) -> None:
        self.server.close()


def finish(kafka: Kafka, storm: list[dict]) -> None:
    raw = kafka.topic(ALERTS_RAW)
    tick(kafka.bootstrap, raw.name, raw.partitions, end_of(storm))


def diagnoses(kafka: Kafka, expected: int, timeout: float = 90.0) -> list[Diagnosis]:
    """Every diagnosis record on the topic, once at least `expected` distinct versions arrived."""
    topic = kafka.topic(DIAGNOSES)

    def enough(messages) -> bool:
        return len({(m.key, json.loads(m.value)["version"]) for m in messages}) >= expected

    return [topic.decode(m.value) for m in read_topic(kafka.bootstrap, topic.name, enough, timeout)]


def by_version(found: list[Diagnosis]) -> dict[tuple[str, int], Diagnosis]:
    """One diagnosis per (incident, version), as consumers dedupe them; a repeat must be the same record."""
    kept: dict[tuple[str, int], Diagnosis] = {}
    for diagnosis in found:
        key = (diagnosis.incident_id, diagnosis.version)
        assert kept.setdefault(key, diagnosis) == diagnosis, f"two different records for {key}"
    return kept
