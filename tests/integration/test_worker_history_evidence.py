"""The worker's diagnose agent on Kafka: verdicts become history that a recurring incident cites, and metric
evidence from a real Prometheus comes as a later version, never holding up the first.

Alerts go through the bridge with real receive times, as Alertmanager would
send them; the worker runs as its own process.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from pipeline.actions import Feedback
from pipeline.alerts import format_time
from pipeline.diagnose import Diagnosis
from pipeline.history import PastIncident, signature_key
from tests.integration.parts import bridge_thread, post, produce, prometheus_part, read_topic, worker
from tests.timeline import alert, webhook
from topics.catalog import DIAGNOSES, FEEDBACK, HISTORY_TABLE

pytestmark = pytest.mark.integration
CHECKOUT_POD = "checkoutservice-7d4b9c8f5b-x2k4z"
FRONTEND_POD = "frontend-6b8d9c7f4d-q8w2z"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _alert(name: str, service: str, started: datetime, ended: datetime | None = None, **labels: str) -> dict:
    """An alert that started (and ended) at real times, as Alertmanager sends it."""
    body = alert(name, service, **labels)
    body["startsAt"] = format_time(started)
    if ended is not None:
        body.update(status="resolved", endsAt=format_time(ended))
    return body


def _post(bridge, *alerts: dict) -> None:
    status, _, text = post(bridge.url + "/alerts", json.dumps(webhook(*alerts)).encode())
    assert status == 200, text


def _diagnoses(kafka, until, timeout: float = 90) -> list[Diagnosis]:
    """Every diagnosis on the namespace's topic, once `until(diagnoses)` holds (or the timeout passes)."""
    topic = kafka.topic(DIAGNOSES)
    found = read_topic(kafka.bootstrap, topic.name, timeout=timeout,
                       until=lambda ms: until([topic.decode(m.value) for m in ms]))
    return [topic.decode(m.value) for m in found]


def _files(tmp_path, config: str) -> tuple[str, ...]:
    (tmp_path / "config.yaml").write_text(config)
    (tmp_path / "graph.json").write_text(json.dumps({"edges": [
        {"from": "web", "to": "orders"}, {"from": "orders", "to": "db"},
        {"from": "frontend", "to": "checkoutservice"}], "kinds": {"db": "datastore"}}))
    return "--config", str(tmp_path / "config.yaml"), "--graph", str(tmp_path / "graph.json")


# -- history -------------------------------------------------------------------------------------------------


def _history(kafka, key: str, until) -> PastIncident | None:
    """The latest record under `key` in the history table's changelog, once `until(record)` holds."""
    def latest(messages) -> PastIncident | None:
        values = [m.value for m in messages if m.key == key.encode()]
        return PastIncident.model_validate_json(values[-1]) if values else None

    found = read_topic(kafka.bootstrap, kafka.topic(HISTORY_TABLE).name, timeout=60,
                       until=lambda ms: (past := latest(ms)) is not None and until(past))
    return latest(found)


def test_a_confirmed_incident_closes_into_history_and_its_recurrence_says_so(kafka, tmp_path):
    options = _files(tmp_path, "incidents: {hold: 1s, quiet: 2s, out_of_order: 1s}\n")
    proc = worker(tmp_path, kafka.bootstrap, kafka.namespace, "worker", *options)
    bridge = bridge_thread(kafka)
    try:
        start = _now()
        _post(bridge, _alert("PoolExhausted", "orders", start), _alert("HighErrorRate", "web", start))
        first = _diagnoses(kafka, bool)[0]
        confirmed = Feedback(incident_id=first.incident_id, version=first.version, user_id="U1", at=_now(),
                             request_id="confirm-1", verdict="confirmed")
        produce(kafka.bootstrap, kafka.topic(FEEDBACK).name,
                [(first.incident_id.encode(), FEEDBACK.encode(confirmed), None)])
        _post(bridge, _alert("PoolExhausted", "orders", start, _now()), _alert("HighErrorRate", "web", start, _now()))
        past = _history(kafka, signature_key("orders", "PoolExhausted"), lambda past: past.seen >= 1)
        again = _now()  # the same fault on other pods: other fingerprints, the same root-cause signature
        _post(bridge, _alert("PoolExhausted", "orders", again, pod="orders-2"),
              _alert("HighErrorRate", "web", again, pod="web-2"))
        found = _diagnoses(kafka, lambda ds: any(d.incident_id != first.incident_id for d in ds))
    finally:
        bridge.close()
        proc.stop()
    assert past is not None and (past.seen, past.confirmed, past.incidents) == (1, 1, [first.incident_id])
    recurring = next(d for d in found if d.incident_id != first.incident_id)
    reasons = "; ".join(recurring.candidates[0].reasons)
    assert recurring.root_cause.service == "orders"
    assert "seen 1 time(s) before" in reasons and "(confirmed 1x)" in reasons


# -- metric evidence ---------------------------------------------------------------------------------------


def _cpu_series(now: datetime):
    """cAdvisor CPU counters over the last hour: checkoutservice's rate quadruples a minute before `now`."""
    def counter(rate, base: float):
        total, points = 0.0, []
        for offset in range(-3600, 1, 15):
            total += rate(offset) * 15
            points.append(((now + timedelta(seconds=offset)).timestamp(), base + total))
        return points

    wobble = lambda offset: 1 + 0.05 * ((offset // 15) % 3)  # noqa: E731
    yield ("container_cpu_usage_seconds_total", {"namespace": "shop", "pod": CHECKOUT_POD, "container": "server"},
           counter(lambda o: 0.1 * wobble(o) * (4 if o >= -60 else 1), 100.0))
    yield ("container_cpu_usage_seconds_total", {"namespace": "shop", "pod": FRONTEND_POD, "container": "server"},
           counter(lambda o: 0.2 * wobble(o), 50.0))


class Gate:
    """Prometheus behind a gate: every query waits until the test opens it, then goes through."""

    def __init__(self) -> None:
        self.opened, self.asked, self.target = threading.Event(), 0, ""
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gate.asked += 1
                status, body = 503, b'{"status": "error", "error": "gate closed"}'
                if gate.opened.wait(120):
                    status, body = _forward(gate.target + self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.opened.set()
        self.server.shutdown()


def _forward(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _metric(d: Diagnosis) -> list[str]:
    return [e.text for e in d.evidence if e.kind == "metric"]


def test_metric_evidence_comes_as_a_later_version_and_a_slow_prometheus_holds_up_no_page(kafka, tmp_path):
    localprom = prometheus_part()
    gate = Gate()
    options = _files(tmp_path, "incidents: {hold: 1s, out_of_order: 1s}\n"
                               "evidence: {step: 15s, refresh: 1s, query_timeout: 90s, deadline: 90s}\n")
    proc = worker(tmp_path, kafka.bootstrap, kafka.namespace, "worker", *options, "--prometheus", gate.url)
    bridge = bridge_thread(kafka)
    now = _now()
    localprom.backfill(localprom.openmetrics_text(_cpu_series(now), types={"container_cpu_usage_seconds": "counter"}),
                       tmp_path / "tsdb")
    try:
        with localprom.start_prometheus(tmp_path / "tsdb") as prometheus:
            gate.target = prometheus.url
            start = _now()
            _post(bridge, _alert("HighRequestLatency", "frontend", start),
                  _alert("HighErrorRate", "checkoutservice", start))
            before = _diagnoses(kafka, bool)
            deadline = time.monotonic() + 60
            while not gate.asked and time.monotonic() < deadline:
                time.sleep(0.1)
            asked_before_any_answer = gate.asked
            gate.opened.set()
            after = _diagnoses(kafka, lambda ds: any(_metric(d) for d in ds))
    finally:
        gate.close()
        bridge.close()
        proc.stop()
    assert before[0].version == 1 and _metric(before[0]) == []
    assert asked_before_any_answer > 0  # the first version went out while Prometheus had answered nothing
    evidenced = next(d for d in after if _metric(d))
    assert evidenced.incident_id == before[0].incident_id and evidenced.version > 1
    [cpu] = [e for e in evidenced.evidence if e.kind == "metric" and e.service == "checkoutservice"]
    assert cpu.text.startswith(f"checkoutservice CPU (pod={CHECKOUT_POD}) ") and cpu.value > 2
    assert "x its baseline from" in cpu.text and cpu.text.endswith("before the first symptom")
