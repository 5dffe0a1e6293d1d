"""The demo storm: Black Friday, order-service runs out of Postgres connections.

Order-service exhausts its connection pool under load; within ten minutes about
thirty alerts follow across payment, checkout, inventory, order and
notification services, with redis timeouts, kafka consumer lag, a node alert
and a loud CPU symptom that labels itself the root cause. Two Alertmanager
replicas send every notification. `build` writes the bundled files.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pipeline.alerts import format_time
from pipeline.grouping import AlertLife, Route, notifications

DATA = Path(__file__).resolve().parent.parent / "data"
STORM = DATA / "demo-storm.ndjson"
GRAPH = DATA / "demo-graph.json"
T0 = datetime(2025, 11, 28, 3, 54, 0, tzinfo=timezone.utc)

GRAPH_SPEC = {
    "nodes": ["api-gateway", "checkout-service", "payment-service", "inventory-service", "order-service",
              "notification-service", "postgres-orders", "redis", "kafka"],
    "edges": [
        {"from": "api-gateway", "to": "checkout-service"},
        {"from": "checkout-service", "to": "order-service"},
        {"from": "checkout-service", "to": "payment-service"},
        {"from": "checkout-service", "to": "inventory-service"},
        {"from": "checkout-service", "to": "redis"},
        {"from": "payment-service", "to": "order-service"},
        {"from": "inventory-service", "to": "order-service"},
        {"from": "inventory-service", "to": "redis"},
        {"from": "notification-service", "to": "order-service"},
        {"from": "notification-service", "to": "kafka"},
        {"from": "order-service", "to": "postgres-orders"},
        {"from": "order-service", "to": "kafka"},
    ],
    "kinds": {"postgres-orders": "datastore", "redis": "datastore", "kafka": "queue"},
}

NAMESPACES = {
    "api-gateway": "edge", "checkout-service": "shop", "payment-service": "payments",
    "inventory-service": "shop", "order-service": "orders", "notification-service": "shop",
}
PODS = {
    "order-service": ["order-service-7d9f8b6c4-x2x9z", "order-service-7d9f8b6c4-k8v4q", "order-service-7d9f8b6c4-p5m7t"],
    "checkout-service": ["checkout-service-5c8d7b9f6-tw4lx", "checkout-service-5c8d7b9f6-b6n2r"],
    "payment-service": ["payment-service-6f7c9d8b5-qz7vd"],
    "inventory-service": ["inventory-service-84b6c7d9f-mr2ws"],
    "notification-service": ["notification-service-9c7b5d6f8-jh5kn"],
    "api-gateway": ["api-gateway-6b9d8c7f5-lw9xp"],
}

# (seconds after T0, service, alertname, severity, extra labels, summary)
TIMELINE = [
    (10, "order-service", "DBConnectionPoolExhausted", "critical", {"pool": "orders-db", "layer": "database"},
     "order-service has used 100/100 Postgres connections for 60s"),
    (25, "order-service", "HighRequestLatency", "warning", {}, "order-service p99 latency 4.8s"),
    (40, "checkout-service", "HighErrorRate", "critical", {}, "checkout-service 5xx ratio 38%"),
    (50, "order-service", "HighErrorRate", "critical", {}, "order-service 5xx ratio 41%: pool timeouts"),
    (45, "payment-service", "HighRequestLatency", "warning", {}, "payment-service p99 latency 3.1s"),
    (55, "inventory-service", "HighErrorRate", "critical", {}, "inventory-service 5xx ratio 22%"),
    (70, "checkout-service", "HighCPUUsage", "critical", {"root_cause_candidate": "true"},
     "checkout-service CPU at 97% (retries)"),
    (80, "checkout-service", "RedisCommandTimeouts", "warning", {"redis_instance": "redis:6379"},
     "checkout-service redis commands timing out"),
    (85, "api-gateway", "HighRequestLatency", "warning", {}, "api-gateway p99 latency 6.2s"),
    (95, "payment-service", "HighErrorRate", "critical", {}, "payment-service 5xx ratio 17%"),
    (110, "notification-service", "KafkaConsumerGroupLag", "warning",
     {"consumergroup": "notification-service", "topic": "order-events", "job": "kafka-exporter"},
     "consumer group notification-service lags 48k messages on order-events"),
    (120, "inventory-service", "RedisCommandTimeouts", "warning", {"redis_instance": "redis:6379"},
     "inventory-service redis commands timing out"),
    (140, "inventory-service", "HighRequestLatency", "warning", {}, "inventory-service p99 latency 2.7s"),
    (150, None, "NodeHighLoadAverage", "warning", {"instance": "ip-10-0-3-17:9100", "job": "node-exporter"},
     "node ip-10-0-3-17 load average 14 on 8 cores"),
    (180, "api-gateway", "HighErrorRate", "critical", {}, "api-gateway 5xx ratio 12%"),
    (210, "notification-service", "HighRequestLatency", "warning", {}, "notification-service p99 latency 5.0s"),
    (240, "notification-service", "HighErrorRate", "warning", {}, "notification-service failed sends 9%"),
    (270, "checkout-service", "HighRequestLatency", "warning", {}, "checkout-service p99 latency 7.9s"),
]
POD_ALERTS = [  # per pod: (seconds, service, alertname, severity, summary)
    (60, "order-service", "KubePodNotReady", "warning", "pod not ready: readiness probe timing out"),
    (200, "order-service", "KubeContainerRestarting", "warning", "container restarted after liveness failure"),
    (130, "checkout-service", "KubePodNotReady", "warning", "pod not ready: readiness probe timing out"),
    (300, "payment-service", "KubeHpaMaxedOut", "warning", "HPA at max replicas"),
    (330, "inventory-service", "KubeHpaMaxedOut", "warning", "HPA at max replicas"),
    (360, "checkout-service", "KubeHpaMaxedOut", "warning", "HPA at max replicas"),
]


def alerts() -> list[AlertLife]:
    """The storm's alerts as Prometheus fired them."""
    out = [_alert(at, service, name, severity, extra, summary, pod=None)
           for at, service, name, severity, extra, summary in TIMELINE]
    for at, service, name, severity, summary in POD_ALERTS:
        for i, pod in enumerate(PODS[service]):
            out.append(_alert(at + 7 * i, service, name, severity, {}, summary, pod=pod))
    return out


def _alert(at: int, service: str | None, name: str, severity: str, extra: dict, summary: str,
           pod: str | None) -> AlertLife:
    labels = {"alertname": name, "severity": severity, "cluster": "prod-eu-1"}
    if service is not None:
        labels["namespace"] = NAMESPACES[service]
        if pod is not None:
            labels["pod"] = pod  # pod alerts from kube-state-metrics name no service, only the pod
            labels["job"] = "kube-state-metrics"
        elif "consumergroup" not in extra:
            labels["service"] = service
    labels.update(extra)
    return AlertLife(labels=labels, starts_at=T0 + timedelta(seconds=at), annotations={"summary": summary})


ROUTE = Route(
    receiver="stormdrain",
    group_by=("alertname", "namespace"),
    group_wait=timedelta(seconds=30),
    group_interval=timedelta(minutes=5),
    replicas=("http://alertmanager-0.monitoring:9093", "http://alertmanager-1.monitoring:9093"),
    replica_delay=timedelta(seconds=3),
)


def envelopes() -> list[dict]:
    """The webhooks two Alertmanager replicas send over the first twelve minutes."""
    sent = notifications(alerts(), ROUTE, until=T0 + timedelta(minutes=12))
    return [{"received_at": format_time(at), "webhook": body} for at, body in sent]


def build() -> None:
    """Write the bundled demo storm and graph (a deliberate step: they are golden inputs)."""
    STORM.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in envelopes()))
    GRAPH.write_text(json.dumps(GRAPH_SPEC, indent=2) + "\n")


if __name__ == "__main__":
    build()
