"""Diagnoses to render: the demo storm's page, and storms of any size with label values in any script."""

from __future__ import annotations

import functools
from typing import Callable

from pipeline.diagnose import Diagnosis
from pipeline.slack.preview import demo_versions
from tests.timeline import alert, at, driver, graph_of, webhook


def demo_page() -> Diagnosis:
    """The demo storm's last paging version."""
    return [d for d in demo_versions() if d.paged_at is not None][-1]


def _service(i: int) -> str:
    return f"svc-{i}-支付服务-🔥👩🏽‍💻"


@functools.lru_cache(maxsize=4)
def storm(n: int, name: Callable[[int], str] = _service) -> Diagnosis:
    """One incident of n distinct critical alerts on n services, label values in many scripts (built once)."""
    run = driver()
    alerts = [alert(f"DBConnectionPoolExhausted{i}&<x>", name(i), starts=i / 100, team="支付 & <ops>",
                    description="長い説明 " * 60) for i in range(n)]
    run.pipe_webhook(webhook(*alerts, url="http://am.example:9093"), at(40))
    run.advance(60)
    return run.read("diagnoses")[-1]


STORM_GRAPH = ("web>checkout", "checkout>orders", "checkout>payments", "orders>db", "payments>db")
STORM_NAMES = ("HighRequestLatency", "HighErrorRate", "KubePodNotReady", "Timeouts", "QueueBacklog")


def thirty_alert_storm() -> list[Diagnosis]:
    """A storm of 30 alerts, every diagnosis version in order: symptoms page first, the database's
    own alert then moves the root cause, Alertmanager's HA pair repeats everything, and all resolves."""
    run = driver(graph_of(*STORM_GRAPH, kinds={"db": "datastore"}))
    symptoms = [(name, svc) for svc in ("checkout", "web", "orders", "payments", "db") for name in STORM_NAMES]
    root = [("DBConnectionPoolExhausted", "db"), ("ReplicationLag", "db"), ("DiskIOSaturated", "db"),
            ("SlowQueries", "db"), ("TooManyConnections", "db")]
    alerts = symptoms[:25] + root
    waves = ((alerts[:10], 0), (alerts[25:], 40), (alerts[10:25], 60))
    for wave, start in waves:
        body = webhook(*[alert(n, s, starts=start + i) for i, (n, s) in enumerate(wave)])
        for replica in ("http://am-0:9093", "http://am-1:9093"):
            run.pipe_webhook({**body, "externalURL": replica}, at(start + 30))
        run.advance(30)
    resolved = [alert(n, s, status="resolved", starts=start + i, ends=400)
                for wave, start in waves for i, (n, s) in enumerate(wave)]
    run.pipe_webhook(webhook(*resolved), at(420))
    run.advance(30)
    return run.read("diagnoses")
