"""Which service an alert is about, and which correlation scope it belongs to."""

from __future__ import annotations

import re
from functools import lru_cache

from pipeline.config import IdentityConfig

# Deployment pods: <name>-<replicaset hash>-<5 chars>; StatefulSet pods: <name>-<ordinal>;
# DaemonSet pods and bare ReplicaSets: <name>-<5 chars>.
_DEPLOYMENT_POD = re.compile(r"^(?P<name>.+?)-[bcdfghjklmnpqrstvwxz2456789]{5,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$")
_STATEFUL_POD = re.compile(r"^(?P<name>.+?)-\d+$")
_DAEMON_POD = re.compile(r"^(?P<name>.+?)-[bcdfghjklmnpqrstvwxz2456789]{5}$")


def workload_of_pod(pod: str) -> str:
    """Strip the ReplicaSet hash and pod suffix (or ordinal) from a pod name."""
    for pattern in (_DEPLOYMENT_POD, _STATEFUL_POD, _DAEMON_POD):
        match = pattern.match(pod)
        if match:
            return match.group("name")
    return pod


class Identity:
    """Names an alert's service and scope from its labels, by configured precedence."""

    def __init__(self, config: IdentityConfig):
        self._config = config
        self._ignore = re.compile(config.ignore_values)
        self.service_of = lru_cache(maxsize=65536)(self._service_of)
        self._scope_of = lru_cache(maxsize=4096)(self._scope_text)
        self._scope_labels = tuple(config.scope_labels)

    def service(self, labels: dict[str, str]) -> str | None:
        """The service an alert is about, or None for an alert about no service (a node)."""
        keys = tuple(labels.get(name, "") for name in self._config.service_labels)
        return self.service_of(keys, labels.get(self._config.pod_label, ""))

    def _service_of(self, values: tuple[str, ...], pod: str) -> str | None:
        for value in values:
            if value and not self._ignore.match(value):
                return value
        if pod:
            return workload_of_pod(pod)
        return None

    def scope(self, labels: dict[str, str]) -> str:
        """The correlation scope (the Kafka key): the scope labels' values, or the default."""
        names = self._scope_labels
        if len(names) == 1:
            return self._scope_of((labels.get(names[0], ""),))
        return self._scope_of(tuple(labels.get(name, "") for name in names))

    def _scope_text(self, values: tuple[str, ...]) -> str:
        parts = [f"{name}={value}" for name, value in zip(self._config.scope_labels, values) if value]
        return ",".join(parts) or self._config.default_scope
