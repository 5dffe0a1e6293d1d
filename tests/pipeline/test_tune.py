"""stormdrain tune: grids of config keys, variants side by side, pages at night, AC@1 from truth or feedback."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from datetime import timedelta

import pytest

from pipeline.alerts import InputError, fingerprint, format_time, parse_time
from pipeline.config import Config
from pipeline.tune import Job, parse_grid_item, resolve_key, run_jobs, split_values, table, variants
from tests.timeline import alert, at, webhook

# Two bursts of alerts that name no service, three minutes apart (at 03:54 UTC):
# a gap of one minute keeps them apart, a gap of ten joins them.
FIRST = [alert(f"Disk{i}", None, starts=i * 5, instance=f"10.0.0.{i}:9100") for i in range(3)]
SECOND = [alert(f"Load{i}", None, starts=180 + i * 5, severity="warning", instance=f"10.0.1.{i}:9100")
          for i in range(3)]


def write_history(path, *bursts) -> str:
    lines = []
    for burst in bursts:
        for body in burst:
            received = format_time(at(_seconds(body["startsAt"]) + 30))
            lines.append(json.dumps({"received_at": received, "webhook": webhook(body)}))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _seconds(text: str) -> float:
    return (parse_time(text) - at(0)).total_seconds()


@pytest.fixture
def history(tmp_path):
    return write_history(tmp_path / "storm.ndjson", FIRST, SECOND)


@pytest.mark.parametrize("text, path, values", [
    ("incidents.hold=30s,2m", ("incidents", "hold"), ["30s", "2m"]),
    ("gap=5m", ("incidents", "gap"), ["5m"]),
    ("link_depth=2,4", ("incidents", "link_depth"), [2, 4]),
    ("page.severities=[critical],[critical, warning]", ("page", "severities"), [["critical"], ["critical", "warning"]]),
    ("rank.calibration.slope=0.5,1.5", ("rank", "calibration", "slope"), [0.5, 1.5]),
])
def test_a_grid_item_names_a_config_key_and_its_values(text, path, values):
    assert parse_grid_item(text) == (path, values)


@pytest.mark.parametrize("text, message", [
    ("severities=[critical]", "several sections"),
    ("incidents.holdd=1m", "no config key"),
    ("hold", "not key=value"),
    ("hold=", "not key=value"),
    ("hold=[unclosed", "not readable"),
])
def test_a_bad_grid_item_says_why(text, message):
    with pytest.raises(InputError, match=message):
        parse_grid_item(text)


def test_a_bad_value_is_refused_before_anything_runs_naming_the_variant_and_key():
    with pytest.raises(InputError) as error:
        variants(Config(), [], ["hold=30s,soon"])
    assert error.value.field == "variant hold=soon" and error.value.reason.startswith("incidents.hold: not a duration")


def test_too_large_a_grid_is_refused():
    with pytest.raises(InputError, match="variants"):
        variants(Config(), [], [f"p_noise={','.join(['0.1'] * 20)}", f"hold={','.join(['1m'] * 20)}"])


def test_values_split_on_commas_outside_brackets():
    assert split_values("[a, b],{x: 1, y: 2}, 3") == ["[a, b]", "{x: 1, y: 2}", "3"]


def test_variants_cross_config_files_with_the_grid(tmp_path):
    (tmp_path / "calm.yaml").write_text("incidents: {quiet: 10m}\n")
    found = variants(Config(), [str(tmp_path / "calm.yaml")], ["gap=1m,10m"])
    assert [v.name for v in found] == ["calm gap=1m", "calm gap=10m"]
    assert [Config.model_validate(v.config).incidents.quiet for v in found] == [timedelta(minutes=10)] * 2


def _jobs(history, grid, **kwargs):
    return [Job(history, None, None, v, **kwargs) for v in variants(Config(), [], grid)]


def test_a_longer_gap_joins_the_two_bursts_into_one_incident(history):
    narrow, wide = run_jobs(_jobs(history, ["gap=1m,10m"]), 1)
    assert (narrow.incidents, wide.incidents) == (2, 1)
    assert (narrow.pages, wide.pages) == (1, 1)  # the warnings alone never paged
    assert (narrow.alerts_per_page, wide.alerts_per_page) == (3, 6)


@pytest.mark.parametrize("zone, night", [("UTC", 1), ("America/New_York", 1), ("Asia/Tokyo", 0)])
def test_pages_at_night_are_counted_in_the_given_time_zone(history, zone, night):
    # the page goes out at 03:55 UTC: night in UTC, 22:55 in New York, noon in Tokyo
    [outcome] = run_jobs(_jobs(history, [], zone=zone), 1)
    assert outcome.night_pages == night


def test_the_table_shows_each_variant_and_leaves_ac1_blank_without_truth(history):
    text = table(run_jobs(_jobs(history, ["gap=1m,10m"]), 1), "UTC")
    lines = text.splitlines()
    assert lines[2].split() == ["gap=1m", "1", "2", "3", "1", "-"]
    assert lines[3].split() == ["gap=10m", "1", "1", "6", "1", "-"]


def test_processes_give_what_one_process_gives(history):
    one = [o.figures() for o in run_jobs(_jobs(history, ["gap=1m,10m"]), 1)]
    two = [o.figures() for o in run_jobs(_jobs(history, ["gap=1m,10m"]), 2)]
    assert [{**f, "seconds": 0} for f in one] == [{**f, "seconds": 0} for f in two]


def _tune(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "tune", *args, "--no-progress"],
                          capture_output=True, text=True, timeout=120)


def test_ac1_is_scored_against_the_truth_beside_the_history(tmp_path):
    history = write_history(tmp_path / "storm.ndjson", [alert("PoolExhausted", "orders"),
                                                        alert("HighErrorRate", "web", starts=20)])
    fps = [fingerprint(a["labels"]) for a in (alert("PoolExhausted", "orders"), alert("HighErrorRate", "web"))]
    truth = {"faults": [{"root": "orders", "at": format_time(at(0)), "fingerprints": fps}]}
    (tmp_path / "storm.truth.json").write_text(json.dumps(truth))
    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps({"edges": [{"from": "web", "to": "orders"}]}))
    result = _tune(history, "--graph", str(graph), "--grid", "p_noise=0.1", "--jobs", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2].split()[-1] == "1.000"
    assert "AC@1 over 1 labelled faults" in result.stdout


def test_ac1_is_scored_against_feedback_on_the_live_configuration(tmp_path):
    history = write_history(tmp_path / "storm.ndjson", [alert("PoolExhausted", "orders"),
                                                        alert("HighErrorRate", "web", starts=20)])
    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps({"edges": [{"from": "web", "to": "orders"}]}))
    out = tmp_path / "live.ndjson"
    replay = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", history, "--graph", str(graph),
                             "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    live = json.loads(out.read_text().splitlines()[0])
    verdict = {"incident_id": live["incident_id"], "version": 1, "user_id": "U1", "at": format_time(at(100)),
               "request_id": "r1", "verdict": "wrong_root", "root_service": "web"}
    feedback = tmp_path / "feedback.ndjson"
    feedback.write_text(json.dumps(verdict) + "\n" + "{not json\n" + json.dumps({**verdict, "verdict": "maybe"}) + "\n")
    result = _tune(history, "--graph", str(graph), "--feedback", str(feedback), "--grid", "p_noise=0.1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2].split()[-1] == "0.000"  # people said web; stormdrain says orders
    assert "feedback: 1 x not a Feedback record" in result.stderr and "verdict" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--tz", "Mars/Olympus"], "no time zone"),
    (["--night", "late"], "from-to hours"),
    (["--grid", "nope=1"], "no config key"),
    (["--truth", "missing.json"], "cannot read truth file"),
    (["--configs", "missing.yaml"], "cannot read config file"),
    (["--grid", "rank.root_lag=0,2m"], "variant root_lag=0: rank.root_lag: must be longer than zero"),
])
def test_the_tune_command_refuses_bad_options_without_a_traceback(history, args, message):
    result = _tune(history, *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_lines_of_the_history_that_cannot_be_read_are_counted_in_the_table(history):
    with open(history, "a") as out:
        out.write("garbage\n" + "x" * 100 + "\n")
    result = _tune(history, "--grid", "gap=1m,5m,10m", "--jobs", "2")
    assert result.returncode == 0 and "2 lines of the history could not be read" in result.stdout
    assert result.stderr.count("skipped line") == 2  # named once, not once per configuration


def test_a_bad_truth_file_names_the_field(history, tmp_path):
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"faults": [{"root": "x", "at": "soon", "fingerprints": ["a"]}]}))
    result = _tune(history, "--truth", str(truth))
    assert result.returncode == 2 and "faults.0.at" in result.stderr


@pytest.mark.parametrize("command", ["tune", "whatif"])
def test_a_missing_history_is_refused_at_once(tmp_path, command):
    """An error raised inside a worker process comes back whole, so nothing hangs on it."""
    missing = str(tmp_path / "missing.ndjson")
    args = ([missing, "--jobs", "2"] if command == "tune" else
            ["--history", missing, "--proposed", str(_config(tmp_path)), "--out", str(tmp_path / "r.html")])
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", *(["report"] if command == "whatif" else []),
                             command, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "not a file" in result.stderr and "Traceback" not in result.stderr


def test_an_input_error_crosses_processes_whole():
    error = pickle.loads(pickle.dumps(InputError("history", "not a file")))
    assert (error.field, error.reason) == ("history", "not a file")


def _config(tmp_path):
    path = tmp_path / "proposed.yaml"
    path.write_text("incidents:\n  hold: 1m\n")
    return path
