"""Playbook parameters: only catalog values and checked labels reach a playbook; hostile values are rejected."""

import pytest

from pipeline.alerts import InputError
from pipeline.diagnose import Diagnosis, RootCause
from pipeline.parameters import ParameterError, resolve
from pipeline.runbooks import load_catalog, parse_catalog
from tests.timeline import at

HOSTILE = ["x; rm -rf /", "{{ lookup('pipe','id') }}", "a" * 10 * 1024, "checkout\nrm -rf /", "$(id)",
           "{% raw %}x{% endraw %}", "../../etc/passwd", "checkout`id`"]


def diagnosis(service: str | None = "checkout", **labels: str) -> Diagnosis:
    return Diagnosis(
        incident_id="inc-1", version=1, status="firing", scope="default", opened_at=at(0), updated_at=at(0),
        paged_at=None, root_cause=RootCause(service=service, alert="DBConnectionPoolExhausted", labels=labels),
        candidates=[], confidence=0.9, affected_services=[], fingerprints=[], alert_count=1, unique_alerts=1,
        recommended_runbook="RB-DB-001", summary="", evidence=[])


def runbook(**parameters):
    return parse_catalog({"runbooks": [{"id": "RB-T-001", "title": "t", "playbook": "t.yml",
                                        "parameters": parameters, "target": "p"}]}).runbooks[0]


def test_values_come_from_the_diagnosis_and_the_catalog():
    rb = load_catalog().get("RB-DB-001")
    values = resolve(rb, diagnosis(namespace="shop"))
    assert values["service"] == "checkout" and values["k8s_namespace"] == "shop"
    assert values["factor"] == 1.5 and values["cap"] == 200


def test_a_missing_label_takes_the_default():
    assert resolve(load_catalog().get("RB-DB-001"), diagnosis())["k8s_namespace"] == "default"


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_label_values_are_rejected_by_name(value):
    with pytest.raises(ParameterError) as caught:
        resolve(load_catalog().get("RB-DB-001"), diagnosis(namespace=value))
    assert caught.value.name == "k8s_namespace"
    assert len(str(caught.value)) < 300  # the value is never echoed in full


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_root_service_is_rejected(value):
    with pytest.raises(ParameterError) as caught:
        resolve(load_catalog().get("RB-APP-001"), diagnosis(service=value))
    assert caught.value.name == "service"


@pytest.mark.parametrize(
    "spec, raw, expected",
    [
        ({"type": "integer", "from": "label.n", "min": 0, "max": 10}, "7", 7),
        ({"type": "number", "from": "label.n"}, "1.5", 1.5),
        ({"type": "boolean", "from": "label.n"}, "TRUE", True),
        ({"from": "label.n", "allowed": ["current", "latest"]}, "latest", "latest"),
    ],
)
def test_label_strings_are_parsed_to_their_type(spec, raw, expected):
    assert resolve(runbook(p=spec), diagnosis(n=raw))["p"] == expected


@pytest.mark.parametrize(
    "spec, raw, reason",
    [
        ({"type": "integer", "from": "label.n", "max": 10}, "11", "above the maximum"),
        ({"type": "integer", "from": "label.n"}, "1e9", "not an integer"),
        ({"type": "integer", "from": "label.n"}, "__import__('os')", "not an integer"),
        ({"type": "number", "from": "label.n"}, "nan", "not a finite number"),
        ({"type": "number", "from": "label.n"}, "1e999", "not a finite number"),
        ({"type": "boolean", "from": "label.n"}, "yes", "not true or false"),
        ({"from": "label.n", "allowed": ["current"]}, "earliest", "not one of the allowed"),
        ({"from": "label.n", "pattern": "[a-z]+"}, "abc1", "does not match"),
        ({"from": "label.n", "pattern": ".*", "max_length": 8}, "123456789", "more than the 8 allowed"),
        ({"from": "label.n", "pattern": ".*"}, "a\x00b", "control characters"),
        ({"from": "label.gone", "pattern": ".*"}, "x", "no default"),
    ],
)
def test_bad_values_are_rejected_with_a_reason(spec, raw, reason):
    with pytest.raises(ParameterError) as caught:
        resolve(runbook(p=spec), diagnosis(n=raw))
    assert reason in caught.value.reason and caught.value.name == "p"


@pytest.mark.parametrize(
    "parameters, field",
    [
        ({"p": {"from": "label.n"}}, "runbooks.0.parameters.p"),  # a string without allowed values or pattern
        ({"p": {"type": "integer"}}, "runbooks.0.parameters.p"),  # neither a default nor a source
        ({"p": {"from": "env.HOME", "pattern": ".*"}}, "runbooks.0.parameters.p.from"),
        ({"p": {"default": "x", "pattern": "("}}, "runbooks.0.parameters.p.pattern"),
        ({"p": {"default": "x", "pattern": ".*", "max_length": 100000}}, "runbooks.0.parameters.p.max_length"),
        ({"ansible_connection": {"default": "ssh", "pattern": ".*"}}, "runbooks.0.parameters"),
        ({"Bad-Name": {"default": "x", "pattern": ".*"}}, "runbooks.0.parameters"),
        ({"p": {"type": "integer", "default": "abc"}}, "runbooks.0.parameters.p"),
        ({"p": {"type": "number", "default": True}}, "runbooks.0.parameters.p"),
        ({"p": {"default": "x", "allowed": ["x", 3]}}, "runbooks.0.parameters.p"),
    ],
)
def test_a_bad_parameter_in_the_catalog_names_the_field(parameters, field):
    with pytest.raises(InputError) as caught:
        parse_catalog({"runbooks": [{"id": "RB-T-001", "title": "t", "parameters": parameters}]}, "cat.yaml")
    assert caught.value.field == f"cat.yaml.{field}"


def test_the_root_alerts_labels_reach_the_diagnosis_and_its_parameters():
    from tests.timeline import alert, driver, webhook

    run = driver()
    run.pipe_webhook(webhook(alert("DBConnectionPoolExhausted", "orders", namespace="shop")), at(30))
    run.advance(60)
    found = run.read("diagnoses")[-1]
    assert found.root_cause.labels["namespace"] == "shop" and found.recommended_runbook == "RB-DB-001"
    assert resolve(load_catalog().get("RB-DB-001"), found)["k8s_namespace"] == "shop"
