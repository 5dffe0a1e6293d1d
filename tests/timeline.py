"""Test helpers: storms as timelines of webhooks, graphs from edge strings, the broker-free driver."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline.alerts import AlertRecord, ZERO_TIME, format_time
from pipeline.config import Config
from pipeline.embedded import Embedded
from pipeline.graph import ServiceGraph, parse_graph
from pipeline.runbooks import load_catalog

T0 = datetime(2025, 11, 28, 3, 54, 0, tzinfo=timezone.utc)
SHARED = Path(__file__).resolve().parents[2] / "shared"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def alert(name: str, service: str | None = None, status: str = "firing", starts: float = 0,
          ends: float | None = None, severity: str = "critical", **labels: str) -> dict:
    """An alert as an Alertmanager webhook carries it."""
    all_labels = {"alertname": name, "severity": severity, **labels}
    if service is not None:
        all_labels["service"] = service
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"{name} on {service}"},
        "startsAt": format_time(at(starts)),
        "endsAt": format_time(at(ends)) if ends is not None else ZERO_TIME,
        "generatorURL": "",
    }


def webhook(*alerts: dict, url: str = "http://am-0:9093", receiver: str = "stormdrain",
            group_key: str = '{}:{alertname="X"}') -> dict:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {"version": "4", "groupKey": group_key, "truncatedAlerts": 0, "status": status,
            "receiver": receiver, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": url, "alerts": list(alerts)}


def record(alert_body: dict, received: float, url: str = "http://am-0:9093", scope: str = "default") -> AlertRecord:
    return AlertRecord.model_validate({"received_at": format_time(at(received)), "scope": scope,
                                       "receiver": "stormdrain", "external_url": url, "alert": alert_body})


def graph_of(*edges: str, kinds: dict | None = None, depth: int = 4) -> ServiceGraph:
    """A graph from "a>b" edge strings: a calls b."""
    pairs = [e.split(">") for e in edges]
    return ServiceGraph(parse_graph({"edges": [{"from": a, "to": b} for a, b in pairs],
                                     "kinds": kinds or {}}), depth)


def driver(graph: ServiceGraph | None = None, config: Config | None = None) -> Embedded:
    """The broker-free driver, through the real serializers."""
    return Embedded(config or Config(), graph or ServiceGraph(), load_catalog(), serialize=True)


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True)


def require_ci_part(reason: str):
    """Skip on a laptop without a part; under CI=true a missing part fails the run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and a real part is missing: {reason}")
    pytest.skip(reason)
