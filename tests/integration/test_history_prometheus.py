"""Replay from Prometheus's ALERTS gives the incidents the real Alertmanager's webhooks give.

A live storm, about forty seconds long: a metrics server crosses thresholds,
a real Prometheus (1 s scrape and evaluation) fires real alerting rules and
sends them to a real Alertmanager (1 s group_wait, 2 s group_interval, a route
tree with continue, group_by '...', a receiver without integrations and an
inhibit rule), which posts real webhooks to a local receiver. Then
`replay --from-prometheus` over the same period, given that Alertmanager's
config, must give the same incidents as the replay of the webhooks it sent.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline.alerts import parse_time, format_time
from tests.timeline import require_ci_part

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

RULES = """
groups:
- name: storm
  interval: 1s
  rules:
  - {alert: DatabaseDown, expr: db_up == 0, labels: {severity: critical}}
  - {alert: HighErrorRate, expr: http_errors_ratio > 0.5, labels: {severity: critical}}
  - {alert: HighLatency, expr: http_latency_seconds > 1, labels: {severity: warning}}
  - {alert: DiskFull, expr: disk_free_ratio < 0.1, labels: {severity: critical}}
  - {alert: Watchdog, expr: vector(1), labels: {severity: none}}
"""

ALERTMANAGER = """
route:
  receiver: stormdrain
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
  routes:
    - matchers: ['alertname="Watchdog"']
      receiver: blackhole
    - matchers: ['severity="critical"']
      receiver: pager
      group_by: ['...']
      continue: true
    - match_re: {service: "db|orders|checkout|payments"}
      receiver: stormdrain
receivers:
  - name: stormdrain
    webhook_configs: [{url: "HOOK/stormdrain"}]
  - name: pager
    webhook_configs: [{url: "HOOK/pager", send_resolved: false}]
  - name: blackhole
inhibit_rules:
  - source_matchers: ['alertname="DatabaseDown"']
    target_matchers: ['alertname="HighLatency"']
    equal: [service]
"""

GRAPH = {"nodes": ["checkout", "orders", "db", "payments"],
         "edges": [{"from": "checkout", "to": "orders"}, {"from": "orders", "to": "db"}],
         "kinds": {"db": "datastore"}}

NORMAL = {("db_up", "db"): 1, ("http_errors_ratio", "orders"): 0, ("http_latency_seconds", "db"): 0.1,
          ("http_latency_seconds", "checkout"): 0.1, ("disk_free_ratio", "payments"): 0.9}
# (seconds into the storm, metric, service, value): a database fails, its callers suffer, a disk fills elsewhere
STORM = [
    (2, "db_up", "db", 0),
    (5, "http_latency_seconds", "db", 2),  # inhibited: the database is down
    (5, "http_errors_ratio", "orders", 0.9),
    (8, "http_latency_seconds", "checkout", 2),
    (12, "disk_free_ratio", "payments", 0.05),
    (14, "http_latency_seconds", "checkout", 0.1),  # resolves ...
    (19, "http_latency_seconds", "checkout", 2),  # ... and fires again: a second life
    (22, "http_errors_ratio", "orders", 0),
    (24, "http_latency_seconds", "db", 0.1),  # the inhibited alert ends before its source
    (27, "db_up", "db", 1),
    (29, "disk_free_ratio", "payments", 0.9),
    (30, "http_latency_seconds", "checkout", 0.1),
]
SETTLE = 8  # seconds after the last change: resolves flushed on the next group_interval


def _localprom():
    spec = importlib.util.spec_from_file_location("localprom", ROOT / "deploy/local/prometheus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.ensure_installed()
    except module.NotInstalled as exc:
        require_ci_part(f"Prometheus and Alertmanager: {exc}")
    return module


def _exposition(values: dict) -> str:
    return "".join(f'{metric}{{service="{service}"}} {value}\n' for (metric, service), value in values.items())


def _run_storm(localprom, metrics) -> None:
    values, started = dict(NORMAL), time.monotonic()
    for second, metric, service, value in STORM:
        time.sleep(max(0.0, started + second - time.monotonic()))
        values[(metric, service)] = value
        metrics.text = _exposition(values)
    time.sleep(SETTLE)


@pytest.fixture(scope="module")
def storm(tmp_path_factory):
    """Run the live storm once; return the paths and times the tests compare."""
    localprom = _localprom()
    work = tmp_path_factory.mktemp("prometheus-history")
    with localprom.WebhookReceiver() as hook, localprom.MetricsServer(_exposition(NORMAL)) as metrics:
        am_text = ALERTMANAGER.replace("HOOK", hook.url)
        (work / "alertmanager.yml").write_text(am_text)
        with localprom.start_alertmanager(am_text) as am, localprom.start_prometheus(
                work / "tsdb", rules=[RULES], alertmanager_url=am.url, scrape_targets=[metrics.target],
                evaluation_interval="1s", scrape_interval="1s") as prom:
            time.sleep(3)  # a few scrapes of normal values; the Watchdog fires from here on
            since = datetime.now(timezone.utc)
            _run_storm(localprom, metrics)
            until = datetime.now(timezone.utc)
            received = [(datetime.fromtimestamp(r.at, timezone.utc), r.json) for r in hook.requests]
            yield _Storm(work, prom.url, since, until, received)


class _Storm:
    def __init__(self, work: Path, url: str, since: datetime, until: datetime, received: list):
        self.work, self.url, self.since, self.until = work, url, since, until
        self.received = [(at, body) for at, body in received if since <= at <= until]
        (work / "graph.json").write_text(json.dumps(GRAPH))
        (work / "sent.ndjson").write_text("".join(
            json.dumps({"received_at": format_time(at), "webhook": body}) + "\n" for at, body in self.received))


def _replay(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", *args, "--graph", str(work / "graph.json"),
                           "--no-progress"], capture_output=True, text=True, timeout=120, cwd=ROOT)


def _incidents(path: Path) -> set[frozenset]:
    latest = {}
    for line in path.read_text().splitlines():
        diagnosis = json.loads(line)
        latest[diagnosis["incident_id"]] = diagnosis
    return {frozenset(d["fingerprints"]) for d in latest.values()}


def _by_group(envelopes: list[tuple[str, dict]]) -> dict[tuple, set]:
    """(receiver, groupKey) -> {(fingerprint, status, startsAt to the millisecond)}: what each group said."""
    out: dict[tuple, set] = {}
    for _, body in envelopes:
        said = out.setdefault((body["receiver"], body["groupKey"]), set())
        said.update((a["fingerprint"], a["status"], _millis(a["startsAt"])) for a in body["alerts"])
    return out


def _millis(text: str) -> str:
    """A time as written by either side, to the millisecond: the formats differ, the instants must not."""
    return parse_time(text).isoformat(timespec="milliseconds")


@pytest.fixture(scope="module")
def replays(storm):
    """Replay the webhooks Alertmanager sent, and the history rebuilt from Prometheus over the same period."""
    work = storm.work
    real = _replay(work, str(work / "sent.ndjson"), "--out", str(work / "real.ndjson"))
    assert real.returncode == 0, real.stderr
    rebuilt = _replay(work, "--from-prometheus", storm.url, "--since", format_time(storm.since),
                      "--until", format_time(storm.until), "--chunk", "10s",
                      "--alertmanager-config", str(work / "alertmanager.yml"),
                      "--save-history", str(work / "rebuilt.ndjson"), "--out", str(work / "rebuilt-out.ndjson"))
    assert rebuilt.returncode == 0, rebuilt.stderr
    return work


def test_replay_from_prometheus_gives_the_incidents_of_the_webhooks_alertmanager_sent(replays):
    expected = _incidents(replays / "real.ndjson")
    assert len(expected) == 2  # the database's storm, and the disk on payments
    assert _incidents(replays / "rebuilt-out.ndjson") == expected


def test_the_rebuilt_webhooks_say_what_each_aggregation_group_really_said(storm, replays):
    lines = (replays / "rebuilt.ndjson").read_text().splitlines()
    real = _by_group(storm.received)
    assert _by_group([(e["received_at"], e["webhook"]) for e in map(json.loads, lines)]) == real
    alerts = [a["labels"] for _, body in storm.received for a in body["alerts"]]
    assert not [a for a in alerts if a["alertname"] == "Watchdog"]  # the blackhole sent nothing
    assert not [a for a in alerts if a["alertname"] == "HighLatency" and a["service"] == "db"]  # inhibited
    assert len(real) == 7  # 3 critical groups to the pager, 4 groups to stormdrain
