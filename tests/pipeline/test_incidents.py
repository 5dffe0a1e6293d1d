"""Storm timelines through the broker-free driver: incidents, holds, pages, closing."""

from pipeline.config import Config, IncidentConfig
from pipeline.correlate import ScopeState
from tests.timeline import alert, at, driver, graph_of, webhook

SHOP = graph_of("frontend>checkout", "checkout>orders", "checkout>payments", "orders>postgres",
                "payments>postgres", "frontend>ads", kinds={"postgres": "datastore"})


def _latest(diagnoses):
    latest = {}
    for d in diagnoses:
        latest[d.incident_id] = d
    return latest


def test_ha_pairs_and_repeats_make_one_incident_and_one_page():
    run = driver(SHOP)
    storm = webhook(alert("PoolExhausted", "orders"), alert("HighErrorRate", "checkout", starts=5))
    run.pipe_webhook(storm, at(30))  # push at t=30 from alertmanager-0
    run.pipe_webhook({**storm, "externalURL": "http://am-1:9093"}, at(33))  # and t=33 from its peer
    run.pipe_webhook(storm, at(330))  # re-sent at the next group_interval
    run.flush()  # end of input: the last version carries the final counts
    diagnoses = run.read("diagnoses")
    assert len(_latest(diagnoses)) == 1
    last = diagnoses[-1]
    assert (last.alert_count, last.unique_alerts) == (6, 2)
    assert sum(1 for d in diagnoses if d.paged_at is not None and d.version == 1) == 1
    assert run.counts()["dedupe_ha_duplicate"] == 2


def test_a_database_in_one_namespace_breaking_services_in_another_is_one_incident():
    run = driver(SHOP)
    run.pipe_webhook(webhook(alert("SlowQueries", "postgres", namespace="data")), at(30))
    run.pipe_webhook(webhook(alert("HighLatency", "orders", namespace="shop", starts=20),
                             alert("HighLatency", "payments", namespace="shop", starts=25)), at(50))
    run.advance(120)
    [diagnosis] = _latest(run.read("diagnoses")).values()
    assert diagnosis.root_cause.service == "postgres"
    assert diagnosis.affected_services == ["orders", "payments", "postgres"]


def test_two_unrelated_faults_at_the_same_time_are_two_incidents():
    run = driver(SHOP)
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders"), alert("AdsDown", "ads", starts=2)), at(30))
    run.advance(60)
    roots = sorted(d.root_cause.service for d in _latest(run.read("diagnoses")).values())
    assert roots == ["ads", "orders"]


def test_an_alert_with_no_service_joins_by_scope_and_time():
    run = driver(SHOP)
    node = alert("NodeHighLoad", None, severity="warning", instance="10.0.0.7:9100", job="node-exporter")
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders")), at(30))
    run.pipe_webhook(webhook(node), at(90))
    run.pipe_webhook(webhook({**node, "labels": {**node["labels"], "cluster": "other"}}), at(95))
    run.advance(120)
    latest = _latest(run.read("diagnoses"))
    assert len(latest) == 2  # the node alert of the other cluster is its own incident
    main = next(d for d in latest.values() if d.root_cause.service == "orders")
    assert main.unique_alerts == 2


def test_the_first_page_waits_for_the_hold_then_new_versions_follow():
    run = driver(SHOP)
    run.pipe_webhook(webhook(alert("HighErrorRate", "checkout")), at(30))
    run.advance(29.9)
    assert run.read("diagnoses") == []  # still holding just before t=60
    run.advance(0.1)  # the hold ends at t=60: 30 s counting the 2 s out-of-order wait
    [first] = run.read("diagnoses")
    assert (first.version, first.paged_at) == (1, at(58))
    assert first.root_cause.service == "checkout"
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders", starts=50)), at(80))
    run.advance(10)
    [second] = run.read("diagnoses")
    assert second.version == 2 and second.incident_id == first.incident_id
    assert second.root_cause.service == "orders"  # new evidence moves the root
    assert second.paged_at == first.paged_at  # and does not page again


def test_an_incident_resolves_then_closes_after_the_quiet_period():
    run = driver(SHOP)
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders")), at(30))
    run.advance(60)
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders", status="resolved", ends=500)), at(510))
    run.advance(10)
    resolved = run.read("diagnoses")[-1]
    assert resolved.status == "resolved"
    run.advance(301)  # quiet period over: closed, state gone
    assert run.scopes["default"].incidents == {}
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders", starts=4000)), at(4030))
    run.advance(60)
    assert run.read("diagnoses")[-1].incident_id != resolved.incident_id


def test_a_flapping_alert_stays_one_incident_and_is_flagged():
    run = driver(SHOP)
    for episode in range(3):
        start = episode * 240
        run.pipe_webhook(webhook(alert("PoolExhausted", "orders", starts=start)), at(start + 30))
        run.pipe_webhook(webhook(alert("PoolExhausted", "orders", status="resolved", starts=start,
                                       ends=start + 120)), at(start + 130))
    run.advance(30)
    diagnoses = run.read("diagnoses")
    assert len(_latest(diagnoses)) == 1
    assert any(d.flapping for d in diagnoses)
    assert run.counts()["dedupe_flapping"] == 2


def test_warnings_do_not_page_until_a_critical_joins():
    run = driver(SHOP)
    run.pipe_webhook(webhook(alert("HighLatency", "checkout", severity="warning")), at(30))
    run.advance(30)
    [quiet] = run.read("diagnoses")
    assert quiet.paged_at is None
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders", starts=55)), at(90))
    run.advance(10)
    assert run.read("diagnoses")[-1].paged_at == at(90)


def test_a_resolve_for_an_alert_never_seen_opens_nothing():
    run = driver(SHOP)
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders", status="resolved", ends=100)), at(130))
    run.advance(600)
    assert run.read("diagnoses") == []
    assert run.counts()["dedupe_resolve_unseen"] == 1


def test_records_out_of_order_within_the_bound_give_the_same_incidents():
    def run_in(order):
        run = driver(SHOP)
        hooks = [webhook(alert("HighLatency", "checkout", starts=0)),
                 webhook(alert("PoolExhausted", "orders", starts=1)),
                 webhook(alert("HighLatency", "checkout", status="resolved", starts=0, ends=3))]
        times = [30, 31, 33]
        for i in order:
            run.pipe_webhook(hooks[i], at(times[i]))
        run.advance(700)
        return [(d.version, d.root_cause.service, d.fingerprints, d.status) for d in run.read("diagnoses")]

    assert run_in([0, 1, 2]) == run_in([2, 0, 1]) == run_in([1, 2, 0])


def test_a_late_record_is_processed_and_counted_or_dead_lettered_by_policy():
    def late_run(policy):
        config = Config(incidents=IncidentConfig(late=policy))
        run = driver(SHOP, config)
        run.pipe_webhook(webhook(alert("PoolExhausted", "orders")), at(30))
        run.pipe_webhook(webhook(alert("HighLatency", "checkout")), at(100))
        run.pipe_webhook(webhook(alert("HighLatency", "payments")), at(40))  # 60 s behind
        run.advance(60)
        return run

    processed = late_run("process")
    assert processed.counts()["late"] == 1
    assert "payments" in processed.read("diagnoses")[-1].affected_services
    lettered = late_run("dead-letter")
    [dead] = lettered.read("alerts.dlq")
    assert dead.reason == "late"
    assert "payments" not in lettered.read("diagnoses")[-1].affected_services


def test_malformed_bytes_go_to_the_dead_letter_topic_and_the_stream_goes_on():
    run = driver(SHOP)
    run.pipe(b'{"kind": "alert", "received_at": "not a time"}')
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders")), at(30))
    run.advance(60)
    [dead] = run.read("alerts.dlq")
    assert dead.reason == "malformed" and "received_at" in dead.detail
    assert len(run.read("diagnoses")) == 1


def test_scope_state_survives_a_snapshot_and_restore_mid_storm():
    def storm(run, restore_after=None):
        steps = [(webhook(alert("HighErrorRate", "checkout")), 30),
                 (webhook(alert("PoolExhausted", "orders", starts=10)), 45),
                 (webhook(alert("HighErrorRate", "checkout")), 48),
                 (webhook(alert("HighLatency", "payments", starts=40)), 90)]
        for i, (body, t) in enumerate(steps):
            run.pipe_webhook(body, at(t))
            if i == restore_after:
                saved = run.scopes["default"].model_dump_json()
                run.scopes["default"] = ScopeState.model_validate_json(saved)
        run.advance(120)
        return [d.model_dump() for d in run.read("diagnoses")]

    assert storm(driver(SHOP), restore_after=1) == storm(driver(SHOP))


def test_the_ticker_closes_incidents_while_the_storm_is_quiet():
    run = driver(SHOP)
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders", status="resolved", starts=0, ends=20),
                             alert("HighLatency", "checkout", starts=0)), at(30))
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders", status="resolved", starts=0, ends=20)), at(31))
    run.pipe_webhook(webhook(alert("HighLatency", "checkout", status="resolved", starts=0, ends=40)), at(45))
    run.tick(at(45 + 2 + 300))
    assert run.scopes["default"].incidents == {}


def test_a_finished_remediation_gives_the_diagnosis_a_version_that_says_so():
    from pipeline.actions import RemediationEvent

    run = driver(SHOP)
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders")), at(30))
    run.advance(60)
    [first] = run.read("diagnoses")
    step = {"incident_id": first.incident_id, "runbook": "RB-DB-001", "run_id": "r1", "at": "2025-11-28T04:00:00Z",
            "by": "U123", "duration_s": 42.0}
    run.remediate(RemediationEvent.model_validate({**step, "step": "started"}))
    assert run.read("diagnoses") == []  # a start is not a result
    run.remediate(RemediationEvent.model_validate({**step, "step": "finished", "detail": "pool 100 -> 150"}))
    run.remediate(RemediationEvent.model_validate({**step, "step": "finished", "detail": "pool 100 -> 150"}))
    [second] = run.read("diagnoses")  # the same result delivered twice is one version
    assert second.version == first.version + 1
    assert any(e.kind == "remediation" and "RB-DB-001 finished after 42s" in e.text for e in second.evidence)


class _Metrics:
    """An evidence provider that answers from a table: the pipeline side of metric evidence."""

    def __init__(self, scores):
        self.scores, self.requests = scores, []

    def gather(self, request):
        from pipeline.evidence import IncidentEvidence, SignalEvidence

        self.requests.append(request)
        items = [SignalEvidence(service=s, signal="cpu", ratio=4.1, text=f"{s} CPU 4.1x its baseline")
                 for s, v in self.scores.items() if v > 0]
        return IncidentEvidence(incident_id=request.incident_id, revision=request.revision, at=request.as_of,
                                items=items, scores=self.scores)


def test_metric_evidence_arrives_as_a_later_version_and_can_name_a_silent_root():
    from pipeline.embedded import Embedded
    from pipeline.config import Config
    from pipeline.runbooks import load_catalog

    metrics = _Metrics({"payments": 6.0})
    run = Embedded(Config(), SHOP, load_catalog(), evidence=metrics)
    run.pipe_webhook(webhook(alert("HighLatency", "checkout", severity="critical")), at(30))
    run.advance(31)
    first, second = run.read("diagnoses")
    assert first.root_cause.service == "checkout"  # the page goes out before the metrics answer
    assert second.version == 2 and second.root_cause.service == "payments"
    assert second.root_cause.inferred  # no alert of its own: its metrics point at it
    assert any(e.kind == "metric" and "CPU 4.1x" in e.text for e in second.evidence)
    assert [r.services[0] for r in metrics.requests] == ["checkout"]
