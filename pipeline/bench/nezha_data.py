"""A recorded day of the Nezha study, read as the series a production Prometheus would hold.

A day directory holds `metric/<pod>_metric.csv.gz` (one row per minute per pod),
optionally `metric/source_50.csv.gz` and `destination_50.csv.gz` (per call edge
latency, columns named `caller_callee`) and `metric/dependency.csv.gz` (the call
graph), and `fault_list.json`. The series come out production-shaped where the
data allows: cAdvisor's CPU counter and working-set bytes with their limits; the
pods' latency, workload and success rate as gauges; the per-edge latencies as
mesh-style series with `source_workload` and `destination_workload`.

Quirks handled here: times come from the `Time` text, which is right in every
file (an Online Boutique day has its adservice `TimeStamp` column shifted by
200,000,000 s); duplicate rows are dropped; a success rate that is zero all day
(the column is empty in the study) is not loaded; a fault's `inject_time` (UTC)
wins over its `inject_timestamp`, which is off by hours for some faults.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from pipeline.alerts import InputError
from pipeline.identity import workload_of_pod

MAX_FILE_BYTES = 256 << 20
MIB = 1 << 20
RESOURCE_FAULTS = {"cpu_contention", "cpu_consumed", "network_delay"}
_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)")
_IP = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
GAUGES = {  # column -> series name, for the pod-level columns loaded as gauges
    "PodServerLatencyP90(s)": "pod_server_latency_p90_seconds",
    "PodClientLatencyP90(s)": "pod_client_latency_p90_seconds",
    "PodWorkload(Ops)": "pod_workload_ops",
    "PodSuccessRate(%)": "pod_success_rate_percent",
}
EDGE_FILES = {"source_50": "source", "destination_50": "destination"}

Point = tuple[float, float]
SeriesTriple = tuple[str, dict[str, str], list[Point]]


@dataclass(frozen=True)
class Fault:
    """A time at which to look, and (when the list has it) what was injected where."""

    at: datetime
    service: str | None = None
    pod: str | None = None
    kind: str | None = None

    @property
    def fault_class(self) -> str | None:
        if self.kind is None:
            return None
        return "resource" if self.kind in RESOURCE_FAULTS else "code"


@dataclass
class Day:
    """One recorded day: per-pod columns, per-edge latencies, and the span they cover."""

    directory: Path
    namespace: str
    pods: dict[str, tuple[list[float], dict[str, list[float]]]]
    edges: dict[str, tuple[list[float], dict[str, list[float]]]]

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(min(times[0] for times, _ in self.pods.values()), timezone.utc)

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(max(times[-1] for times, _ in self.pods.values()), timezone.utc)

    @property
    def services(self) -> list[str]:
        return sorted({workload_of_pod(pod) for pod in self.pods})


def read_day(directory: str | Path) -> Day:
    """Read every pod file and edge file of a day directory; an unreadable file is an InputError naming it."""
    directory = Path(directory)
    metric = directory / "metric"
    files = sorted(metric.glob("*_metric.csv*"))
    if not files:
        raise InputError(str(directory), "no metric/<pod>_metric.csv(.gz) files: not a recorded day directory")
    pods = {f.name.split("_metric.csv")[0]: _columns(_rows(f), "Time") for f in files}
    edges = {reporter: _columns(_rows(path), "time")
             for name, reporter in EDGE_FILES.items() if (path := _find(metric, name)) is not None}
    return Day(directory=directory, namespace=directory.parent.name or "default", pods=pods, edges=edges)


def day_graph_file(day: Day) -> Path | None:
    """The day's own call graph (`metric/dependency.csv(.gz)`), if it has one."""
    return _find(day.directory / "metric", "dependency")


def graph_edges(path: Path) -> list[tuple[str, str]]:
    """Service-to-service edges of a Source,Target CSV; rows that lead to a node's IP are not services."""
    rows = _rows(path)
    pick = lambda row, *names: next((row[n] for n in names if row.get(n)), "")  # noqa: E731
    edges = [(pick(r, "Source", "source"), pick(r, "Target", "target")) for r in rows]
    return [(a, b) for a, b in edges if a and b and not _IP.match(a) and not _IP.match(b)]


def read_faults(path: str | Path) -> list[Fault]:
    """A fault list: the study's hour-keyed JSON, a JSON list of entries, or one time per line.

    An entry is a time (RFC 3339 or "YYYY-MM-DD HH:MM:SS" in UTC), unix seconds,
    or an object with `inject_time` / `time` / `at` (or `inject_timestamp`) and
    optionally `inject_pod`, `service` and `inject_type`.
    """
    text = _text(Path(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    entries = [e for hour in data.values() for e in hour] if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise InputError(str(path), "a fault list is a JSON list, an hour-keyed JSON object or one time per line")
    faults = [_fault(entry, f"{path}: entry {i + 1}") for i, entry in enumerate(entries)]
    return sorted(faults, key=lambda f: f.at)


def _fault(entry: object, where: str) -> Fault:
    if not isinstance(entry, dict):
        return Fault(at=_when(entry, where))
    when = next((entry[k] for k in ("inject_time", "time", "at", "inject_timestamp") if entry.get(k)), None)
    pod = entry.get("inject_pod") or entry.get("pod")
    service = entry.get("service") or (workload_of_pod(str(pod)) if pod else None)
    kind = entry.get("inject_type") or entry.get("type")
    return Fault(at=_when(when, where), service=service and str(service)[:253], pod=pod and str(pod)[:253],
                 kind=kind and str(kind)[:40])


def _when(value: object, where: str) -> datetime:
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool) or str(value).isdigit():
            seconds = float(value)
            if not 0 < seconds < 1e11:
                raise ValueError("unix seconds out of range")
            return datetime.fromtimestamp(seconds, timezone.utc)
        return _parse_time(str(value))
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(where, f"not a time: {str(value)[:40]!r} ({exc})") from None


def _parse_time(text: str) -> datetime:
    """"2022-08-22 03:51:19.799 +0000 UTC m=+0.3", "2022-08-22 03:53:54" or RFC 3339, all UTC."""
    match = _TIME.match(text.strip())
    if match:
        return datetime.fromisoformat(match.group(1)[:26]).replace(tzinfo=timezone.utc)
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("a time with a date but no zone must be written YYYY-MM-DD HH:MM:SS (UTC)")
    return parsed.astimezone(timezone.utc)


def _find(folder: Path, stem: str) -> Path | None:
    return next((p for p in (folder / f"{stem}.csv.gz", folder / f"{stem}.csv") if p.exists()), None)


def _text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(str(path), f"file is over the {MAX_FILE_BYTES} byte limit")
        raw = path.read_bytes()
        return (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot read: {exc}") from None


def _rows(path: Path) -> list[dict[str, str]]:
    """CSV rows read line by line: a broken line (an unterminated quote) cannot swallow the rest."""
    lines = _text(path).splitlines()
    if not lines:
        return []
    header = next(csv.reader([lines[0]]))
    return [dict(zip(header, next(csv.reader([line])))) for line in lines[1:] if line.strip()]


def _columns(rows: list[dict[str, str]], time_column: str) -> tuple[list[float], dict[str, list[float]]]:
    """Rows to time-ordered columns of floats (NaN where empty); later duplicates of a time are dropped."""
    by_time: dict[float, dict[str, str]] = {}
    for row in rows:
        try:
            by_time.setdefault(_parse_time(row[time_column]).timestamp(), row)
        except (KeyError, TypeError, ValueError):
            continue
    times = sorted(by_time)
    widest = max((list(row) for row in rows), key=len, default=[])
    names = [c for c in widest if c not in (time_column, "TimeStamp", "timestamp", "PodName")]
    return times, {c: [_number(by_time[t].get(c)) for t in times] for c in names}


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


# -- the series ------------------------------------------------------------------

def series(day: Day) -> Iterator[SeriesTriple]:
    """Every series of the day, production-shaped, for OpenMetrics backfill."""
    for pod, (times, columns) in sorted(day.pods.items()):
        labels = {"namespace": day.namespace, "pod": pod, "container": workload_of_pod(pod)}
        yield from _cadvisor(labels, times, columns)
        for column, name in GAUGES.items():
            values = columns.get(column)
            if values and any(v for v in values if not math.isnan(v)):
                yield name, labels, _points(times, values)
    for reporter, (times, columns) in sorted(day.edges.items()):
        for edge, values in sorted(columns.items()):
            caller, _, callee = edge.partition("_")
            labels = {"namespace": day.namespace, "reporter": reporter, "source_workload": caller,
                      "destination_workload": callee}
            yield "edge_request_latency_p50_seconds", labels, _points(times, values)


def _cadvisor(labels: dict[str, str], times: list[float], columns: dict[str, list[float]]) -> Iterator[SeriesTriple]:
    """CPU as a seconds counter with its quota, memory as working-set bytes with its limit.

    The counter grows by the usage rate times the limit over each minute: the
    rate column follows a change within the minute, the millicore column is
    smoothed over a longer window.
    """
    cpu, cpu_pct = columns.get("CpuUsage(m)", []), columns.get("CpuUsageRate(%)", [])
    limit = _limit(cpu, cpu_pct)
    if limit:
        total, counter, previous = 0.0, [], None
        for t, pct in zip(times, cpu_pct):
            used = 0.0 if math.isnan(pct) else pct / 100 * limit / 1000
            total += used * (t - previous if previous is not None else 60.0)
            counter.append((t, total))
            previous = t
        yield "container_cpu_usage_seconds_total", labels, counter
        yield "container_spec_cpu_quota", labels, [(t, limit / 1000 * 100_000) for t in times]
        yield "container_spec_cpu_period", labels, [(t, 100_000.0) for t in times]
    memory, memory_pct = columns.get("MemoryUsage(Mi)", []), columns.get("MemoryUsageRate(%)", [])
    memory_limit = _limit(memory, memory_pct)
    if memory_limit:
        yield "container_memory_working_set_bytes", labels, _points(times, [m * MIB for m in memory])
        yield "container_spec_memory_limit_bytes", labels, [(t, memory_limit * MIB) for t in times]


def _limit(used: list[float], percent: list[float]) -> float | None:
    """The limit that makes the usage the given percentage of it (the median over the day)."""
    ratios = sorted(u / (p / 100) for u, p in zip(used, percent) if p and p > 0 and not math.isnan(u + p))
    return ratios[len(ratios) // 2] if ratios else None


def _points(times: list[float], values: list[float]) -> list[Point]:
    return [(t, v) for t, v in zip(times, values) if not math.isnan(v)]
