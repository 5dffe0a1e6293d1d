"""The recorded-fault benchmark's pure parts: days and fault lists read, rules' `for:`, rankings filled, figures."""

import gzip
import json
from datetime import datetime, timedelta, timezone

import pytest

from pipeline.alerts import InputError
from pipeline.bench.alerting import Rule, _life, _runs, load_rules
from pipeline.bench.nezha import _diagnosis_at, figures, fill
from pipeline.bench.nezha_data import Fault, graph_edges, read_day, read_faults, series
from tests.nezha_day import FAULTS, PODS, write_day
from tests.timeline import graph_of

UTC = timezone.utc


# -- a day and its fault list -------------------------------------------------------

def test_a_day_becomes_production_shaped_series(tmp_path):
    day = read_day(write_day(tmp_path))
    assert day.namespace == "online-boutique" and day.services == ["cart", "catalog", "web"]
    names = {(name, labels.get("pod")) for name, labels, _ in series(day)}
    assert ("container_cpu_usage_seconds_total", PODS["cart"]) in names
    assert ("container_memory_working_set_bytes", PODS["web"]) in names
    assert ("pod_server_latency_p90_seconds", PODS["web"]) in names
    assert not any(name == "pod_success_rate_percent" for name, _ in names)  # all zero: not loaded


def test_the_cpu_counter_grows_by_the_usage_rate_times_the_limit(tmp_path):
    day = read_day(write_day(tmp_path))
    counters = {labels["pod"]: points for name, labels, points in series(day)
                if name == "container_cpu_usage_seconds_total"}
    (t0, v0), (t1, v1) = counters[PODS["cart"]][10:12]
    assert (v1 - v0) / (t1 - t0) == pytest.approx(0.020 * 0.10 * (1 + 0.05 * 0.0), rel=0.06)  # 10 % of 20 m


def test_duplicate_rows_are_dropped_and_times_come_from_the_time_text(tmp_path):
    directory = write_day(tmp_path)
    path = directory / "metric" / f"{PODS['web']}_metric.csv.gz"
    text = gzip.decompress(path.read_bytes()).decode().splitlines()
    shifted = text[1].split(",")
    shifted[1] = str(int(shifted[1]) + 200_000_000)  # the study's adservice quirk: TimeStamp is off, Time is right
    path.write_bytes(gzip.compress("\n".join([text[0], ",".join(shifted), *text[1:]]).encode()))
    times, _ = read_day(directory).pods[PODS["web"]]
    assert times == sorted(set(times)) and times[0] == datetime(2022, 8, 22, 3, 0, 19, 500000, UTC).timestamp()


def test_a_directory_without_metric_files_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not a recorded day"):
        read_day(tmp_path)


def test_node_addresses_in_a_dependency_file_are_not_services(tmp_path):
    directory = write_day(tmp_path)
    assert graph_edges(directory / "metric" / "dependency.csv.gz") == [("web", "cart"), ("web", "catalog")]


def test_the_study_fault_list_gives_times_services_and_kinds(tmp_path):
    faults = read_faults(write_day(tmp_path) / "fault_list.json")
    assert [(f.at, f.service, f.kind, f.fault_class) for f in faults] == [
        (at, service, "cpu_contention", "resource") for service, at in FAULTS]


@pytest.mark.parametrize("text", [
    '["2022-08-22 04:02:05", "2022-08-22T04:22:05Z"]',
    "2022-08-22 04:02:05\n# a comment\n2022-08-22T04:22:05+00:00\n",
    '[1661140925, {"time": "2022-08-22 04:22:05"}]',
])
def test_a_fault_list_may_carry_times_only(tmp_path, text):
    path = tmp_path / "faults.txt"
    path.write_text(text)
    faults = read_faults(path)
    assert [f.at for f in faults] == [at for _, at in FAULTS]
    assert all(f.service is None and f.fault_class is None for f in faults)


def test_the_time_text_wins_over_a_timestamp_that_is_off(tmp_path):
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([{"inject_time": "2023-01-29 08:43:04", "inject_timestamp": "1674953044",
                                 "inject_pod": "ts-contacts-service-866bd68c97-xcqfx", "inject_type": "return"}]))
    (fault,) = read_faults(path)
    assert fault.at == datetime(2023, 1, 29, 8, 43, 4, tzinfo=UTC)
    assert (fault.service, fault.fault_class) == ("ts-contacts-service", "code")


@pytest.mark.parametrize("text, reason", [
    ('["yesterday"]', "not a time"),
    ('["2022-08-22T04:02:05"]', "no zone"),
    ("[99999999999999]", "out of range"),
    ('[{"inject_pod": "x"}]', "not a time"),
    ('"a string"', "a fault list is"),
    ('[true]', "not a time"),
])
def test_a_bad_fault_list_is_an_input_error_that_says_where(tmp_path, text, reason):
    path = tmp_path / "faults.json"
    path.write_text(text)
    with pytest.raises(InputError, match=reason):
        read_faults(path)


def test_a_fault_list_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "faults.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="cannot read"):
        read_faults(path)


# -- rules over history --------------------------------------------------------------

def _at(minute):
    return datetime(2022, 8, 22, 4, minute, tzinfo=UTC)


def test_an_alert_fires_once_it_held_for_its_for_and_starts_when_it_fired():
    rule = Rule(alert="ContainerHighCpuUtilization", expr="x", hold=timedelta(minutes=1),
                labels={"severity": "warning"})
    (run,) = _runs([_at(m).timestamp() for m in (2, 3, 4)], 60.0, _at(30).timestamp())
    life = _life(rule, {"pod": "cart-1"}, run)
    assert (life.starts_at, life.ends_at) == (_at(3), _at(5))
    assert life.labels == {"pod": "cart-1", "severity": "warning", "alertname": "ContainerHighCpuUtilization"}


def test_a_condition_shorter_than_for_stays_pending_and_never_fires():
    rule = Rule(alert="A", expr="x", hold=timedelta(minutes=2))
    runs = _runs([_at(m).timestamp() for m in (2, 3, 7)], 60.0, _at(30).timestamp())
    assert [_life(rule, {}, run) for run in runs] == [None, None]


def test_an_alert_still_firing_when_the_data_ends_has_no_end():
    (run,) = _runs([_at(m).timestamp() for m in (28, 29, 30)], 60.0, _at(30).timestamp())
    assert _life(Rule(alert="A", expr="x"), {}, run).ends_at is None


def test_rule_files_are_read_with_their_placeholders_filled(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("groups:\n- name: g\n  interval: 30s\n  rules:\n"
                    "  - alert: Slow\n    expr: latency > $threshold\n    for: 1m\n"
                    "    annotations: {summary: 'slow {{ $labels.pod }}'}\n  - record: r\n    expr: y\n")
    (rule,) = load_rules(path, {"threshold": "0.2"})
    assert (rule.expr, rule.hold, rule.interval) == ("latency > 0.2", timedelta(minutes=1), timedelta(seconds=30))


# -- looking and scoring ---------------------------------------------------------------

def test_a_short_ranking_is_filled_by_evidence_then_by_call_hops_then_by_name():
    graph = graph_of("web>cart", "cart>redis", "web>ads", "ops>tools")
    ranked = fill(["cart"], {"ads": 0.5, "web": -0.3}, graph, ["cart", "zeta"], at_least=5)
    assert ranked == ["cart", "ads", "web", "redis", "ops", "tools", "zeta"]
    assert fill(["a", "b", "c", "d", "e"], {}, graph_of(), []) == ["a", "b", "c", "d", "e"]


def test_figures_count_the_true_service_in_the_top_k_by_fault_class():
    records = [{"true_service": "a", "fault_type": "cpu_contention", "fault_class": "resource", "rank_of_true": 1},
               {"true_service": "b", "fault_type": "network_delay", "fault_class": "resource", "rank_of_true": 4},
               {"true_service": "c", "fault_type": "return", "fault_class": "code", "rank_of_true": None},
               {"true_service": None, "fault_type": None, "fault_class": None, "rank_of_true": None}]
    got = figures(records)
    assert got["all"] == {"faults": 3, "as_at_1": 0.333, "as_at_3": 0.333, "as_at_5": 0.667}
    assert got["resource"]["as_at_5"] == 1.0 and got["code"]["as_at_5"] == 0.0
    assert figures(records[3:]) == {}


class _Version:
    def __init__(self, incident_id, fingerprints, updated_at, opened_at=None):
        self.incident_id, self.fingerprints, self.updated_at = incident_id, fingerprints, updated_at
        self.opened_at = opened_at or updated_at


def test_an_alert_that_began_before_the_fault_time_is_not_the_faults():
    old, new = _Version("inc-old", ["f1"], _at(6)), _Version("inc-new", ["f2"], _at(7))
    starts = {"f1": [_at(1)], "f2": [_at(5)]}
    assert _diagnosis_at(_at(2), _at(9), [old, new], starts).incident_id == "inc-new"
    assert _diagnosis_at(_at(6), _at(9), [old, new], starts) is None
    assert _diagnosis_at(_at(2), _at(9), [_Version("inc-over", ["f2"], _at(1))], starts) is None


def test_the_page_that_opened_after_the_fault_is_its_page_before_an_older_incident_that_took_more_alerts():
    starts = {"f1": [_at(4)], "f2": [_at(5)], "f3": [_at(5)], "f4": [_at(6)]}
    older = _Version("inc-older", ["f1", "f2", "f3"], _at(7), opened_at=_at(0))  # three alerts began after the fault
    opened = _Version("inc-opened", ["f4"], _at(7), opened_at=_at(6))  # one, and it opened after the fault
    assert _diagnosis_at(_at(3), _at(9), [older, opened], starts).incident_id == "inc-opened"
    # No page opened after the fault: the incident that took its alerts speaks for it.
    assert _diagnosis_at(_at(3), _at(9), [older], starts).incident_id == "inc-older"


def test_a_fault_without_a_kind_has_no_class():
    assert Fault(at=_at(0)).fault_class is None


@pytest.mark.parametrize("args, field", [
    (["--look", "soon"], "--look"),
    (["--latency-threshold", "0.2) or vector(1"], "--latency-threshold"),
    (["--latency-threshold", "-1"], "--latency-threshold"),
    (["--faults", "no-such-file.json"], "no-such-file.json"),
])
def test_bad_bench_options_stop_before_anything_starts(tmp_path, capsys, args, field):
    from pipeline.cli import main

    day = write_day(tmp_path)
    assert main(["bench", "nezha", str(day), "--out", str(tmp_path / "r.json"), *args]) == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_a_malformed_row_in_a_metric_file_is_skipped_and_the_rest_is_read(tmp_path):
    directory = write_day(tmp_path)
    path = directory / "metric" / f"{PODS['cart']}_metric.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines.insert(1, "not a time,1,cart,x,y")
    lines.insert(5, '"unterminated')
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    times, columns = read_day(directory).pods[PODS["cart"]]
    assert len(times) >= 105 and all(t == t for t in columns["CpuUsageRate(%)"][:3])
