"""Webhook models take what real Alertmanagers send and name the field of anything else."""

import json
from pathlib import Path
from datetime import datetime, timezone

import pytest

from pipeline.alerts import Alert, AlertRecord, InputError, encode_within, fingerprint, parse_time, parse_webhook
from tests.timeline import SHARED, alert, record, webhook


@pytest.mark.parametrize(
    "text, expected",
    [
        # nanoseconds are cut to microseconds, offsets become UTC
        ("2018-03-07T06:33:21.873077559-05:00", datetime(2018, 3, 7, 11, 33, 21, 873077, tzinfo=timezone.utc)),
        ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=timezone.utc)),
        ("2024-01-01t00:00:00.5z", datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)),
        ("2024-06-01T12:00:00+02:00", datetime(2024, 6, 1, 10, tzinfo=timezone.utc)),
        # the zero time is how Alertmanager says "no end yet"
        ("0001-01-01T00:00:00Z", None),
    ],
)
def test_rfc3339_times_parse_to_utc(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["2024-01-01", "2024-01-01T00:00:00", "yesterday", "", "2024-13-01T00:00:00Z"])
def test_times_without_offset_or_in_other_shapes_are_refused(text):
    with pytest.raises(ValueError):
        parse_time(text)


def test_fingerprint_matches_prometheus_for_known_label_sets():
    # Values from Prometheus's model/signature_test.go (TestLabelsToSignature / fingerprint).
    assert fingerprint({}) == "cbf29ce484222325"
    assert fingerprint({"name": "garland, briggs", "fear": "love is not enough"}) == f"{5799056148416392346:016x}"


def test_the_published_old_format_payload_is_accepted_with_computed_fingerprints():
    body = json.loads((SHARED / "data/alertmanager-webhook/prometheus-msteams_prom_post_request.json").read_text())
    hook = parse_webhook(body)
    first = hook.alerts[0]
    assert first.status == "firing"  # no status field, no end time: firing
    assert first.ends_at is None
    assert first.fingerprint == fingerprint(first.labels)
    assert hook.truncated_alerts == 0
    assert first.starts_at == datetime(2018, 3, 7, 11, 33, 21, 873077, tzinfo=timezone.utc)


def test_label_values_stay_strings_and_any_severity_is_taken():
    hook = parse_webhook(webhook(alert("X", "svc", severity="P0-wake-everyone", root_cause_candidate="true")))
    assert hook.alerts[0].labels["root_cause_candidate"] == "true"
    assert hook.alerts[0].labels["severity"] == "P0-wake-everyone"


def test_truncated_alerts_is_kept():
    body = webhook(alert("X", "svc"))
    body["truncatedAlerts"] = 3
    assert parse_webhook(body).truncated_alerts == 3


def test_a_sent_fingerprint_is_kept_as_sent():
    body = alert("X", "svc")
    body["fingerprint"] = "00000000deadbeef"
    assert Alert.model_validate(body).fingerprint == "00000000deadbeef"


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda b: b.update(version="3"), "version"),
        (lambda b: b.pop("alerts"), "alerts"),
        (lambda b: b.update(alerts="many"), "alerts"),
        (lambda b: b["alerts"][0].update(labels={}), "alerts.0.labels"),  # Alertmanager refuses it too
        (lambda b: b["alerts"][0]["labels"].update(replicas=3), "alerts.0.labels.replicas"),
        (lambda b: b["alerts"][0].update(startsAt="last tuesday"), "alerts.0.startsAt"),
        # times that no window can be added to or taken from
        (lambda b: b["alerts"][0].update(startsAt="9999-12-31T23:59:59Z"), "alerts.0.startsAt"),
        (lambda b: b["alerts"][0].update(startsAt="0001-01-01T00:00:01+05:00"), "alerts.0.startsAt"),
        (lambda b: b["alerts"][0].update(endsAt="9999-12-31T23:59:59-05:00"), "alerts.0.endsAt"),
        (lambda b: b["alerts"][0].update(status="exploding"), "alerts.0.status"),
        (lambda b: b.update(truncatedAlerts=-1), "truncatedAlerts"),
        (lambda b: b["alerts"][0].update(annotations=["x"]), "alerts.0.annotations"),
    ],
)
def test_bad_input_names_the_field(mutate, field):
    body = webhook(alert("X", "svc"))
    mutate(body)
    with pytest.raises(InputError) as caught:
        parse_webhook(body)
    assert caught.value.field == field


def test_a_body_that_is_not_an_object_is_refused():
    with pytest.raises(InputError, match="JSON object"):
        parse_webhook(["not", "a", "webhook"])


FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "webhooks").glob("*.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_real_alertmanager_webhooks_parse_and_our_fingerprints_match_theirs(path):
    body = json.loads(path.read_text())
    hook = parse_webhook(body)
    assert hook.alerts and hook.version == "4"
    for sent in body["alerts"]:
        computed = Alert.model_validate({k: v for k, v in sent.items() if k != "fingerprint"})
        assert computed.fingerprint == sent["fingerprint"]
        assert computed.starts_at.tzinfo is not None


def test_an_alert_over_the_record_limit_keeps_its_labels_and_loses_the_tail_of_its_longest_texts():
    body = alert("DBConnectionPoolExhausted", "order-service")
    body["annotations"] = {"summary": "pool exhausted", "description": "stack trace " * 5000}
    body["generatorURL"] = "http://prometheus:9090/graph?g0.expr=" + "x" * 3000
    original = record(body, 0)
    encoded = encode_within(original, 4096)
    assert encoded is not None and len(encoded) <= 4096
    kept = AlertRecord.model_validate_json(encoded)
    assert kept.alert.labels == original.alert.labels and kept.alert.fingerprint == original.alert.fingerprint
    assert kept.alert.annotations["summary"] == "pool exhausted"
    description = kept.alert.annotations["description"]
    assert description.startswith("stack trace stack trace") and "cut by stormdrain" in description
    assert encode_within(original, 1 << 20) == original.model_dump_json().encode()  # what fits is not touched


def test_an_alert_whose_labels_alone_are_over_the_record_limit_does_not_fit():
    body = alert("A", "svc", huge="x" * 9000)
    assert encode_within(record(body, 0), 4096) is None
