"""The synthetic benchmark's commands refuse what they cannot build from, with the option named."""

import json
import subprocess
import sys

import pytest


def _bench(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "bench", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def one_service(tmp_path):
    path = tmp_path / "loop.json"
    path.write_text(json.dumps({"edges": [{"from": "a", "to": "a"}]}))  # a self-call: no graph to storm on
    return str(path)


@pytest.mark.parametrize("args, message", [
    (["storms", "GRAPH", "--seeds", "100"], "graph: a storm needs at least two services; this graph has 0"),
    (["history", "GRAPH", "--alerts", "100", "--out", "OUT"], "a storm needs at least two services"),
    (["storms", "GRAPH", "--seeds", "101-100"], "--seeds: the range '101-100' is empty"),
    (["history", "GRAPH", "--alerts", "100000000000", "--out", "OUT"], "over 10,000,000 alerts"),
])
def test_a_bench_command_refuses_what_it_cannot_build_from(one_service, tmp_path, args, message):
    args = [{"GRAPH": one_service, "OUT": str(tmp_path / "h.ndjson")}.get(a, a) for a in args]
    result = _bench(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "h.ndjson").exists()


def test_the_storm_benchmark_scores_a_two_service_graph_and_names_its_seeds(tmp_path):
    graph = tmp_path / "pair.json"
    graph.write_text(json.dumps({"edges": [{"from": "web", "to": "orders"}]}))
    out = tmp_path / "storms.json"
    result = _bench("storms", str(graph), "--seeds", "100-101", "--scenarios", "10", "--out", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["seeds"] == [100, 101]  # first and last, both run
    assert figures["overall"]["stormdrain"]["faults"] >= 20


@pytest.mark.parametrize("alerts", [300, 2000])
def test_a_history_holds_at_least_the_alerts_asked_for(tmp_path, alerts):
    graph = tmp_path / "shop.json"
    graph.write_text(json.dumps({"edges": [{"from": "web", "to": "orders"}, {"from": "orders", "to": "db"},
                                           {"from": "web", "to": "cart"}, {"from": "cart", "to": "cache"}]}))
    out = tmp_path / "h.ndjson"
    result = _bench("history", str(graph), "--alerts", str(alerts), "--seed", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    written = sum(len(json.loads(line)["webhook"]["alerts"]) for line in out.read_text().splitlines())
    assert written == json.loads(result.stdout)["alerts"] >= alerts


def test_a_history_that_cannot_be_written_is_a_clear_error(tmp_path):
    graph = tmp_path / "pair.json"
    graph.write_text(json.dumps({"edges": [{"from": "web", "to": "orders"}]}))
    result = _bench("history", str(graph), "--alerts", "100", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "cannot write the history: Is a directory" in result.stderr and "Traceback" not in result.stderr
