"""Alertmanager's timing, as timelines: alerts fire at t, webhooks go out at t + group_wait, group_interval ..."""

from datetime import timedelta

from pipeline.grouping import AlertLife, Route, dispatch, label_set, notifications
from pipeline.routing import parse_alertmanager_config
from tests.timeline import T0, at

ROUTE = Route(group_by=("alertname",), group_wait=timedelta(seconds=30), group_interval=timedelta(minutes=5),
              repeat_interval=timedelta(hours=1), replicas=("http://am-0",))
UNTIL = at(6 * 3600)


def life(name: str, start: float, end: float | None = None, **labels: str) -> AlertLife:
    return AlertLife({"alertname": name, **labels}, at(start), at(end) if end is not None else None)


def timeline(sent) -> list[tuple[float, list[tuple[str, str]]]]:
    """(seconds after T0, [(pod or alertname, status), ...]) per webhook."""
    return [((when - T0).total_seconds(),
             sorted((a["labels"].get("pod", a["labels"]["alertname"]), a["status"]) for a in body["alerts"]))
            for when, body in sent]


def test_the_first_notification_waits_group_wait_and_later_alerts_wait_for_the_group_interval():
    alerts = [life("A", 0, pod="p1"), life("A", 10, pod="p2"), life("A", 60, pod="p3")]
    assert timeline(notifications(alerts, ROUTE, at(400))) == [
        (30, [("p1", "firing"), ("p2", "firing")]),  # push at 0 and 10: one webhook at 30
        (330, [("p1", "firing"), ("p2", "firing"), ("p3", "firing")]),  # push at 60: next interval, 30 + 300
    ]


def test_a_resolve_goes_out_at_the_next_interval_only_with_send_resolved():
    alerts = [life("A", 0, 100, pod="p1"), life("A", 0, pod="p2")]
    assert timeline(notifications(alerts, ROUTE, at(400))) == [
        (30, [("p1", "firing"), ("p2", "firing")]),
        (330, [("p1", "resolved"), ("p2", "firing")]),
    ]
    quiet = Route(**{**ROUTE.__dict__, "send_resolved": False})
    assert timeline(notifications(alerts, quiet, at(400))) == [(30, [("p1", "firing"), ("p2", "firing")])]


def test_nothing_new_is_repeated_after_the_repeat_interval_on_a_group_interval_tick():
    sent = timeline(notifications([life("A", 0)], ROUTE, at(2 * 3600)))
    # 30, then the first tick strictly more than an hour after it: 30 + 12 x 300 + 300
    assert [t for t, _ in sent] == [30, 3930]


def test_an_empty_group_ends_and_the_next_alert_waits_group_wait_again():
    sent = timeline(notifications([life("A", 0, 20), life("A", 1000, pod="late")], ROUTE, at(1200)))
    # at 30 the group holds only a resolved alert that never went out: nothing is said, and the group ends
    assert sent == [(1030, [("late", "firing")])]


def test_an_alert_resolved_and_fired_again_between_two_flushes_says_nothing_new():
    alerts = [life("A", 0, 100, pod="p1"), life("A", 200, pod="p1")]
    assert timeline(notifications(alerts, ROUTE, at(400))) == [(30, [("p1", "firing")])]


def test_each_replica_sends_the_same_notification_a_little_apart():
    route = Route(**{**ROUTE.__dict__, "replicas": ("http://am-0", "http://am-1")})
    sent = notifications([life("A", 0)], route, at(60))
    assert [((t - T0).total_seconds(), body["externalURL"]) for t, body in sent] == [(30, "http://am-0"),
                                                                                       (32, "http://am-1")]


def test_a_webhook_carries_at_most_max_alerts_and_counts_the_rest():
    route = Route(**{**ROUTE.__dict__, "max_alerts": 2})
    [(_, body)] = notifications([life("A", 0, pod=f"p{i}") for i in range(5)], route, at(60))
    assert (len(body["alerts"]), body["truncatedAlerts"]) == (2, 3)


def test_group_keys_and_labels_are_written_as_alertmanager_writes_them():
    assert label_set({"service": "a\"b", "alertname": "X"}) == '{alertname="X", service="a\\"b"}'
    route = Route(**{**ROUTE.__dict__, "group_by": ("alertname", "team"), "path": '{}/{severity="critical"}'})
    [(_, body)] = notifications([life("A", 0, severity="critical")], route, at(60))
    assert body["groupKey"] == '{}/{severity="critical"}:{alertname="A"}'  # a missing group label is left out
    assert body["groupLabels"] == {"alertname": "A"}
    assert body["commonLabels"] == {"alertname": "A", "severity": "critical"}


CONFIG = parse_alertmanager_config("""
route:
  receiver: stormdrain
  group_by: [alertname, service]
  group_wait: 30s
  group_interval: 5m
  routes:
    - {matchers: ['severity="critical"'], receiver: pager, continue: true}
    - {matchers: ['alertname="Watchdog"'], receiver: blackhole}
    - {receiver: stormdrain}
receivers:
  - {name: stormdrain, webhook_configs: [{url: "http://bridge"}]}
  - {name: pager, webhook_configs: [{url: "http://pager", send_resolved: false}]}
  - {name: blackhole}
inhibit_rules:
  - source_matchers: ['alertname="DatabaseDown"']
    target_matchers: ['severity="warning"']
    equal: [service]
""")


def _sent(alerts, receivers=None):
    return [((t - T0).total_seconds(), body["receiver"], [(a["labels"]["alertname"], a["status"])
                                                           for a in body["alerts"]])
            for t, body in dispatch(alerts, CONFIG, at(1000), receivers)]


def test_continue_sends_to_both_receivers_and_a_receiver_without_integrations_sends_nothing():
    alerts = [life("DatabaseDown", 0, service="db", severity="critical"), life("Watchdog", 0)]
    assert _sent(alerts) == [(30, "pager", [("DatabaseDown", "firing")]),
                             (30, "stormdrain", [("DatabaseDown", "firing")])]
    assert _sent(alerts, ("stormdrain",)) == [(30, "stormdrain", [("DatabaseDown", "firing")])]


def test_an_inhibited_alert_is_left_out_until_its_source_resolves():
    alerts = [life("DatabaseDown", 0, 400, service="db", severity="critical"),
              life("HighLatency", 10, service="db", severity="warning"),
              life("HighLatency", 10, service="web", severity="warning")]  # other service: not inhibited
    assert _sent(alerts, ("stormdrain",)) == [
        (30, "stormdrain", [("DatabaseDown", "firing")]),
        (40, "stormdrain", [("HighLatency", "firing")]),  # web's group; db's is muted at 40
        (630, "stormdrain", [("DatabaseDown", "resolved")]),
        (640, "stormdrain", [("HighLatency", "firing")]),  # db's group, on the first tick after 400
    ]
