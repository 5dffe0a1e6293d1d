"""Diagnoses to render: the demo storm's page, and storms of any size with label values in any script."""

from __future__ import annotations

from pipeline.bench import demo
from pipeline.cli import replay
from pipeline.config import Config
from pipeline.diagnose import Diagnosis
from pipeline.embedded import Embedded
from pipeline.graph import load_graph
from pipeline.runbooks import load_catalog
from tests.timeline import alert, at, driver, webhook


def demo_versions() -> list[Diagnosis]:
    """Every diagnosis version of the bundled Black Friday storm, in order."""
    engine = Embedded(Config(), load_graph(demo.GRAPH), load_catalog())
    versions: list[Diagnosis] = []
    with open(demo.STORM, "rb") as stream:
        replay(stream, engine, versions.append)
    return versions


def demo_page() -> Diagnosis:
    """The demo storm's last paging version."""
    return [d for d in demo_versions() if d.paged_at is not None][-1]


def storm(n: int, name=lambda i: f"svc-{i}-支付服务-🔥👩🏽‍💻") -> Diagnosis:
    """One incident of n distinct critical alerts on n services, label values in many scripts."""
    run = driver()
    alerts = [alert(f"DBConnectionPoolExhausted{i}&<x>", name(i), starts=i / 100, team="支付 & <ops>",
                    description="長い説明 " * 300) for i in range(n)]
    run.pipe_webhook(webhook(*alerts, url="http://am.example:9093"), at(40))
    run.advance(60)
    return run.read("diagnoses")[-1]
