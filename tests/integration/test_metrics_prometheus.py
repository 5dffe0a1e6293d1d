"""Metric evidence and graph discovery against a real Prometheus serving backfilled series.

One Prometheus for the module: checkoutservice's CPU quadruples 40 s before the
first symptom, frontend's stays level; service-graph and mesh counters name
call edges. A slow Prometheus is a local HTTP server that answers too late, an
absent one a port nobody listens on.
"""

import http.server
import json
import threading
import time
from datetime import timedelta

import pytest

from pipeline.bench.parts import local_prometheus
from pipeline.cli import main
from pipeline.config import Config, EvidenceConfig
from pipeline.embedded import Embedded
from pipeline.evidence import EvidenceRequest
from pipeline.metrics import GraphDiscovery, PrometheusEvidence, discover_edges
from pipeline.runbooks import load_catalog
from tests.integration.parts import prometheus_part
from tests.timeline import T0, alert, at, graph_of, webhook
from topics.catalog import DIAGNOSES

pytestmark = pytest.mark.integration

CHECKOUT_POD = "checkoutservice-7d4b9c8f5b-x2k4z"
FRONTEND_POD = "frontend-6b8d9c7f4d-q8w2z"
EDGES = [("traces_service_graph_request_total", {"client": "frontend", "server": "checkoutservice"}),
         ("traces_service_graph_request_total", {"client": "checkoutservice", "server": "paymentservice"}),
         ("istio_requests_total", {"reporter": "source", "source_workload": "checkoutservice",
                                   "destination_workload": "cartservice", "response_code": "200"})]


def _counter(rate_at, start=-3600, end=1800, step=15):
    total, points = 0.0, []
    for offset in range(start, end, step):
        total += rate_at(offset) * step
        points.append((at(offset).timestamp(), total))
    return points


def _series():
    wobble = lambda offset: 1 + 0.05 * ((offset // 15) % 3)  # noqa: E731
    cpu = {CHECKOUT_POD: lambda o: 0.1 * wobble(o) * (4 if o >= -40 else 1), FRONTEND_POD: lambda o: 0.2 * wobble(o)}
    for pod, rate in cpu.items():
        yield ("container_cpu_usage_seconds_total", {"namespace": "shop", "pod": pod, "container": "server"},
               _counter(rate))
    for name, labels in EDGES:
        yield name, labels, _counter(lambda o: 5.0)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    localprom = prometheus_part()
    tsdb = tmp_path_factory.mktemp("tsdb")
    localprom.backfill(localprom.openmetrics_text(_series(), types={
        "container_cpu_usage_seconds": "counter", "traces_service_graph_request": "counter",
        "istio_requests": "counter"}), tsdb)
    with localprom.start_prometheus(tsdb) as prom:
        yield prom


def _request(*services, as_of=120):
    return EvidenceRequest(incident_id="inc-1", revision=1, scope="default", services=services, onset=at(0),
                           as_of=at(as_of))


def test_evidence_names_the_series_that_changed_with_its_value_and_time(prometheus):
    provider = PrometheusEvidence(EvidenceConfig(step="15s"), prometheus.url)
    answer = provider.gather(_request("checkoutservice", "frontend"))
    assert answer.status == "ok"
    (item,) = answer.items
    assert item.text.startswith(f"checkoutservice CPU (pod={CHECKOUT_POD}) 4.")
    assert "x its baseline from 03:53:" in item.text and item.text.endswith("before the first symptom")
    assert item.onset_at < T0 and item.ratio == pytest.approx(4.0, rel=0.1)
    assert answer.scores["checkoutservice"] > 1.0 and answer.scores["frontend"] < 0


def test_the_same_question_twice_is_answered_from_the_cache(prometheus):
    provider = PrometheusEvidence(EvidenceConfig(step="15s"), prometheus.url)
    first = provider.gather(_request("checkoutservice"))
    sent = provider.queries
    assert provider.gather(_request("checkoutservice")) == first
    assert provider.queries == sent


def test_a_service_without_series_gives_no_evidence_and_no_score(prometheus):
    answer = PrometheusEvidence(EvidenceConfig(), prometheus.url).gather(_request("ghost-service"))
    assert answer.status == "ok" and answer.items == [] and answer.scores == {}
    assert "empty" in answer.detail


def test_a_prometheus_that_is_not_there_is_unavailable_and_nothing_raises():
    port = local_prometheus().free_port()
    answer = PrometheusEvidence(EvidenceConfig(), f"http://127.0.0.1:{port}").gather(_request("checkoutservice"))
    assert answer.status == "unavailable"
    assert f"127.0.0.1:{port}" in answer.detail and answer.scores == {}


class _SlowPrometheus:
    """An HTTP server that takes its time: every answer comes `delay` seconds late."""

    def __init__(self, delay: float):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                time.sleep(delay)
                body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up long ago: that is the point

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_slow_prometheus_times_out_and_the_first_page_does_not_wait_for_it():
    slow = _SlowPrometheus(delay=5.0)
    config = Config(evidence=EvidenceConfig(query_timeout="300ms", deadline="1s"))
    provider = PrometheusEvidence(config.evidence, slow.url)
    published_before = []

    class Watching:
        def gather(self, request):
            published_before.append([d.version for d in run.outbox[DIAGNOSES.name]])
            return provider.gather(request)

    run = Embedded(config, graph_of("frontend>checkoutservice"), load_catalog(), evidence=Watching())
    try:
        run.pipe_webhook(webhook(alert("HighLatency", "frontend", severity="critical")), at(30))
        run.advance(31)
    finally:
        slow.close()
    first, second = run.read("diagnoses")
    assert published_before == [[1]]  # the page was out before the metrics were asked for
    assert not any(e.kind == "metric" for e in first.evidence)
    (note,) = [e for e in second.evidence if e.kind == "metric"]
    assert note.text.startswith("metric evidence timeout: ")


def test_graph_discovery_reads_call_edges_from_service_graph_and_mesh_series(prometheus):
    edges = discover_edges(prometheus.url, EvidenceConfig().graph_queries, at(600), timedelta(hours=1))
    assert edges == [("checkoutservice", "cartservice"), ("checkoutservice", "paymentservice"),
                     ("frontend", "checkoutservice")]


def test_the_discovered_graph_is_merged_with_the_file_and_refreshed_only_when_due(prometheus):
    discovery = GraphDiscovery(prometheus.url, EvidenceConfig(graph_refresh="10m"), graph_of("frontend>ads"))
    graph = discovery.current(at(600))
    assert ("frontend", "ads") in graph.edges and ("frontend", "checkoutservice") in graph.edges
    assert graph.reach["frontend"]["paymentservice"] == 2
    assert discovery.current(at(900)) is graph  # not due yet: the same graph, no query
    gone = GraphDiscovery(f"http://127.0.0.1:{local_prometheus().free_port()}", EvidenceConfig(), graph_of("a>b"))
    assert gone.current(at(600)).edges == [("a", "b")]  # unreachable: the file's graph stands


def test_replay_adds_metric_evidence_and_discovered_edges_from_prometheus(prometheus, tmp_path):
    storm = tmp_path / "storm.ndjson"
    body = webhook(alert("HighLatency", "frontend", starts=0, severity="critical"))
    storm.write_text(json.dumps({"received_at": at(90).isoformat(), "webhook": body}) + "\n")
    config = tmp_path / "config.yaml"
    config.write_text("evidence:\n  step: 15s\n  graph_window: 3650d\n")  # the backfilled edges are in the past
    out = tmp_path / "diagnoses.ndjson"
    assert main(["replay", str(storm), "--config", str(config), "--prometheus", prometheus.url,
                 "--discover-graph", prometheus.url, "--out", str(out), "--no-progress"]) == 0
    last = [json.loads(line) for line in out.read_text().splitlines()][-1]
    assert (last["root_cause"]["service"], last["root_cause"]["inferred"]) == ("checkoutservice", True)
    assert any(e["kind"] == "metric" and e["text"].startswith("checkoutservice CPU") for e in last["evidence"])
