"""Replay reads every line format, reports bad lines by number, and writes the diagnosis contract."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.alerts import format_time
from pipeline.bench import demo
from pipeline.config import IdentityConfig
from pipeline.identity import Identity
from pipeline.replay import parse_line, read_lines
from tests.timeline import alert, at, record, webhook

SCOPE = Identity(IdentityConfig()).scope
CONTRACT = {"incident_id", "version", "status", "scope", "opened_at", "updated_at", "paged_at", "root_cause",
            "candidates", "confidence", "affected_services", "fingerprints", "alert_count", "unique_alerts",
            "recommended_runbook", "summary", "evidence"}


def _line(obj) -> bytes:
    return json.dumps(obj).encode()


def test_each_line_format_is_detected_with_its_event_time():
    body = webhook(alert("A", "svc", starts=0), alert("B", "svc", status="resolved", starts=0, ends=90))
    envelope = {"received_at": format_time(at(120)), "webhook": body}
    raw = record(alert("C", "svc"), 200).model_dump(mode="json")
    lines = [parse_line(_line(x), i, SCOPE) for i, x in enumerate([body, envelope, raw], 1)]
    assert [(l.kind, l.received_at) for l in lines] == [("webhook", at(90)), ("envelope", at(120)),
                                                          ("record", at(200))]
    assert [len(l.records) for l in lines] == [2, 2, 1]


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"hello": "world"}', "not a webhook body"),
        (b'{"received_at": "yesterday", "webhook": {"alerts": []}}', "received_at"),
        (b'{"received_at": "2024-01-01T00:00:00Z", "webhook": {"alerts": [{"labels": {}}]}}', "webhook.alerts.0"),
        (b'{"version": "4", "alerts": []}', "no event time"),
        (b"\xff\xfe", "not JSON"),
        (b"\xff\xfe\x00\x01junk\n", "not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"received_at": "9999-12-31T23:59:59Z", "webhook": {"alerts": []}}', "received_at"),
    ],
)
def test_a_bad_line_is_reported_by_number_and_field(raw, message):
    line = parse_line(raw, 7, SCOPE)
    assert line.error is not None and "line 7" in line.error.field
    assert message in str(line.error)


def test_an_oversized_line_is_skipped_whole_and_the_next_line_is_read(tmp_path):
    path = tmp_path / "storm.ndjson"
    good = _line(webhook(alert("A", "svc")))
    path.write_bytes(b"x" * 5000 + b"\n" + good + b"\n")
    with path.open("rb") as stream:
        lines = list(read_lines(stream, SCOPE, limit=1000))
    assert lines[0].error is not None and "limit" in lines[0].error.reason
    assert lines[1].error is None and lines[1].number == 2


def _run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          input=stdin, timeout=120)


def test_replay_writes_every_contract_field_for_an_envelope_storm_and_a_json_graph(tmp_path):
    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps({"nodes": ["web", "orders"], "edges": [{"from": "web", "to": "orders"}]}))
    storm = tmp_path / "storm.ndjson.gz"
    lines = [{"received_at": format_time(at(30)), "webhook": webhook(alert("PoolExhausted", "orders"))},
             {"received_at": format_time(at(40)), "webhook": webhook(alert("Errors", "web", starts=10))}]
    storm.write_bytes(gzip.compress(b"".join(_line(x) + b"\n" for x in lines) + b"garbage\n"))
    out = tmp_path / "out.ndjson"
    result = _run_cli("replay", str(storm), "--graph", str(graph), "--out", str(out))
    assert result.returncode == 0, result.stderr
    diagnoses = [json.loads(l) for l in out.read_text().splitlines()]
    assert diagnoses and all(CONTRACT <= set(d) for d in diagnoses)
    assert diagnoses[-1]["root_cause"]["service"] == "orders"
    assert "webhooks" in result.stderr and "lines skipped" in result.stderr
    assert "line 3" in result.stderr  # the garbage line, named


def test_a_cut_gzip_file_is_reported_and_what_was_read_is_still_diagnosed(tmp_path):
    storm = tmp_path / "storm.ndjson.gz"
    whole = gzip.compress(demo.STORM.read_bytes())
    storm.write_bytes(whole[:len(whole) // 2])
    out = tmp_path / "out.ndjson"
    result = _run_cli("replay", str(storm), "--out", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr  # input was lost: a script must see it
    assert "breaks off" in result.stderr and "input broke off" in result.stderr
    assert out.read_text().splitlines()  # the incidents of the lines before the cut


def test_a_plain_file_named_gz_is_read_whole(tmp_path):
    """gzip is told by the first bytes, not the name: nothing is lost to a misleading name."""
    storm = tmp_path / "storm.ndjson.gz"
    storm.write_bytes(demo.STORM.read_bytes())
    named, plain = _run_cli("replay", str(storm), "--out", "-"), _run_cli("replay", str(demo.STORM), "--out", "-")
    assert named.returncode == 0 and "lines skipped  0" in named.stderr, named.stderr
    assert named.stdout == plain.stdout and named.stdout


@pytest.mark.parametrize("command", [
    ["replay", str(demo.STORM)],
    ["tune", str(demo.STORM), "--grid", "incidents.hold=30s", "--jobs", "1", "--no-progress"],
    ["report", "whatif", "--history", str(demo.STORM), "--proposed", "PROPOSED", "--jobs", "1"],
])
def test_an_output_that_cannot_be_written_is_a_clear_error(tmp_path, command):
    proposed = tmp_path / "proposed.yaml"
    proposed.write_text("incidents: {gap: 10m}\n")
    command = [str(proposed) if part == "PROPOSED" else part for part in command]
    result = _run_cli(*command, "--out", str(tmp_path / "no-such-folder" / "out"))
    assert result.returncode == 2
    assert "--out: cannot write" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device that is always full")
def test_a_full_disk_under_the_output_stops_the_replay_with_a_clear_error():
    result = _run_cli("replay", str(demo.STORM), "--out", "/dev/full")
    assert result.returncode == 2
    assert "/dev/full: replay stopped: No space left on device" in result.stderr and "Traceback" not in result.stderr


def test_an_alert_without_alertname_is_diagnosed_with_the_rest_of_its_group():
    body = (Path(__file__).parents[1] / "fixtures" / "webhooks" / "no_alertname.json").read_text()
    result = _run_cli("replay", "-", "--out", "-", stdin=json.dumps(json.loads(body)) + "\n")
    assert result.returncode == 0, result.stderr
    last = json.loads(result.stdout.splitlines()[-1])
    assert sorted(last["fingerprints"]) == ["535a47be8660ae43", "64574ea792b30f81"]  # as Alertmanager sent them
    assert last["root_cause"]["alert"] == "(no alertname)" and last["paged_at"] is not None


def test_a_gzip_storm_on_standard_input_is_read_as_gzip():
    command = [sys.executable, "-m", "pipeline.cli", "replay", "-", "--graph", str(demo.GRAPH), "--out", "-"]
    result = subprocess.run(command, capture_output=True, input=gzip.compress(demo.STORM.read_bytes()), timeout=120)
    assert result.returncode == 0 and b"lines skipped  0" in result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["root_cause"]["service"] == "order-service"


def test_replay_to_stdout_and_strict_mode_stops_at_a_bad_line(tmp_path):
    result = _run_cli("replay", "-", "--out", "-", "--strict", stdin="{}\n")
    assert result.returncode == 1 and "line 1" in result.stderr


def test_a_missing_graph_file_is_a_clear_error_not_a_traceback(tmp_path):
    result = _run_cli("replay", str(demo.STORM), "--graph", str(tmp_path / "nope.json"), "--out", "-")
    assert result.returncode == 2
    assert "cannot read graph file" in result.stderr and "Traceback" not in result.stderr


def test_the_demo_prints_one_page_naming_order_service_and_its_runbook():
    result = _run_cli("demo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("PAGE ") == 1
    assert "order-service: DBConnectionPoolExhausted" in result.stdout
    assert "RB-DB-001" in result.stdout


def test_the_bundled_demo_storm_is_what_its_timeline_builds():
    expected = "".join(json.dumps(e, sort_keys=True) + "\n" for e in demo.envelopes())
    assert demo.STORM.read_text() == expected, "run python -m pipeline.bench.demo to rebuild it, deliberately"
