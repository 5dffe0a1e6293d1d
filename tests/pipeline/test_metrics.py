"""The Prometheus evidence provider's pure parts: queries from templates, answers to series, statuses."""

import json

import pytest

from pipeline.config import EvidenceConfig, Signal, load_config
from pipeline.alerts import InputError
from pipeline.bench import demo
from pipeline.evidence import EvidenceRequest
from pipeline.metrics import PrometheusEvidence, _series, _status, merged_graph, render
from tests.timeline import at, graph_of

POD = EvidenceConfig().pod_pattern


def test_a_template_gets_the_service_as_a_literal_and_its_pods_as_a_regex():
    query = render('rate(x{pod=~"$pod"}[2m]) / y{workload="$service"}', "checkout.v2", POD)
    assert 'workload="checkout.v2"' in query
    assert 'pod=~"checkout\\\\.v2-([a-z0-9]{5,10}-)?[a-z0-9]{5}|checkout\\\\.v2-[0-9]+"' in query


@pytest.mark.parametrize("hostile", ['a"} or vector(1) #', "a\\", "a\nb", 'a"}[5m])) or on() vector(1e9) #'])
def test_a_hostile_service_name_cannot_end_the_string_it_is_put_in(hostile):
    query = render('x{service="$service"}', hostile, POD)
    inner = query[len('x{service="'):-len('"}')]
    # Read back as a double-quoted string (PromQL escapes as JSON does), it is the name again, whole.
    assert json.loads(f'"{inner}"') == hostile


def test_answers_become_series_and_malformed_rows_are_skipped():
    rows = [{"metric": {"pod": "a-1"}, "values": [[1.0, "0.5"], [2.0, "NaN"]]},
            {"metric": {"pod": "a-2"}},  # no values
            {"metric": {"pod": "a-3"}, "values": [[1.0, "not a number"]]},
            "not a row"]
    (only,) = _series(rows)
    assert only.labels == {"pod": "a-1"} and list(only.times) == [1.0, 2.0]
    assert _series({"status": "error"}) == []


@pytest.mark.parametrize("outcomes, status", [
    (["data", "empty"], "ok"),
    (["data", "timeout"], "partial"),
    (["empty", "timeout"], "timeout"),
    (["timeout", "timeout"], "timeout"),
    (["unavailable", "unavailable"], "unavailable"),
    (["data", "error"], "partial"),
    (["error", "error"], "unavailable"),
])
def test_the_status_says_how_much_of_the_evidence_came_back(outcomes, status):
    got, detail = _status({i: (kind, []) for i, kind in enumerate(outcomes)}, len(outcomes), "http://prom")
    assert got == status
    assert detail.startswith(f"{len(outcomes)} queries to http://prom: ")


def test_requested_services_come_first_then_what_they_call():
    provider = PrometheusEvidence(EvidenceConfig(max_services=4), "http://127.0.0.1:9", graph_of(
        "web>cart", "web>ads", "cart>redis", "x>y"))
    request = EvidenceRequest(incident_id="i", revision=1, scope="s", services=("cart", "web", "", "z" * 300),
                              onset=at(0), as_of=at(60))
    assert provider.services(request) == ["cart", "web", "redis", "ads"]


def test_a_provider_needs_a_url():
    with pytest.raises(ValueError, match="no Prometheus URL"):
        PrometheusEvidence(EvidenceConfig())


def test_discovered_edges_are_added_to_the_file_graph_and_its_kinds_kept():
    base = graph_of("web>cart", "cart>redis", kinds={"redis": "datastore"})
    graph = merged_graph(base, [("web", "cart"), ("cart", "payments")])
    assert graph.edges == [("cart", "payments"), ("cart", "redis"), ("web", "cart")]
    assert graph.kind("redis") == "datastore"
    assert graph.reach["web"]["payments"] == 2


@pytest.mark.parametrize("signal, field", [
    ({"name": "CPU!", "query": "x"}, "name"),
    ({"name": "cpu", "query": ""}, "query"),
    ({"name": "cpu", "query": "x", "kind": "root"}, "kind"),
    ({"name": "cpu", "query": "x", "floor": 0}, "floor"),
])
def test_a_bad_signal_in_the_configuration_names_the_field(tmp_path, signal, field):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"evidence": {"signals": [signal]}}))
    with pytest.raises(InputError) as error:
        load_config(path)
    assert field in str(error.value)


def test_the_default_signals_cover_resources_saturation_errors_latency_and_traffic():
    names = {s.name for s in EvidenceConfig().signals}
    assert {"cpu", "memory", "throttling", "restarts", "errors", "latency", "throughput"} <= names
    assert all(isinstance(s, Signal) and "$" in s.query for s in EvidenceConfig().signals)


@pytest.mark.parametrize("url", ["http://[::1", "prometheus:9090", "ftp://prometheus", "http://prometheus:99999"])
def test_a_prometheus_url_that_cannot_be_one_is_a_clear_error_at_start(url, capsys):
    from pipeline.cli import main

    for option in ("--prometheus", "--discover-graph"):
        assert main(["replay", str(demo.STORM), option, url, "--out", "-"]) == 2
        assert f"stormdrain: {url}: not a Prometheus URL" in capsys.readouterr().err
