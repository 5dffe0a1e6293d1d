"""The bridge refuses bad input whole, with the status Alertmanager needs and the field that is wrong."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
import urllib.request
from pathlib import Path

import pytest

from agents.admin import create_topics
from agents.bridge import BridgeSettings, build_app
from agents.options import Kafka
from pipeline.alerts import parse_time
from agents.producer import Publisher
from pipeline.config import Config
from pipeline.identity import Identity
from tests.integration.parts import BridgeThread, post, read_topic
from tests.timeline import alert, webhook
from topics.catalog import ALERTS_RAW

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
BEARER = {"Authorization": "Bearer s3cret-token"}


@pytest.fixture(scope="module")
def kafka(broker):
    """One namespace for this module: refused webhooks must leave it as empty as they found it."""
    kafka = Kafka(bootstrap=broker[0], namespace=f"t{uuid.uuid4().hex[:10]}")
    asyncio.run(create_topics(kafka))
    return kafka


@pytest.fixture(scope="module")
def bridge(kafka):
    publisher = Publisher(kafka.bootstrap, kafka.topic(ALERTS_RAW).name, timeout=10)
    settings = BridgeSettings(max_body=64 * 1024, max_record=8 * 1024, bearer_token="s3cret-token",
                              basic_auth=("stormdrain", "s3cret"))
    server = BridgeThread(build_app(publisher, Identity(Config().identity), settings))
    server.wait_ready()
    yield server
    server.close()


def _good(n: int = 3, **labels) -> bytes:
    return json.dumps(webhook(*(alert(f"A{i}", "svc", starts=i, **labels) for i in range(n)))).encode()


def _with_bad_alert() -> bytes:
    body = webhook(*(alert(f"A{i}", "svc") for i in range(100)))
    body["alerts"][57]["labels"] = {}  # no label at all: Alertmanager itself never sends that
    return json.dumps(body).encode()


@pytest.mark.parametrize("body, headers, status, field", [
    (b"{not json", BEARER, 400, "body"),  # broken JSON
    (b"\xff\xfe\x00", BEARER, 400, "body"),  # not UTF-8
    (b"[1, 2, 3]", BEARER, 400, "body"),  # not an object
    (_with_bad_alert(), BEARER, 400, "alerts.57.labels"),  # one bad alert refuses the whole webhook
    (json.dumps({**webhook(alert("A", "svc")), "version": "3"}).encode(), BEARER, 400, "version"),
    (json.dumps({"alerts": [{"labels": {"alertname": "A"}, "startsAt": "yesterday"}]}).encode(), BEARER, 400,
     "alerts.0.startsAt"),
    (b"[" * 5000 + b"]" * 5000, BEARER, 400, "body"),  # deeply nested
    (_good(), {**BEARER, "Content-Type": "text/plain"}, 415, "Content-Type"),
    (_good(), {**BEARER, "Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type"),
    (_good(400), BEARER, 413, "body"),  # over the body limit
    (_good(1, huge="x" * 9000), BEARER, 413, "alerts.0.labels"),  # labels alone over the record limit
    (_good(), {}, 401, "Authorization"),
    (_good(), {"Authorization": "Bearer wrong"}, 401, "Authorization"),
    (_good(), {"Authorization": "Basic " + base64.b64encode(b"stormdrain:nope").decode()}, 401, "Authorization"),
])
def test_bad_input_is_refused_whole_with_the_field_named(bridge, kafka, body, headers, status, field):
    got, _, answer = post(bridge.url + "/alerts", body, headers)
    assert (got, json.loads(answer)["field"]) == (status, field)
    assert read_topic(kafka.bootstrap, kafka.topic(ALERTS_RAW).name, timeout=1) == []


def test_real_alertmanager_bodies_are_published_one_record_per_alert_with_both_credentials(bridge, kafka):
    basic = {"Authorization": "Basic " + base64.b64encode(b"stormdrain:s3cret").decode()}
    sent = 0
    for path, headers in zip(sorted(FIXTURES.glob("*.json")), [BEARER, basic] * 10):
        body = path.read_bytes()
        status, _, answer = post(bridge.url + "/alerts", body, {**headers, "User-Agent": "Alertmanager/0.25.0"})
        assert status == 200, answer
        sent += len(json.loads(body)["alerts"])
    assert post(bridge.url + "/alerts", json.dumps(webhook()).encode(), BEARER)[0] == 200  # no alerts: nothing to do
    records = read_topic(kafka.bootstrap, kafka.topic(ALERTS_RAW).name, lambda ms: len(ms) >= sent)
    assert len(records) == sent
    values = [json.loads(m.value) for m in records]
    assert all(m.key.decode() == v["scope"] for m, v in zip(records, values))
    assert all(m.timestamp == int(parse_time(v["received_at"]).timestamp() * 1000) for m, v in zip(records, values))
    metrics = urllib.request.urlopen(bridge.url + "/metrics").read().decode()
    assert f"stormdrain_bridge_alerts_published_total {float(sent)}" in metrics
    assert urllib.request.urlopen(bridge.url + "/healthz").status == 200


def test_an_alert_with_a_huge_annotation_is_published_cut_to_the_record_limit(bridge, kafka):
    big = alert("DBConnectionPoolExhausted", "order-service", starts=99)
    big["annotations"]["description"] = "stack trace " * 2000  # 24 kB, over the 8 kB record limit here
    status, _, answer = post(bridge.url + "/alerts", json.dumps(webhook(big)).encode(), BEARER)
    assert status == 200, answer
    records = read_topic(kafka.bootstrap, kafka.topic(ALERTS_RAW).name,
                         lambda ms: any(b"DBConnectionPoolExhausted" in m.value for m in ms))
    [published] = [m for m in records if b"DBConnectionPoolExhausted" in m.value]
    assert len(published.value) <= 8 * 1024
    value = json.loads(published.value)["alert"]
    assert value["labels"] == big["labels"]
    assert "cut by stormdrain" in value["annotations"]["description"]
