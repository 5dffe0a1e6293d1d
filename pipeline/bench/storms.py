"""Synthetic alert storms on a real service graph, with the truth kept beside them.

A fault at a root service spreads to its callers hop by hop; each affected
service fires a few symptom alerts, later the further it sits from the root.
Storms are made as awkward as real ones: roots that stay silent, alerts that
name only a pod, loud symptoms that label themselves the root, unrelated
background alerts and node alerts, and now and then two faults at once on
unrelated parts of the graph. Alertmanager's grouping and timing (two replicas)
turn the alerts into webhooks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pipeline.alerts import InputError
from pipeline.grouping import AlertLife, Route, notifications
from pipeline.graph import ServiceGraph

START = datetime(2025, 1, 6, 0, 0, tzinfo=timezone.utc)
SPACING = timedelta(hours=2)
NAMESPACES = ("shop", "payments", "core", "edge")
POD_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

ROOT_ALERTS = {
    "service": ["KubePodCrashLooping", "ContainerHighCpuUtilization", "ContainerHighMemoryUsage",
                "HighErrorRate", "DBConnectionPoolExhausted", "JvmMemoryFilling"],
    "datastore": ["PostgresqlTooManyConnections", "RedisOutOfMemory", "MysqlSlowQueries",
                  "MongodbReplicationLag", "PostgresqlDeadLocks"],
    "queue": ["KafkaTopicsReplicas", "RabbitmqTooManyUnackMessages", "KafkaBrokerDown"],
}
SYMPTOM_ALERTS = ["HighErrorRate", "HighRequestLatency", "KubePodNotReady", "UpstreamTimeouts",
                  "ContainerHighCpuUtilization", "SLOBurnRateHigh", "KubeHpaMaxedOut"]
POD_ALERTS = {"KubePodNotReady", "ContainerHighCpuUtilization", "ContainerHighMemoryUsage", "KubePodCrashLooping",
              "JvmMemoryFilling", "UpstreamTimeouts"}
NOISE_ALERTS = ["ContainerHighMemoryUsage", "KubeDeploymentReplicasMismatch", "CertificateExpiringSoon",
                "KubePersistentVolumeFillingUp", "HighRequestLatency"]
NODE_ALERTS = ["NodeHighLoadAverage", "HostOutOfDiskSpace", "HostHighCpuLoad", "NodeClockSkewDetected"]


@dataclass(frozen=True)
class StormSettings:
    """How awkward the storms are: every knob a probability or a count."""

    scenarios: int = 60
    two_faults: float = 0.2
    silent_root: float = 0.2
    spread: float = 0.85  # chance a caller of an affected service is affected too
    max_hops: int = 3
    missing_service_label: float = 0.3
    false_root_label: float = 0.15
    true_root_label: float = 0.15
    noise_per_scenario: float = 1.5
    node_alerts: float = 0.3
    slow_root_alert: float = 0.2  # the root's alert waits on a long `for:` and fires after its symptoms
    max_replicas: int = 6  # pods per service; pod-level rules fire once per pod


@dataclass
class Fault:
    """One injected fault and the alerts it caused: the truth a benchmark scores against."""

    root: str
    silent: bool
    at: datetime
    affected: list[str]
    fingerprints: set[str] = field(default_factory=set)


@dataclass
class Storm:
    faults: list[Fault]
    envelopes: list[dict]
    alerts: list[AlertLife]


def generate(graph: ServiceGraph, seed: int, settings: StormSettings = StormSettings(),
             root_names: dict[str, list[str]] | None = None) -> Storm:
    """A recorded history of `settings.scenarios` storms on `graph`, two hours apart."""
    if len(graph.nodes) < 2:
        raise InputError("graph", f"a storm needs at least two services; this graph has {len(graph.nodes)}")
    maker = _Maker(graph, random.Random(seed), settings, root_names or ROOT_ALERTS)
    faults, alerts = [], []
    for index in range(settings.scenarios):
        at = START + SPACING * index
        for fault in maker.scenario(at):
            faults.append(fault)
        alerts.extend(maker.take_alerts())
    route = Route(group_by=("alertname", "namespace"),
                  replicas=("http://alertmanager-0:9093", "http://alertmanager-1:9093"))
    sent = notifications(alerts, route, until=START + SPACING * settings.scenarios)
    envelopes = [{"received_at": at.isoformat().replace("+00:00", "Z"), "webhook": body} for at, body in sent]
    return Storm(faults=faults, envelopes=envelopes, alerts=alerts)


class _Maker:
    def __init__(self, graph: ServiceGraph, rng: random.Random, settings: StormSettings,
                 root_names: dict[str, list[str]]):
        self.graph, self.rng, self.s, self.root_names = graph, rng, settings, root_names
        self.nodes = graph.nodes
        self.namespace = {n: ("data" if graph.kind(n) != "service" else rng.choice(NAMESPACES)) for n in self.nodes}
        self.pods = {n: self._pod_names(n) for n in self.nodes}
        self._alerts: list[AlertLife] = []
        self._busy: dict[str, datetime] = {}  # fingerprint -> end of its current life

    def take_alerts(self) -> list[AlertLife]:
        out, self._alerts = self._alerts, []
        return out

    def scenario(self, at: datetime) -> list[Fault]:
        roots = [self.rng.choice(self.nodes)]
        if self.rng.random() < self.s.two_faults:
            other = self._unrelated_root(roots[0])
            if other is not None:
                roots.append(other)
        faults = [self._fault(root, at + timedelta(seconds=self.rng.uniform(0, 60))) for root in roots]
        self._noise(at)
        return faults

    def _unrelated_root(self, root: str) -> str | None:
        taken = set(self._spread_set(root, full=True))
        options = [n for n in self.nodes if not taken & set(self._spread_set(n, full=True))]
        return self.rng.choice(options) if options else None

    def _spread_set(self, root: str, full: bool = False) -> dict[str, int]:
        """Affected services and their hop count from the root, callers of callers and so on."""
        hops = {root: 0}
        frontier = [root]
        for hop in range(1, self.s.max_hops + 1):
            nxt = []
            for node in frontier:
                for caller in self.graph.callers(node):
                    if caller not in hops and (full or self.rng.random() < self.s.spread):
                        hops[caller] = hop
                        nxt.append(caller)
            frontier = nxt
        return hops

    def _fault(self, root: str, at: datetime) -> Fault:
        hops = self._spread_set(root)
        # A silent root can only be told from its callers where two of them suffer.
        direct = sum(1 for n, h in hops.items() if h == 1)
        silent = direct >= 2 and self.rng.random() < self.s.silent_root
        fault = Fault(root=root, silent=silent, at=at, affected=sorted(hops))
        duration = timedelta(minutes=self.rng.uniform(8, 40))
        liar = self.rng.choice([n for n in hops if n != root]) if len(hops) > 1 else None
        lie = liar is not None and self.rng.random() < self.s.false_root_label
        for node, hop in sorted(hops.items()):
            if node == root and silent:
                continue
            onset = at + timedelta(seconds=sum(self.rng.uniform(10, 45) for _ in range(hop)))
            if node == root and self.rng.random() < self.s.slow_root_alert:
                onset = at + timedelta(seconds=self.rng.uniform(60, 180))
            names = self._names(node == root, self.graph.kind(node))
            for i, name in enumerate(names):
                extra = {}
                if node == root and i == 0 and self.rng.random() < self.s.true_root_label:
                    extra["root_cause_candidate"] = "true"
                if node == liar and lie and i == 0:
                    extra["root_cause_candidate"] = "true"
                start = onset + timedelta(seconds=self.rng.uniform(0, 30) * i)
                severity = "critical" if hop <= 1 or i == 0 else "warning"
                for life in self._alerts_of(node, name, start, start + duration, severity, extra):
                    fault.fingerprints.add(life.fingerprint)
        return fault

    def _names(self, is_root: bool, kind: str) -> list[str]:
        if is_root:
            first = self.rng.choice(self.root_names.get(kind) or self.root_names["service"])
            return [first] + self.rng.sample(SYMPTOM_ALERTS, self.rng.randint(0, 1))
        return self.rng.sample(SYMPTOM_ALERTS, self.rng.randint(1, 3))

    def _alerts_of(self, node: str, name: str, start: datetime, end: datetime, severity: str,
                   extra: dict[str, str]) -> list[AlertLife]:
        """One alert per pod for pod-level rules (most pods fire), else one for the service."""
        labels = {"alertname": name, "severity": severity, "cluster": "prod", "namespace": self.namespace[node]}
        roll = self.rng.random()
        if roll < self.s.missing_service_label:
            labels["job"] = "kube-state-metrics"  # only the pod names the service
        elif roll < self.s.missing_service_label + 0.1:
            labels["app"] = node
        else:
            labels["service"] = node
        labels.update(extra)
        if name in POD_ALERTS:
            pods = [p for p in self.pods[node] if self.rng.random() < 0.85] or self.pods[node][:1]
            starts = [start + timedelta(seconds=self.rng.uniform(0, 20) * (i > 0)) for i in range(len(pods))]
        else:
            pods, starts = [None], [start]
        if "job" in labels and pods == [None]:
            pods = self.pods[node][:1]
        lives = [AlertLife(labels={**labels, "pod": pod} if pod else labels, starts_at=begin, ends_at=end,
                           annotations={"summary": f"{name} on {pod or node}"})
                 for pod, begin in zip(pods, starts)]
        return [life for life in lives if self._keep(life)]

    def _keep(self, life: AlertLife) -> bool:
        """Keep an alert unless one with the same labels is still firing: Prometheus fires it once."""
        if self._busy.get(life.fingerprint, START) > life.starts_at:
            return False
        self._busy[life.fingerprint] = life.ends_at
        self._alerts.append(life)
        return True

    def _noise(self, at: datetime) -> None:
        for _ in range(self._poisson(self.s.noise_per_scenario)):
            node = self.rng.choice(self.nodes)
            start = at + timedelta(seconds=self.rng.uniform(-600, 1800))
            self._alerts_of(node, self.rng.choice(NOISE_ALERTS), start,
                            start + timedelta(minutes=self.rng.uniform(5, 30)), "warning", {})
        if self.rng.random() < self.s.node_alerts:
            start = at + timedelta(seconds=self.rng.uniform(0, 300))
            labels = {"alertname": self.rng.choice(NODE_ALERTS), "severity": "warning", "cluster": "prod",
                      "instance": f"10.0.{self.rng.randint(0, 9)}.{self.rng.randint(1, 250)}:9100",
                      "job": "node-exporter"}
            self._keep(AlertLife(labels=labels, starts_at=start,
                                 ends_at=start + timedelta(minutes=self.rng.uniform(5, 20))))

    def _poisson(self, mean: float) -> int:
        count, total = 0, self.rng.expovariate(1.0)
        while total < mean:
            count += 1
            total += self.rng.expovariate(1.0)
        return count

    def _pod_names(self, node: str) -> list[str]:
        """The pods of a Deployment: one ReplicaSet hash, a suffix each."""
        pick = lambda n: "".join(self.rng.choice(POD_ALPHABET) for _ in range(n))  # noqa: E731
        replica_set = pick(9)
        return [f"{node}-{replica_set}-{pick(5)}" for _ in range(self.rng.randint(1, self.s.max_replicas))]

