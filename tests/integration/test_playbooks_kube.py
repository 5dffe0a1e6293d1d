"""The Kubernetes runbooks in check mode against a real kube-apiserver (etcd + API server, nothing else).

The API server validates every read, patch, scale and Job as a server-side dry
run; with no controller manager, scheduler or kubelet nothing rolls out, so
only check mode is run here. Building kube-apiserver takes about 15 minutes
on two cores, once: on a laptop without a binary (`deploy/local/kubeapi.py
build`, or $STORMDRAIN_KUBE_APISERVER) or etcd these tests skip; under CI=true
they install etcd and build the binary, and fail if they cannot.
"""

from __future__ import annotations

import importlib.util
import re
import os
import shutil
import subprocess

import pytest

from agents.runbook_runner import Workspace, run_phase
from pipeline.parameters import resolve
from pipeline.remediate import RunPlan
from pipeline.runbooks import DEFAULT_CATALOG, load_catalog
from tests.integration.remediation_support import ROOT, diagnosis

# The first test's setup may build kube-apiserver (about 15 minutes on two cores, once).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]
INCIDENT = "inc-kube-check"


def kubeapi():
    spec = importlib.util.spec_from_file_location("local_kubeapi", ROOT / "deploy" / "local" / "kubeapi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def provide(api) -> None:
    """Under CI: etcd from Debian and kube-apiserver built from the Go module proxy; a failure fails the run."""
    if shutil.which("etcd") is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "etcd-server"], env=env,
                       capture_output=True, timeout=600)
    if api.apiserver_binary() is None:
        api.build()
    if api.apiserver_binary() is None or shutil.which("etcd") is None:
        pytest.fail("CI=true and kube-apiserver or etcd could not be provided (see deploy/local/kubeapi.py)")


def deployment(name: str, replicas: int, pool: str, annotations: dict | None = None) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop", "annotations": annotations or {}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                         {"name": name, "image": f"example/{name}:1",
                          "env": [{"name": "DB_POOL_SIZE", "value": pool}]}]}}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    api = kubeapi()
    if api.apiserver_binary() is None or shutil.which("etcd") is None:
        if os.environ.get("CI", "").lower() != "true":
            pytest.skip("no local kube-apiserver and etcd (deploy/local/kubeapi.py build; apt-get install etcd-server)")
        provide(api)
    data = tmp_path_factory.mktemp("kubeapi")
    kubeconfig = api.start(data)
    port = api.port(data)
    try:
        api.request(port, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": "shop"}})
        for body in (deployment("orders", 2, "20"),
                     deployment("payments", 2, "30", {"stormdrain.io/pool-raised-for": INCIDENT})):
            api.request(port, "/apis/apps/v1/namespaces/shop/deployments", body)
        yield kubeconfig, port, api
    finally:
        api.stop(data)


def check(runbook_id: str, service: str, kubeconfig, tmp_path, monkeypatch) -> str:
    """The runbook's playbook in check mode for a diagnosis of `service` in namespace shop; its output."""
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", str(kubeconfig))
    runbook = load_catalog().get(runbook_id)
    found = diagnosis(INCIDENT, service, runbook=runbook_id, namespace="shop", consumergroup="orders-consumers")
    plan = RunPlan(run_id=f"run-{runbook_id.lower()}", incident_id=INCIDENT, version=1, runbook=runbook_id,
                   playbook=runbook.playbook, parameters=resolve(runbook, found), target=service, by="test",
                   check_first=True, timeout_s=120, cooldown_s=0)
    phase = run_phase(plan, Workspace((DEFAULT_CATALOG.parent,), tmp_path / "work", tmp_path / "scratch"),
                      check=True, timeout_s=120)
    assert phase.ok, phase.stdout[-3000:]
    return phase.stdout


def changed(output: str) -> int:
    return int(re.search(r"changed=(\d+)", output).group(1))


def test_rb_db_001_would_raise_the_pool_by_its_factor(cluster, tmp_path, monkeypatch):
    kubeconfig, port, api = cluster
    output = check("RB-DB-001", "orders", kubeconfig, tmp_path, monkeypatch)
    assert re.search(r'^-\s+"value": "20"', output, re.M) and re.search(r'^\+\s+"value": "30"', output, re.M)
    env = api.request(port, "/apis/apps/v1/namespaces/shop/deployments/orders")["spec"]["template"]["spec"]
    assert env["containers"][0]["env"][0]["value"] == "20"  # check mode changed nothing


def test_rb_db_001_changes_nothing_for_an_incident_it_already_handled(cluster, tmp_path, monkeypatch):
    assert changed(check("RB-DB-001", "payments", cluster[0], tmp_path, monkeypatch)) == 0


@pytest.mark.parametrize("runbook_id, changes", [("RB-APP-001", 1), ("RB-APP-002", 2), ("RB-KAFKA-001", 3)])
def test_the_other_kubernetes_runbooks_pass_check_mode(cluster, tmp_path, monkeypatch, runbook_id, changes):
    assert changed(check(runbook_id, "orders", cluster[0], tmp_path, monkeypatch)) == changes
