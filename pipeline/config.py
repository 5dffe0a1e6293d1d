"""Frozen configuration: one file builds the running logic of every operator."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from pipeline.alerts import InputError, validation_error

MAX_CONFIG_BYTES = 1 << 20
# Durations are added to event times: a bound keeps every sum a time (ten years is past any window).
MAX_DURATION = timedelta(days=3650)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> timedelta:
    """Read "30s", "5m", "1.5h", "7d" or a number of seconds as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or text like '30s'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"not a duration: {str(value)[:40]!r} (use 30s, 5m, 2h, 7d)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if not seconds <= MAX_DURATION.total_seconds():  # also NaN and infinity
        raise ValueError(f"a duration must be at most {MAX_DURATION.days}d")
    return timedelta(seconds=seconds)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


def looks_like_duration(text: str) -> bool:
    """Written as a duration ("7d", "90"), whether or not its value is allowed."""
    return _DURATION.match(text) is not None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]  # a divisor


def check_regex(value: str) -> str:
    """A regular expression from a file, or a ValueError that says why it is not one."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(check_regex)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class IdentityConfig(_Frozen):
    """Which labels name an alert's service and its correlation scope."""

    service_labels: tuple[str, ...] = (
        "service",
        "service.name",
        "service_name",
        "app.kubernetes.io/name",
        "app",
        "k8s_app",
        "consumergroup",
        "job",
        "container",
        "deployment",
        "statefulset",
        "daemonset",
    )
    pod_label: str = "pod"
    # Values that name a scraper or exporter, not the service that is failing.
    ignore_values: Regex = (
        r"^(kube-state-metrics|kubelet|cadvisor|node|node-exporter|apiserver|prometheus"
        r"|kubernetes-.*|.*[-_]exporter|blackbox|pushgateway|POD)$"
    )
    scope_labels: tuple[str, ...] = ("cluster",)
    default_scope: str = "default"


class DedupeConfig(_Frozen):
    """Windows that tell a retry from a repeat, and a flap from a new episode."""

    retry_window: Duration = timedelta(seconds=60)
    flap_window: Duration = timedelta(minutes=10)
    flap_threshold: int = Field(default=3, ge=2)
    retention: Duration = timedelta(hours=24)


class IncidentConfig(_Frozen):
    """How alerts group into incidents on event time."""

    hold: Duration = timedelta(seconds=30)
    gap: Duration = timedelta(minutes=5)
    quiet: Duration = timedelta(minutes=5)
    out_of_order: Duration = timedelta(seconds=2)
    link_depth: int = Field(default=4, ge=1, le=32)
    expire_after: Duration = timedelta(hours=12)
    late: Literal["process", "dead-letter"] = "process"


def _listed(value: Any) -> Any:
    """A list of names, or one name written alone (`severities: critical`)."""
    return (value,) if isinstance(value, str) else value


class PageConfig(_Frozen):
    """Which severities wake a person; the rest go to a channel."""

    severities: Annotated[tuple[str, ...], BeforeValidator(_listed)] = ("critical", "page", "emergency", "p1")


class Calibration(_Frozen):
    """Platt map from the top candidate's log-odds to a probability of being right.

    The defaults are fitted with `stormdrain bench storms --fit` on training seeds
    (0-1) of the synthetic storms; the README reports reliability on held-out seeds.
    """

    intercept: float = Field(default=0.342, ge=-20.0, le=20.0)
    slope: float = Field(default=1.086, gt=0.0, le=20.0)  # more log-odds, more confidence


Probability = Annotated[float, Field(gt=0.0, lt=1.0)]
Ratio = Annotated[float, Field(ge=1.0, le=100.0)]


class RankConfig(_Frozen):
    """The likelihood model behind the root-cause ranking; each number a probability or a ratio."""

    p_self_alert: Probability = 0.85  # the root fires an alert of its own
    p_spread: Probability = 0.75  # factor per call hop for a suffering caller
    p_noise: Probability = 0.1  # an unrelated warning happens to fire
    p_noise_critical: Probability = 0.02  # an unrelated critical alert happens to fire
    p_root_first: Probability = 0.75  # the root fires before the services it explains
    p_hop_order: Probability = 0.6  # a symptom fires before every symptom nearer the root
    p_caller_suffers: Probability = 0.3  # a direct caller of the root alerts too
    p_path_suffers: Probability = 0.8  # a caller that symptoms pass through alerts too
    root_lag: PositiveDuration = timedelta(minutes=2)  # how late a root's own alert plausibly comes
    root_lead: Duration = timedelta(minutes=3)  # how long before its symptoms a root plausibly fires
    label_ratio: Ratio = 3.0  # how much likelier root_cause_candidate makes a service
    cause_ratio: Ratio = 2.0  # how much likelier an alert that reads as a cause makes it
    layer_ratio: Ratio = 1.5  # how much likelier the deepest layer makes it
    history_weight: float = Field(default=0.7, ge=0.0, le=5.0)  # per log(1 + net confirmations) in the past
    cause_alerts: str = (
        r"(?i)(crashloop|oom|outofmemory|memory|cpu|throttl|disk|filesystem|volume|connection|pool|deadlock"
        r"|replicat|down|unavailable|restart|evict|exhaust|saturat|full|leader|quorum|certificate|jvm|gc)"
    )
    calibration: Calibration = Calibration()
    layers: dict[str, float] = {
        "infrastructure": 1.0,
        "network": 1.0,
        "storage": 1.0,
        "database": 0.8,
        "datastore": 0.8,
        "queue": 0.6,
        "platform": 0.5,
        "backend": 0.2,
        "application": 0.1,
        "app": 0.1,
    }
    severities: dict[str, float] = {
        "emergency": 1.0,
        "critical": 1.0,
        "page": 1.0,
        "p1": 1.0,
        "error": 0.8,
        "major": 0.8,
        "high": 0.8,
        "warning": 0.5,
        "minor": 0.4,
        "medium": 0.5,
        "low": 0.3,
        "info": 0.2,
        "none": 0.0,
    }
    max_candidates: int = Field(default=10, ge=1, le=100)


class Signal(_Frozen):
    """One series to look at for each service: a PromQL template and how to read it.

    `$service` in the query is the service name; `$pod` is `pod_pattern` with the
    service in it, for `pod=~"$pod"`. Both come escaped for a PromQL string.
    """

    name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")
    query: str = Field(min_length=1, max_length=2000)
    label: str = ""  # how a page names it ("CPU", "p90 latency"); the name otherwise
    unit: str = ""  # shown after absolute values ("cores", "s", "B")
    kind: Literal["cause", "symptom"] = "symptom"  # a cause (resources) accuses its own service more
    direction: Literal["up", "down", "both"] = "up"
    weight: float = Field(default=1.0, ge=0.0, le=10.0)
    floor: float = Field(default=1e-6, gt=0.0)  # the smallest deviation worth a unit of z, in the signal's unit


def _default_signals() -> tuple[Signal, ...]:
    """cAdvisor, kube-state-metrics and Istio series, as most Kubernetes clusters have them."""
    pods = '{pod=~"$pod", container!="", container!="POD"}'
    into = 'reporter="destination", destination_workload="$service"'
    return (
        Signal(name="cpu", label="CPU", unit="cores", kind="cause", floor=0.005,
               query=f"sum by (pod) (rate(container_cpu_usage_seconds_total{pods}[2m]))"),
        Signal(name="memory", label="memory", unit="B", kind="cause", weight=0.8, floor=8e6,
               query=f"sum by (pod) (container_memory_working_set_bytes{pods})"),
        Signal(name="throttling", label="CPU throttling", kind="cause", floor=0.02,
               query=f"sum by (pod) (rate(container_cpu_cfs_throttled_periods_total{pods}[2m]))"
                     f" / sum by (pod) (rate(container_cpu_cfs_periods_total{pods}[2m]))"),
        Signal(name="restarts", label="restarts", kind="cause", floor=0.5,
               query='sum by (pod) (increase(kube_pod_container_status_restarts_total{pod=~"$pod"}[5m]))'),
        Signal(name="errors", label="5xx ratio", weight=0.6, floor=0.01,
               query=f'sum(rate(istio_requests_total{{{into}, response_code=~"5.."}}[2m]))'
                     f" / sum(rate(istio_requests_total{{{into}}}[2m]))"),
        Signal(name="latency", label="p90 latency", unit="s", weight=0.6, floor=0.005,
               query="histogram_quantile(0.9, sum by (le) (rate(istio_request_duration_milliseconds_bucket"
                     f"{{{into}}}[2m]))) / 1000"),
        Signal(name="latency_in", label="p90 latency seen by its callers", unit="s", weight=0.8, floor=0.005,
               query="histogram_quantile(0.9, sum by (le, source_workload) (rate(istio_request_duration_milliseconds"
                     '_bucket{reporter="source", destination_workload="$service"}[2m]))) / 1000'),
        Signal(name="latency_out", label="p90 latency of its calls", unit="s", weight=0.4, floor=0.005,
               query="histogram_quantile(0.9, sum by (le, destination_workload) (rate(istio_request_duration_"
                     'milliseconds_bucket{reporter="source", source_workload="$service"}[2m]))) / 1000'),
        Signal(name="throughput", label="request rate", unit="req/s", direction="both", weight=0.2, floor=0.05,
               query=f"sum(rate(istio_requests_total{{{into}}}[2m]))"),
    )


class GraphQuery(_Frozen):
    """A series whose label pairs name call edges: `caller` calls `callee`."""

    query: str = Field(min_length=1, max_length=2000)
    caller: str = Field(min_length=1, max_length=100)
    callee: str = Field(min_length=1, max_length=100)


def _default_graph_queries() -> tuple[GraphQuery, ...]:
    """OpenTelemetry/Tempo service graphs and Istio's request counters."""
    return (
        GraphQuery(query="sum by (client, server) (increase(traces_service_graph_request_total[$window]))",
                   caller="client", callee="server"),
        GraphQuery(query="sum by (source_workload, destination_workload) "
                         "(increase(istio_requests_total{reporter=\"source\"}[$window]))",
                   caller="source_workload", callee="destination_workload"),
    )


class EvidenceConfig(_Frozen):
    """Where metric evidence comes from, which series to read, and how much it weighs in the ranking."""

    refresh: Duration = timedelta(seconds=60)  # ask again at most this often while services join
    weight: float = Field(default=1.0, ge=0.0, le=10.0)  # multiplies each service's log-likelihood ratio
    prometheus_url: str | None = Field(default=None, max_length=2000)
    signals: tuple[Signal, ...] = Field(default_factory=_default_signals, max_length=64)
    # Deployment pods (<name>-<hash>-<5>), DaemonSet pods (<name>-<5>) and StatefulSet pods (<name>-<n>).
    pod_pattern: str = Field(default="$service-([a-z0-9]{5,10}-)?[a-z0-9]{5}|$service-[0-9]+", max_length=500)
    baseline: Duration = timedelta(minutes=30)  # how far back the baseline reaches before the lead
    lead: Duration = timedelta(minutes=5)  # how long before the first symptom a cause may begin
    after: Duration = timedelta(minutes=10)  # how far after the first symptom to look, at most (never past as_of)
    step: PositiveDuration = timedelta(seconds=30)  # query resolution
    min_baseline: int = Field(default=3, ge=2, le=1000)  # points a baseline needs
    z_min: float = Field(default=3.0, ge=0.0, le=100.0)  # robust z below this is not evidence
    relative_floor: float = Field(default=0.1, ge=0.0, le=10.0)  # a deviation under this share of the baseline is noise
    quiet: float = Field(default=-0.3, ge=-10.0, le=0.0)  # log-likelihood ratio when every series stayed normal
    explained: float = Field(default=0.25, ge=0.0, le=1.0)  # what is left of a symptom a callee explains
    order_scale: PositiveDuration = timedelta(minutes=2)  # a change this much later than the first costs one nat
    max_lag_penalty: float = Field(default=2.0, ge=0.0, le=20.0)
    query_timeout: Duration = timedelta(seconds=5)
    deadline: Duration = timedelta(seconds=20)  # for all the queries of one request
    workers: int = Field(default=8, ge=1, le=64)
    max_services: int = Field(default=24, ge=1, le=500)  # requested services plus their callees, at most
    graph_queries: tuple[GraphQuery, ...] = Field(default_factory=_default_graph_queries, max_length=16)
    graph_window: Duration = timedelta(hours=1)  # edges seen in this window are edges
    graph_refresh: Duration = timedelta(minutes=10)


class Route(_Frozen):
    """Where a page goes: the channel of the first route whose every condition holds (regular expressions)."""

    channel: str = Field(min_length=1, max_length=200)
    scope: str | None = None
    severity: str | None = None
    service: str | None = None  # the root cause's service
    labels: dict[str, str] = Field(default_factory=dict)  # the root alert's labels, e.g. team: payments

    @field_validator("scope", "severity", "service")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return check_regex(value) if value is not None else None

    @field_validator("labels")
    @classmethod
    def _patterns(cls, value: dict[str, str]) -> dict[str, str]:
        return {k: check_regex(v) for k, v in value.items()}


class SlackConfig(_Frozen):
    """Which channel each diagnosis goes to, and what becomes of incidents that do not page."""

    channel: str = "#incidents"
    routes: tuple[Route, ...] = ()
    notices: Literal["digest", "channel", "drop"] = "digest"
    notice_channel: str = "#alerts"
    digest_window: Duration = timedelta(hours=1)
    thread_replies: bool = True


class NotifyConfig(_Frozen):
    """The notifier: its sinks, Slack routing, and the links a page carries back to the alerts."""

    sinks: tuple[Literal["slack", "pagerduty", "webhook"], ...] = ()  # none: the notifier prints each page
    slack: SlackConfig = SlackConfig()
    alertmanager_url: str = ""  # overrides each diagnosis's Alertmanager external URL
    prometheus_url: str = ""
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    webhook_url: str = ""


class Config(_Frozen):
    """Everything an operator needs, read once from a file or taken as defaults."""

    identity: IdentityConfig = IdentityConfig()
    dedupe: DedupeConfig = DedupeConfig()
    incidents: IncidentConfig = IncidentConfig()
    page: PageConfig = PageConfig()
    rank: RankConfig = RankConfig()
    evidence: EvidenceConfig = EvidenceConfig()
    notify: NotifyConfig = NotifyConfig()


def load_config(path: str | Path | None) -> Config:
    """Read a YAML or JSON config file; an error names the file and the field."""
    if path is None:
        return Config()
    data = read_structured(path, "config")
    try:
        return Config.model_validate(data or {})
    except ValidationError as exc:
        raise validation_error(exc, prefix=f"{path}") from None


def read_structured(path: str | Path, what: str, limit: int = MAX_CONFIG_BYTES) -> Any:
    """Read a bounded YAML or JSON file; an InputError says which file and why."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise InputError(str(path), f"{what} file is {size} bytes, over the {limit} byte limit")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(str(path), f"cannot read {what} file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(str(path), f"{what} file is not UTF-8 text") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text)):
            raise InputError(str(path), f"{what} file uses YAML aliases, which are not accepted")
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(str(path), f"{what} file is not valid {path.suffix or 'YAML'}: {exc}") from None
    except RecursionError:
        raise InputError(str(path), f"{what} file is nested too deeply") from None
