"""Metric evidence and service graphs from Prometheus, through prometheus-api-client.

`PrometheusEvidence` answers an evidence request by querying each service's
configured signals around the incident's onset, in parallel threads, each
query with its own timeout and all of them within one deadline; answers are
cached by query and window. It never raises: an absent or slow Prometheus
comes back as the status `unavailable` or `timeout`, and the page goes on
without it. `GraphDiscovery` reads call edges from service-graph and mesh
series and merges them with the graph file.

This module does input and output; the scoring is pure and lives in
`pipeline.evidence`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import numpy as np
import requests
import urllib3
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from pipeline.alerts import InputError
from pipeline.config import EvidenceConfig, GraphQuery, Signal
from pipeline.evidence import (EvidenceRequest, IncidentEvidence, Series, SignalEvidence, Window, assess,
                               service_scores, window_for)
from pipeline.graph import Edge, GraphFile, ServiceGraph

log = logging.getLogger("stormdrain.metrics")
CACHE_SIZE = 4096
MAX_ITEMS = 20  # facts kept per answer, strongest first: a page shows a few
MAX_SERIES_PER_QUERY = 200
MAX_NAME = 253
_OUTCOMES = ("data", "empty", "timeout", "unavailable", "error")


def promql_string(value: str) -> str:
    """Escape text for a double-quoted PromQL string, so a label value cannot end the string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(template: str, service: str, pod_pattern: str) -> str:
    """Fill `$service` (a literal) and `$pod` (a regex with the service escaped in it) into a query template."""
    pod = pod_pattern.replace("$service", re.escape(service))
    return template.replace("$pod", promql_string(pod)).replace("$service", promql_string(service))


def client_for(url: str, timeout: timedelta) -> PrometheusConnect:
    """A client that fails fast: no retries (the deadline is ours), one timeout per request."""
    return PrometheusConnect(url=http_url(url).rstrip("/"), retry=Retry(total=0, connect=0, read=0, redirect=0),
                             timeout=max(timeout.total_seconds(), 0.1))


def http_url(url: str) -> str:
    """A Prometheus URL as given, once it reads as http(s)://host; otherwise an InputError that names it."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks it
    except ValueError as exc:
        raise InputError(url[:200], f"not a Prometheus URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(url[:200], "not a Prometheus URL: expected http://host:port or https://host:port")
    return url


@dataclass(frozen=True)
class _Task:
    service: str
    signal: Signal
    query: str


class _Cache:
    """Answers by (query, start, end, step), least recently used out first; shared by the query threads."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key: tuple) -> list[Series] | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: tuple, value: list[Series]) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class PrometheusEvidence:
    """An evidence provider over a Prometheus HTTP API."""

    def __init__(self, config: EvidenceConfig, url: str | None = None, graph: ServiceGraph | None = None):
        self.config = config
        self.url = url or config.prometheus_url
        if not self.url:
            raise ValueError("no Prometheus URL: pass one or set evidence.prometheus_url")
        self.graph = graph or ServiceGraph()
        self.signals = {s.name: s for s in config.signals}
        self.client = client_for(self.url, config.query_timeout)
        self.cache = _Cache()
        self.queries = 0  # requests sent to Prometheus, for benchmarks

    def gather(self, request: EvidenceRequest) -> IncidentEvidence:
        """Query, score and explain; any failure becomes a status, never an exception."""
        try:
            return self._gather(request)
        except Exception as exc:  # noqa: BLE001 - the page must never wait on, or break for, metrics
            log.exception("evidence for %s failed", request.incident_id)
            return self._answer(request, "unavailable", f"evidence failed: {type(exc).__name__}: {exc}"[:300])

    def services(self, request: EvidenceRequest) -> list[str]:
        """The requested services, then what they call: a silent callee can be the root."""
        names = [s for s in request.services if 0 < len(s) <= MAX_NAME]
        callees = [c for s in names for c, hops in sorted(self.graph.reach.get(s, {}).items()) if hops == 1]
        return list(dict.fromkeys([*names, *callees]))[: self.config.max_services]

    def _gather(self, request: EvidenceRequest) -> IncidentEvidence:
        window = window_for(request, self.config)
        tasks = [_Task(service, signal, render(signal.query, service, self.config.pod_pattern))
                 for service in self.services(request) for signal in self.config.signals]
        outcomes = self._run(tasks, window)
        items = [item for task, (kind, series) in outcomes.items() if kind == "data"
                 if (item := assess(task.service, task.signal, task.query, series, window, self.config))]
        with_data = {item.service for item in items}
        abnormal = [item for item in items if item.text]
        scores = service_scores(abnormal, with_data, self.signals, self.config, self.graph)
        status, detail = _status(outcomes, len(tasks), self.url)
        return self._answer(request, status, detail, _ordered(abnormal)[:MAX_ITEMS], scores)

    def _run(self, tasks: list[_Task], window: Window) -> dict[_Task, tuple[str, list[Series]]]:
        """Run the queries in parallel; whatever is not back by the deadline counts as timed out."""
        pool = ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="evidence")
        futures = {pool.submit(self._query, task.query, window): task for task in tasks}
        done, _ = wait(futures, timeout=self.config.deadline.total_seconds())
        pool.shutdown(wait=False, cancel_futures=True)  # stragglers end on their own timeout
        return {task: (future.result() if future in done else ("timeout", [])) for future, task in futures.items()}

    def _query(self, query: str, window: Window) -> tuple[str, list[Series]]:
        step = self.config.step.total_seconds()
        key = (query, window.start.timestamp(), window.end.timestamp(), step)
        cached = self.cache.get(key)
        if cached is not None:
            return ("data" if cached else "empty"), cached
        try:
            self.queries += 1
            result = self.client.custom_query_range(query, window.start, window.end, step=f"{step:g}s")
        except requests.exceptions.Timeout:
            return "timeout", []
        except requests.exceptions.ConnectionError as exc:
            return _failed(exc), []
        except (PrometheusApiClientException, requests.exceptions.RequestException, ValueError) as exc:
            log.warning("query failed: %s: %s", query[:200], str(exc)[:200])
            return "error", []
        series = _series(result)
        self.cache.put(key, series)
        return ("data" if series else "empty"), series

    def _answer(self, request: EvidenceRequest, status: str, detail: str, items: list[SignalEvidence] = (),
                scores: dict[str, float] | None = None) -> IncidentEvidence:
        return IncidentEvidence(incident_id=request.incident_id, revision=request.revision, at=request.as_of,
                                status=status, detail=detail, items=list(items), scores=scores or {})


def _failed(exc: requests.exceptions.ConnectionError) -> str:
    """With retries off, a timeout comes wrapped as a connection error: tell the two apart."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    refused = isinstance(reason, urllib3.exceptions.NewConnectionError)  # a TimeoutError subclass, oddly
    return "timeout" if isinstance(reason, urllib3.exceptions.TimeoutError) and not refused else "unavailable"


def _series(result: object) -> list[Series]:
    """Range-query matrix rows as series; anything not shaped like one is skipped."""
    out = []
    for row in result[:MAX_SERIES_PER_QUERY] if isinstance(result, list) else []:
        try:
            points = np.asarray(row["values"], dtype=float).reshape(-1, 2)
            labels = {str(k): str(v) for k, v in dict(row.get("metric") or {}).items()}
        except (KeyError, TypeError, ValueError):
            continue
        out.append(Series(labels=labels, times=points[:, 0], values=points[:, 1]))
    return out


def _ordered(items: list[SignalEvidence]) -> list[SignalEvidence]:
    """Strongest evidence first, so a page that shows a few shows the best."""
    return sorted(items, key=lambda i: (-(i.llr or 0.0), i.service, i.signal))


def _status(outcomes: dict, total: int, url: str) -> tuple[str, str]:
    """ok, partial, timeout or unavailable, with counts a person can act on."""
    counts = {kind: 0 for kind in _OUTCOMES}
    for kind, _ in outcomes.values():
        counts[kind] += 1
    answered = counts["data"] + counts["empty"]
    detail = f"{total} queries to {url}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    if total and counts["unavailable"] == total:
        return "unavailable", detail
    if answered == total:
        return "ok", detail
    if counts["data"] == 0 and counts["timeout"]:
        return "timeout", detail
    return ("partial" if answered else "unavailable"), detail


# -- graph discovery --------------------------------------------------------------

def discover_edges(url: str, queries: tuple[GraphQuery, ...], at: datetime, window: timedelta,
                   timeout: timedelta = timedelta(seconds=10)) -> list[tuple[str, str]]:
    """Call edges that service-graph or mesh series saw in the window before `at`; raises when unreachable."""
    client = client_for(url, timeout)
    edges: set[tuple[str, str]] = set()
    for graph_query in queries:
        query = graph_query.query.replace("$window", f"{max(int(window.total_seconds()), 1)}s")
        for row in client.custom_query(query, params={"time": at.timestamp()}) or []:
            labels = row.get("metric") or {}
            caller, callee = str(labels.get(graph_query.caller, "")), str(labels.get(graph_query.callee, ""))
            if _edge_value(row) > 0 and _named(caller) and _named(callee) and caller != callee:
                edges.add((caller, callee))
    return sorted(edges)


def _edge_value(row: dict) -> float:
    try:
        return float(row["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0.0


def _named(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME and name not in ("unknown", "user")


def merged_graph(base: ServiceGraph, edges: list[tuple[str, str]]) -> ServiceGraph:
    """The graph file's graph with discovered edges added; the file's kinds are kept."""
    known = base.to_file()
    extra = [Edge(**{"from": a, "to": b}) for a, b in edges if (a, b) not in set(base.edges)]
    merged = GraphFile(nodes=sorted(set(known.nodes) | {n for edge in edges for n in edge}),
                       edges=[*known.edges, *extra], kinds=known.kinds)
    return ServiceGraph(merged, base.depth)


class GraphDiscovery:
    """The service graph from Prometheus merged with the file's, refreshed at most every `graph_refresh`."""

    def __init__(self, url: str, config: EvidenceConfig, base: ServiceGraph):
        self.url, self.config, self.base = url, config, base
        self.graph, self.edges, self.checked_at = base, [], None

    def current(self, now: datetime) -> ServiceGraph:
        """The merged graph; queried again when it is older than the refresh period (a failure keeps the last)."""
        if self.checked_at is not None and now - self.checked_at < self.config.graph_refresh:
            return self.graph
        self.checked_at = now
        try:
            self.edges = discover_edges(self.url, self.config.graph_queries, now, self.config.graph_window,
                                        self.config.query_timeout)
        except (requests.exceptions.RequestException, PrometheusApiClientException) as exc:
            log.warning("graph discovery from %s failed: %s", self.url, str(exc)[:200])
            return self.graph
        self.graph = merged_graph(self.base, self.edges)
        return self.graph
