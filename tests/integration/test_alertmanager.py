"""A real Alertmanager posts a storm to the bridge; the diagnosis reaches the notifier and the executor once each."""

from __future__ import annotations

import json
import re
import time

import pytest

from pipeline.bench import demo
from tests.integration.parts import Proc, free_port, load_script, read_topic, wait_ready, worker
from tests.timeline import require_ci_part
from topics.catalog import DIAGNOSES

pytestmark = pytest.mark.integration
TOKEN = "tok-123"
STORM = [  # (service, alertname, severity): order-service's pool runs out; its callers suffer
    ("order-service", "DBConnectionPoolExhausted", "critical"),
    ("checkout-service", "HighErrorRate", "critical"),
    ("payment-service", "HighRequestLatency", "warning"),
    ("inventory-service", "HighErrorRate", "critical"),
    ("api-gateway", "HighRequestLatency", "warning"),
    ("notification-service", "HighErrorRate", "warning"),
]


def _alertmanager_config(port: int) -> str:
    return f"""
route:
  receiver: stormdrain
  group_by: [alertname, namespace]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: stormdrain
    webhook_configs:
      - url: http://127.0.0.1:{port}/alerts
        send_resolved: true
        http_config:
          authorization:
            credentials: {TOKEN}
"""


@pytest.fixture(scope="module")
def localprom():
    module = load_script("prometheus")
    try:
        module.ensure_installed()
    except module.NotInstalled as exc:
        require_ci_part(str(exc))
    return module


def _seen(text: str, incident: str, version: int) -> int:
    return len(re.findall(rf"{incident} v{version}\b", text))


def test_a_storm_through_alertmanager_is_diagnosed_and_each_reader_sees_each_version_once(kafka, tmp_path, localprom):
    config = tmp_path / "fast.yaml"
    config.write_text("incidents:\n  hold: 3s\n  out_of_order: 1s\n")
    port = free_port()
    common = ("--bootstrap", kafka.bootstrap, "--namespace", kafka.namespace)
    procs = [worker(tmp_path, kafka.bootstrap, kafka.namespace, "worker", "--graph", str(demo.GRAPH),
                    "--config", str(config))]
    try:
        procs.append(Proc(tmp_path / "bridge.log", "bridge", *common, "--port", str(port), "--host", "127.0.0.1",
                          "--config", str(config), env={"STORMDRAIN_BRIDGE_TOKEN": TOKEN}))
        notifier = Proc(tmp_path / "notifier.log", "notifier", *common)  # no sink configured: it prints pages
        executor = Proc(tmp_path / "executor.log", "executor", "--dry-run", *common)
        procs += [notifier, executor]
        wait_ready(f"http://127.0.0.1:{port}")
        for reader in (notifier, executor):
            reader.wait_for(r"assigned \d+ partition")
        notifier.kill()  # a stopped notifier holds up neither the executor nor the pipeline
        with localprom.start_alertmanager(_alertmanager_config(port)) as alertmanager:
            localprom.post_alerts(alertmanager.url, [
                {"labels": {"alertname": name, "service": service, "severity": severity, "cluster": "prod-eu-1",
                            "namespace": "shop"},
                 "annotations": {"summary": f"{name} on {service}"}} for service, name, severity in STORM])
            topic = kafka.topic(DIAGNOSES)
            found = read_topic(kafka.bootstrap, topic.name, timeout=60, until=lambda ms: any(
                len(json.loads(m.value)["fingerprints"]) == len(STORM) for m in ms))
            diagnoses = [topic.decode(m.value) for m in found]
            executor.wait_for(rf"{diagnoses[-1].incident_id} v{diagnoses[-1].version}\b")
            notifier = Proc(tmp_path / "notifier.log", "notifier", *common)  # back: it goes on from its offsets
            procs.append(notifier)
            notifier.wait_for(rf"{diagnoses[-1].incident_id} v{diagnoses[-1].version}\b")
            time.sleep(5)  # Alertmanager sends the groups again meanwhile: no new version, no repeat
            diagnoses = [topic.decode(m.value) for m in read_topic(kafka.bootstrap, topic.name, timeout=3)]
    finally:
        for proc in procs:
            proc.stop()
    last = diagnoses[-1]
    assert last.root_cause.service == "order-service" and last.paged_at is not None
    assert len({d.incident_id for d in diagnoses}) == 1
    for d in diagnoses:
        assert _seen(notifier.text(), d.incident_id, d.version) == 1
        assert _seen(executor.text(), d.incident_id, d.version) == 1
    assert "RB-DB-001" in executor.text() and "order-service: DBConnectionPoolExhausted" in notifier.text()
