"""Metric evidence scoring: how abnormal a series became and when, and what that says about each service."""

from datetime import timedelta

import numpy as np
import pytest

from pipeline.config import EvidenceConfig, Signal
from pipeline.evidence import (EvidenceRequest, Series, SignalEvidence, Window, assess, change_onset,
                               robust_baseline, score_series, service_scores, strength, window_for)
from tests.timeline import at, graph_of

CONFIG = EvidenceConfig(step="30s")
CPU = Signal(name="cpu", label="CPU", unit="cores", kind="cause", floor=0.005, query="q")
LATENCY = Signal(name="latency", label="p90 latency", unit="s", weight=0.6, floor=0.005, query="q")
SIGNALS = {s.name: s for s in (CPU, LATENCY)}
WINDOW = Window(start=at(-2100), effect=at(-300), end=at(300), symptom=at(0))


def series(values_by_offset, base=1.0, jitter=0.05, **labels):
    """A 30 s series from -35 min to +5 min around the first symptom: `base` with a small wobble, then changes."""
    offsets = np.arange(-2100, 301, 30)
    values = base * (1 + jitter * np.sin(offsets / 90.0))
    for start, value in values_by_offset:
        values[offsets >= start] = value
    return Series(labels=labels, times=np.array([at(int(o)).timestamp() for o in offsets]), values=values)


def evidence(service, signal, llr, onset):
    return SignalEvidence(service=service, signal=signal, llr=llr, onset_at=at(onset), text="t")


# -- one series -----------------------------------------------------------------

def test_a_flat_baseline_does_not_make_the_first_wobble_a_thousand_sigma_event():
    median, scale = robust_baseline(np.full(60, 2.0), floor=0.001, relative_floor=0.1)
    assert (median, scale) == (2.0, pytest.approx(0.2))  # MAD is 0: the relative floor holds
    assert robust_baseline(np.zeros(60), floor=0.01, relative_floor=0.1) == (0.0, 0.01)  # and the absolute one


def test_a_step_is_scored_from_where_it_left_the_baseline():
    score = score_series(series([(-40, 4.0)]), WINDOW, CPU, CONFIG)
    assert score.baseline == pytest.approx(1.0, abs=0.05)
    assert score.peak == 4.0 and score.z > 20
    assert score.onset == at(-30).timestamp()  # the first point of the excursion, not the peak


def test_a_series_without_enough_baseline_or_without_points_after_the_lead_is_not_scored():
    short = series([])
    late = Series(labels={}, times=short.times[-5:], values=short.values[-5:])
    assert score_series(late, WINDOW, CPU, CONFIG) is None
    early = Series(labels={}, times=short.times[:10], values=short.values[:10])
    assert score_series(early, WINDOW, CPU, CONFIG) is None


def test_not_a_number_points_are_skipped_not_scored():
    s = series([(-40, 4.0)])
    s.values[::3] = np.nan
    assert score_series(s, WINDOW, CPU, CONFIG).peak == 4.0


@pytest.mark.parametrize("direction, expected", [("up", False), ("down", True), ("both", True)])
def test_a_drop_counts_only_for_signals_that_read_it(direction, expected):
    signal = Signal(name="throughput", query="q", direction=direction, floor=0.01)
    score = score_series(series([(0, 0.1)], base=5.0), WINDOW, signal, CONFIG)
    assert (score.z >= CONFIG.z_min) is expected


def test_the_onset_is_none_when_the_series_never_left_its_baseline():
    assert change_onset(np.array([1.0, 2.0]), np.array([0.5, 1.0]), 1, z_min=3.0) is None
    assert change_onset(np.array([1.0, 2.0, 3.0]), np.array([0.5, 4.0, 9.0]), 2, z_min=3.0) == 2.0


def test_strength_is_zero_below_the_threshold_and_grows_with_the_log_of_z():
    assert strength(2.9, 3.0) == 0.0
    assert strength(30.0, 3.0) == pytest.approx(np.log(10))
    assert strength(300.0, 3.0) - strength(30.0, 3.0) == pytest.approx(np.log(10))


def test_the_window_never_reaches_past_what_a_live_run_could_have_seen():
    request = EvidenceRequest(incident_id="i", revision=1, scope="s", services=("a",), onset=at(0), as_of=at(90))
    window = window_for(request, CONFIG)
    assert (window.start, window.effect, window.end) == (at(-2100), at(-300), at(90))
    later = request.model_copy(update={"as_of": at(3600)})
    assert window_for(later, CONFIG).end == at(0) + CONFIG.after


# -- one signal of one service ----------------------------------------------------

def test_evidence_says_what_changed_by_how_much_and_when_against_the_first_symptom():
    item = assess("checkoutservice", CPU, "q", [series([(-40, 4.1)], pod="checkoutservice-abc12-x2k4z")],
                  WINDOW, CONFIG)
    assert item.text == ("checkoutservice CPU (pod=checkoutservice-abc12-x2k4z) 4.1x its baseline "
                         "from 03:53:30, 30 s before the first symptom")
    assert item.lead_s == 30.0 and item.llr > 0


def test_a_normal_series_is_data_but_no_text_and_no_weight():
    item = assess("cart", CPU, "q", [series([])], WINDOW, CONFIG)
    assert item.text == "" and item.llr == 0.0


def test_a_baseline_of_zero_is_described_in_absolute_values():
    errors = Signal(name="errors", label="5xx ratio", floor=0.01, query="q")
    item = assess("cart", errors, "q", [series([(60, 0.3)], base=0.0, jitter=0.0)], WINDOW, CONFIG)
    assert item.text.startswith("cart 5xx ratio 0.3 against a baseline of 0 from 03:55:00, 60 s after")


def test_one_abnormal_peer_among_many_weighs_less_than_all_of_them():
    callers = [series([(-40, 4.0)], source_workload="web")] + [series([], source_workload=f"c{i}") for i in range(3)]
    one = assess("cart", LATENCY, "q", callers, WINDOW, CONFIG)
    every = assess("cart", LATENCY, "q", [series([(-40, 4.0)], source_workload=f"c{i}") for i in range(4)],
                   WINDOW, CONFIG)
    assert (one.abnormal, one.series) == (1, 4)
    assert one.llr == pytest.approx(every.llr / 4, rel=0.01)
    assert every.text.endswith("; 4 of 4 series")


# -- services --------------------------------------------------------------------

def test_a_symptom_that_a_callee_shows_too_no_later_is_explained_away():
    graph = graph_of("web>catalog")
    items = [evidence("web", "latency", 2.0, 0), evidence("catalog", "latency", 2.0, 0)]
    scores = service_scores(items, {"web", "catalog"}, SIGNALS, CONFIG, graph)
    assert scores["catalog"] == 2.0
    assert scores["web"] == pytest.approx(2.0 * CONFIG.explained)


def test_a_cause_is_never_explained_away():
    graph = graph_of("web>catalog")
    items = [evidence("web", "cpu", 2.0, 0), evidence("catalog", "latency", 3.0, 0)]
    assert service_scores(items, {"web", "catalog"}, SIGNALS, CONFIG, graph)["web"] == 2.0


def test_a_change_that_began_after_the_callers_it_would_explain_is_likelier_an_effect():
    graph = graph_of("web>catalog")
    items = [evidence("web", "latency", 2.0, 0), evidence("catalog", "cpu", 2.0, 300)]
    scores = service_scores(items, {"web", "catalog"}, SIGNALS, CONFIG, graph)
    assert scores["catalog"] == pytest.approx(2.0 - min(270 / 120, CONFIG.max_lag_penalty))


def test_services_with_only_normal_series_are_a_little_less_likely_and_unknown_ones_are_absent():
    scores = service_scores([evidence("web", "cpu", 1.0, 0)], {"web", "quiet"}, SIGNALS, CONFIG)
    assert scores == {"quiet": CONFIG.quiet, "web": 1.0}


def test_the_scores_do_not_depend_on_the_order_of_the_items():
    graph = graph_of("web>catalog", "catalog>db")
    items = [evidence("web", "latency", 1.0, 0), evidence("catalog", "latency", 2.0, 30),
             evidence("db", "cpu", 3.0, -60)]
    forward = service_scores(items, {"web", "catalog", "db"}, SIGNALS, CONFIG, graph)
    assert forward == service_scores(items[::-1], {"db", "catalog", "web"}, SIGNALS, CONFIG, graph)
    assert max(forward, key=forward.get) == "db"


def test_the_lag_scale_and_cap_come_from_the_configuration():
    config = EvidenceConfig(step="30s", order_scale="1m", max_lag_penalty=0.5)
    graph = graph_of("web>catalog")
    items = [evidence("web", "latency", 2.0, 0), evidence("catalog", "cpu", 2.0, timedelta(minutes=30).seconds)]
    assert service_scores(items, {"web", "catalog"}, SIGNALS, config, graph)["catalog"] == 1.5


def test_an_incident_in_the_baseline_does_not_hide_the_next_one():
    # A quarter of an hour ago the pod ran hot for 7 of 17 minutes: the MAD swells, the shorth does not.
    calm = 25 + np.tile([0.0, 1.0, -1.0, 0.5, -0.5], 2)
    baseline = np.concatenate([calm, np.full(7, 95.0)])
    median, scale = robust_baseline(baseline, floor=0.001, relative_floor=0.01)
    mad = 1.4826 * np.median(np.abs(baseline - np.median(baseline)))
    assert median == 26.0 and scale < mad / 1.5  # the calm level, and a spread the hot minutes did not swell
