"""Service identity from a label precedence; scope from the scope labels."""

import pytest

from pipeline.config import IdentityConfig
from pipeline.identity import Identity, workload_of_pod

IDENTITY = Identity(IdentityConfig())


@pytest.mark.parametrize(
    "labels, service",
    [
        ({"service": "checkout", "app": "other"}, "checkout"),  # service wins over app
        ({"service.name": "cart"}, "cart"),  # OpenTelemetry resource attribute
        ({"app.kubernetes.io/name": "payments", "job": "kubernetes-pods"}, "payments"),
        ({"app": "web", "container": "nginx"}, "web"),
        ({"job": "kube-state-metrics", "deployment": "orders"}, "orders"),  # exporter jobs are skipped
        ({"job": "node-exporter", "instance": "10.0.0.1:9100"}, None),  # a node alert: no service
        ({"consumergroup": "billing", "job": "kafka-exporter"}, "billing"),
        ({"pod": "cartservice-579f59597d-wc2lz"}, "cartservice"),  # pod with its ReplicaSet suffix
        ({"pod": "postgres-0", "job": "kube-state-metrics"}, "postgres"),  # StatefulSet ordinal
        ({"pod": "fluent-bit-x7k9q"}, "fluent-bit"),  # DaemonSet pod
        ({"pod": "standalone"}, "standalone"),
        ({}, None),
    ],
)
def test_service_comes_from_the_first_label_in_the_precedence(labels, service):
    assert IDENTITY.service({"alertname": "X", **labels}) == service


def test_precedence_is_configurable():
    identity = Identity(IdentityConfig(service_labels=("team_service",)))
    assert identity.service({"alertname": "X", "team_service": "a", "service": "b"}) == "a"


@pytest.mark.parametrize(
    "pod, workload",
    [
        ("order-service-7d9f8b6c4-x2x9z", "order-service"),
        ("ts-order-service-6d8b5c9f7b-4kz8m", "ts-order-service"),
        ("redis-cart-0", "redis-cart"),
        ("node-exporter-abcde", "node-exporter-abcde"),  # vowels never appear in generated suffixes
    ],
)
def test_pod_names_lose_their_generated_suffixes(pod, workload):
    assert workload_of_pod(pod) == workload


def test_scope_is_the_cluster_label_or_the_default():
    assert IDENTITY.scope({"cluster": "prod-eu-1", "namespace": "shop"}) == "cluster=prod-eu-1"
    assert IDENTITY.scope({"namespace": "shop"}) == "default"
