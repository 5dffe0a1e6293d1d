"""alertmanager.yml is read as Alertmanager reads it: the route tree, matchers, inheritance, clear errors."""

from datetime import timedelta

import pytest

from pipeline.alerts import InputError
from pipeline.routing import load_alertmanager_config, parse_alertmanager_config, parse_matchers, prometheus_duration

CONFIG = """
route:
  receiver: stormdrain
  group_by: [service, alertname]
  group_wait: 10s
  routes:
    - matchers: ['severity="critical"']
      group_by: ['...']
      continue: true
    - match_re: {service: "db|orders"}
      receiver: team-data
      group_interval: 1m
      routes:
        - match: {alertname: DatabaseDown}
          receiver: pager
    - matchers: ['team!="web"', 'alertname=~"Watch.*"']
      receiver: blackhole
receivers:
  - name: stormdrain
    webhook_configs: [{url: "http://bridge/alerts"}]
  - name: team-data
    slack_configs: [{channel: "#data"}]
  - name: pager
    pagerduty_configs: [{routing_key: x}]
    webhook_configs: [{url: "http://bridge/alerts", send_resolved: false, max_alerts: 5}]
  - name: blackhole
"""


@pytest.fixture(scope="module")
def config():
    return parse_alertmanager_config(CONFIG)


def _receivers(config, **labels):
    return [node.route.receiver for node in config.root.match(labels)]


@pytest.mark.parametrize("labels, receivers", [
    ({"alertname": "HighLatency", "service": "web"}, ["stormdrain"]),  # no child matches: the root itself
    ({"alertname": "X", "service": "web", "severity": "critical"}, ["stormdrain"]),  # the critical child only
    ({"alertname": "X", "service": "orders"}, ["team-data"]),  # regex, anchored: "orders" only
    ({"alertname": "X", "service": "orders-api"}, ["stormdrain"]),  # not "orders" whole: no match
    ({"alertname": "DatabaseDown", "service": "db"}, ["pager"]),  # the deepest match wins
    ({"alertname": "DatabaseDown", "service": "db", "severity": "critical"}, ["stormdrain", "pager"]),
    ({"alertname": "Watchdog"}, ["blackhole"]),  # team="" matches team!="web": a missing label is ""
    ({"alertname": "Watchdog", "team": "web"}, ["stormdrain"]),
])
def test_an_alert_goes_where_alertmanager_would_send_it(config, labels, receivers):
    assert _receivers(config, **labels) == receivers


def test_children_inherit_what_they_do_not_set_and_keys_are_alertmanagers(config):
    keys = {node.key: node for node in config.routes()}
    data = '{}/{service=~"^(?:db|orders)$"}'  # match_re shows anchored, as Alertmanager 0.25 writes it
    assert list(keys) == ["{}", '{}/{severity="critical"}', data, data + '/{alertname="DatabaseDown"}',
                          '{}/{alertname=~"Watch.*",team!="web"}']
    pager = keys[data + '/{alertname="DatabaseDown"}']
    assert pager.route.group_by == ("alertname", "service")
    assert (pager.route.group_wait, pager.route.group_interval) == (timedelta(seconds=10), timedelta(minutes=1))
    assert pager.route.repeat_interval == timedelta(hours=4)  # Alertmanager's default
    assert keys['{}/{severity="critical"}'].group_all
    assert keys['{}/{severity="critical"}'].group_labels({"a": "1", "b": "2"}) == {"a": "1", "b": "2"}


def test_receivers_say_whether_they_send_resolved_alerts_and_how_many_alerts_fit(config):
    r = config.receivers
    assert (r["stormdrain"].send_resolved, r["stormdrain"].integrations) == (True, 1)
    assert r["team-data"].send_resolved is False  # Slack's default
    assert (r["pager"].send_resolved, r["pager"].max_alerts, r["pager"].integrations) == (False, 5, 2)
    assert r["blackhole"].integrations == 0


@pytest.mark.parametrize("text, expected", [
    ('a="b"', [("a", "=", "b")]),
    ("a != b", [("a", "!=", "b")]),
    ('{a=~"x|y", b!~"z"}', [("a", "=~", "x|y"), ("b", "!~", "z")]),
    ('a="x,y"', [("a", "=", "x,y")]),  # a comma inside quotes is part of the value
    (r'a="say \"hi\""', [("a", "=", 'say "hi"')]),
])
def test_matchers_are_parsed_in_alertmanagers_syntax(text, expected):
    assert [(m.name, m.op, m.value) for m in parse_matchers(text)] == expected


@pytest.mark.parametrize("text, seconds", [("1h30m", 5400), ("0", 0), ("1d", 86400), ("250ms", 0.25), ("2w", 1209600)])
def test_prometheus_durations_are_read(text, seconds):
    assert prometheus_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["5 m", "", "-1s", "1.5h", True, None])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        prometheus_duration(text)


ROUTE = "route: {receiver: a}\nreceivers: [{name: a}]\n"


@pytest.mark.parametrize("text, where, message", [
    ("route: [unclosed", "", "not valid YAML"),
    ("- a\n- b\n", "", "YAML mapping"),
    ("receivers: [{name: a}]\n", "route", "Field required"),
    ("route: {group_by: [x]}\nreceivers: [{name: a}]\n", "route.receiver", "default receiver"),
    ("route: {receiver: a, matchers: ['x=\"y\"']}\nreceivers: [{name: a}]\n", "route", "must not have any matchers"),
    ("route: {receiver: a, continue: true}\nreceivers: [{name: a}]\n", "route.continue", "cannot continue"),
    ("route: {receiver: b}\nreceivers: [{name: a}]\n", "route.receiver", "undefined receiver 'b'"),
    ("route: {receiver: a, routes: [{receiver: c}]}\nreceivers: [{name: a}]\n", "route.routes.0.receiver",
     "undefined receiver 'c'"),
    ("route: {receiver: a}\nreceivers: [{name: a}, {name: a}]\n", "receivers.1.name", "defined twice"),
    ("route: {receiver: a, group_wait: soon}\nreceivers: [{name: a}]\n", "route.group_wait", "not a duration"),
    ("route: {receiver: a, group_interval: 0s}\nreceivers: [{name: a}]\n", "route", "cannot be zero"),
    ("route: {receiver: a, routes: [{matchers: ['x ~ y']}]}\nreceivers: [{name: a}]\n", "route.routes.0",
     "bad matcher"),
    ("route: {receiver: a, routes: [{match_re: {x: '('}}]}\nreceivers: [{name: a}]\n", "route.routes.0",
     "bad regular expression"),
    ("route: {receiver: a, group_by: ['bad-name']}\nreceivers: [{name: a}]\n", "route.group_by", "label name"),
    ("route: {receiver: a, group_by: ['...', x]}\nreceivers: [{name: a}]\n", "route.group_by", "cannot be combined"),
    ("route: {receiver: a, groupby: [x]}\nreceivers: [{name: a}]\n", "route.groupby", "Extra inputs"),
    (ROUTE + "silences: []\n", "silences", "Extra inputs"),
    ("route: {receiver: a}\nreceivers: [{name: a, webhook: {}}]\n", "receivers.0", "unknown receiver field"),
    ("route: {receiver: a}\nreceivers: [{name: a, webhook_configs: {url: x}}]\n", "receivers.0", "list of mappings"),
    ("route: {receiver: a}\nreceivers: [{name: a, webhook_configs: [{send_resolved: maybe}]}]\n",
     "receivers.0.webhook_configs.0", "send_resolved"),
    (ROUTE + "inhibit_rules: [{source_matchers: ['a=~\"[\"'], equal: [x]}]\n", "inhibit_rules.0",
     "bad regular expression"),
    ("route: " + "[" * 2000 + "]" * 2000 + "\n", "", "nested too deeply"),
])
def test_a_bad_config_names_the_field(text, where, message):
    with pytest.raises(InputError) as error:
        parse_alertmanager_config(text, "am.yml")
    assert error.value.field.startswith("am.yml") and where in error.value.field
    assert message in error.value.reason


def test_an_alias_bomb_is_refused_before_it_expands():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    with pytest.raises(InputError, match="over 200000 YAML nodes"):
        parse_alertmanager_config("\n".join(lines) + "\n" + ROUTE)


def test_a_plain_alias_is_fine():
    config = parse_alertmanager_config("route:\n  receiver: a\n  group_wait: &w 10s\n"
                                       "  routes: [{matchers: ['x=\"y\"'], group_wait: *w}]\nreceivers: [{name: a}]\n")
    assert config.root.routes[0].route.group_wait == timedelta(seconds=10)


def test_an_unreadable_oversized_or_binary_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_alertmanager_config(tmp_path / "missing.yml")
    big = tmp_path / "big.yml"
    big.write_bytes(b"#" * (5 << 20))
    with pytest.raises(InputError, match="byte limit"):
        load_alertmanager_config(big)
    binary = tmp_path / "bin.yml"
    binary.write_bytes(b"\xff\xfe\x00route")
    with pytest.raises(InputError, match="UTF-8"):
        load_alertmanager_config(binary)


def test_time_intervals_are_noted_as_not_simulated():
    config = parse_alertmanager_config(ROUTE + "time_intervals: [{name: nights, time_intervals: []}]\n")
    assert any("time intervals" in note for note in config.ignored)
