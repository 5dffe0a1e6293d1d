"""Root-cause ranking on the service graph: a table of storms and the root each must name."""

import pytest

from tests.timeline import alert, at, driver, graph_of, webhook

CHAIN = ("web>api", "api>orders", "orders>db")
FAN_IN = ("cart>cache", "checkout>cache", "profile>cache", "web>cart", "web>checkout", "web>profile")

CASES = [
    # (case, graph edges, alerts as (service, onset seconds, extra labels), root, inferred)
    ("the deepest alerting service of a chain explains it",
     CHAIN, [("web", 20, {}), ("api", 10, {}), ("orders", 0, {})], "orders", False),
    ("coverage beats onset when the root's alert is slow to fire",
     CHAIN, [("web", 0, {}), ("api", 5, {}), ("orders", 40, {})], "orders", False),
    ("a silent shared dependency of every alerting caller is an inferred root",
     FAN_IN, [("cart", 0, {}), ("checkout", 3, {}), ("profile", 5, {})], "cache", True),
    ("a loud symptom labelled root_cause_candidate loses to what explains it",
     CHAIN, [("api", 5, {"root_cause_candidate": "true", "alertname": "HighCPU"}), ("orders", 0, {}),
             ("web", 12, {})], "orders", False),
    ("the label decides between services the graph cannot tell apart",
     (), [("a", 0, {}), ("b", 0, {"root_cause_candidate": "true"})], "b", False),
    ("without a graph the first to fire leads",
     (), [("late", 30, {}), ("early", 0, {})], "early", False),
    ("a deeper layer label wins a tie",
     (), [("app", 0, {"layer": "application"}), ("disk", 0, {"layer": "storage"})], "disk", False),
]


@pytest.mark.parametrize("case, edges, alerts, root, inferred", CASES, ids=[c[0] for c in CASES])
def test_the_root_cause_is_named(case, edges, alerts, root, inferred):
    run = driver(graph_of(*edges))
    bodies = [alert(labels.pop("alertname", "Symptom"), service, starts=onset, **labels)
              for service, onset, labels in [(s, o, dict(l)) for s, o, l in alerts]]
    run.pipe_webhook(webhook(*bodies), at(60))
    run.advance(60)
    diagnosis = run.read("diagnoses")[-1]
    assert (diagnosis.root_cause.service, diagnosis.root_cause.inferred) == (root, inferred)
    assert diagnosis.candidates[0].reasons  # every place comes with reasons


def test_candidates_are_ranked_best_first_with_a_probability():
    run = driver(graph_of(*CHAIN))
    run.pipe_webhook(webhook(alert("A", "web", starts=5), alert("B", "orders")), at(30))
    run.advance(60)
    diagnosis = run.read("diagnoses")[-1]
    scores = [c.score for c in diagnosis.candidates]
    assert scores == sorted(scores, reverse=True)
    assert 0.0 < diagnosis.confidence < 1.0


def test_an_inferred_root_is_marked_on_the_page_fields():
    run = driver(graph_of(*FAN_IN))
    run.pipe_webhook(webhook(alert("Slow", "cart"), alert("Slow", "checkout")), at(30))
    run.advance(60)
    diagnosis = run.read("diagnoses")[-1]
    assert diagnosis.root_cause.model_dump() == {"service": "cache", "alert": None, "inferred": True, "labels": {}}
    assert "cache" in diagnosis.affected_services
