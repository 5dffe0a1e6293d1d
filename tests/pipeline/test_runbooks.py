"""The runbook catalog: loading, matching the root cause, and errors that name the field."""

import pytest

from pipeline.alerts import InputError
from pipeline.runbooks import load_catalog, parse_catalog

CATALOG = load_catalog()


@pytest.mark.parametrize(
    "alertname, kind, runbook",
    [
        ("DBConnectionPoolExhausted", "service", "RB-DB-001"),
        ("PostgresTooManyConnections", "service", "RB-DB-001"),
        ("KafkaConsumerGroupLag", "service", "RB-KAFKA-001"),
        ("HighCPUUsage", "service", "RB-APP-002"),
        ("KubePodCrashLooping", "service", "RB-APP-001"),
        ("CertificateExpiresSoon", "service", None),
    ],
)
def test_the_first_matching_runbook_is_chosen(alertname, kind, runbook):
    chosen = CATALOG.choose(alertname, {}, kind)
    assert (chosen.id if chosen else None) == runbook


def test_matches_on_labels_and_kind():
    catalog = parse_catalog({"runbooks": [
        {"id": "RB-NET-001", "title": "t", "match": {"labels": {"team": "net.*"}, "kind": "queue"}}]})
    assert catalog.choose("Anything", {"team": "network"}, "queue").id == "RB-NET-001"
    assert catalog.choose("Anything", {"team": "network"}, "service") is None


@pytest.mark.parametrize(
    "data, field",
    [
        ({"runbooks": [{"id": "db-1", "title": "t"}]}, "runbooks.0.id"),
        ({"runbooks": [{"id": "RB-DB-002", "title": "t", "match": {"alertname": "("}}]}, "runbooks.0.match.alertname"),
        ({"runbooks": "all"}, "runbooks"),
    ],
)
def test_a_bad_catalog_names_the_field(data, field):
    with pytest.raises(InputError) as caught:
        parse_catalog(data, "cat.yaml")
    assert caught.value.field == f"cat.yaml.{field}"
