"""The recorded-fault benchmark: a day of the Nezha study through Prometheus, rules, Alertmanager and stormdrain.

The day's metrics are backfilled into a real Prometheus as production-shaped
series. Alerting rules (`nezha-rules.yaml`) are evaluated over the whole day with
range queries against it, with `for:` applied as the rule manager does, and the
alerts go through Alertmanager's grouping and timing into webhooks. Those are
replayed through the embedded runtime with the Prometheus evidence provider,
configured by `nezha-config.yaml` exactly as a production deployment would be.

The fault list gives only the times at which to look: at each, the diagnosis of
the incident whose alerts began there, as it stood `look` later (or, when no
alert fired, the metric evidence alone for every service). The injected service
is read only to score the ranking: AS@k, the share of faults whose service is in
the top k, and the reliability of the pages' confidence.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

from pipeline.bench import nezha_data
from pipeline.bench.alerting import evaluate, load_rules
from pipeline.bench.parts import local_prometheus
from pipeline.bench.nezha_data import Day, Fault
from pipeline.calibration import Outcome, calibration_figures
from pipeline.config import Config, load_config
from pipeline.diagnose import Diagnosis
from pipeline.embedded import Embedded
from pipeline.evidence import EvidenceRequest, IncidentEvidence
from pipeline.graph import GraphFile, ServiceGraph, load_graph, parse_graph
from pipeline.grouping import AlertLife, Route, notifications
from pipeline.metrics import PrometheusEvidence
from pipeline.runbooks import load_catalog

MIN_CANDIDATES = 5
LATENCY_THRESHOLDS = {"online-boutique": "0.2", "train-ticket": "0.3"}  # the study's alarm rule, in seconds
ROUTE = Route(group_by=("alertname", "pod", "service"))
# Nezha paper, Table 3, service level, all faults of the study (%): AS@1, AS@3, AS@5.
PUBLISHED = {
    "online-boutique": {"Nezha, metrics+traces": (64.28, 64.28, 64.28),
                        "Nezha, metrics+traces+logs": (92.86, 96.43, 96.43),
                        "PDiagnose": (41.07, 73.21, 82.14), "MicroRCA": (16.07, 62.5, 92.75)},
    "train-ticket": {"Nezha, metrics+traces": (42.22, 44.44, 44.44),
                     "Nezha, metrics+traces+logs": (86.67, 97.78, 97.78),
                     "PDiagnose": (8.89, 13.33, 22.22), "MicroRCA": (20.00, 31.11, 44.44)},
}


@dataclass(frozen=True)
class Settings:
    """Where to look and with what: the parts of a run that are not the day's data."""

    # Read the diagnosis this long after the fault time: room for `for:`, group_wait and the hold, and
    # less than the 8 to 9 minutes between the study's faults.
    look: timedelta = timedelta(minutes=7)
    latency_threshold: str | None = None  # seconds; by system name otherwise
    config: str | None = None  # stormdrain configuration; the bundled nezha-config.yaml otherwise
    graph: str | None = None  # the day's metric/dependency.csv otherwise
    rules: str | None = None  # Prometheus rule file; the bundled nezha-rules.yaml otherwise


class _Recorder:
    """An evidence provider that keeps every answer, so a look can read the scores behind a diagnosis."""

    def __init__(self, provider: PrometheusEvidence):
        self.provider, self.answers = provider, {}

    def gather(self, request: EvidenceRequest) -> IncidentEvidence:
        answer = self.provider.gather(request)
        self.answers.setdefault(request.incident_id, []).append(answer)
        return answer


@dataclass
class _Run:
    day: Day
    graph: ServiceGraph
    config: Config
    timing: dict[str, float] = field(default_factory=dict)

    def lap(self, name: str, started: float) -> float:
        now = time.perf_counter()
        self.timing[name] = round(now - started, 2)
        return now


def run(day_dir: str | Path, faults: list[Fault], settings: Settings = Settings()) -> dict:
    """Run the benchmark on one recorded day; the result holds one record per fault and the figures."""
    localprom = local_prometheus()
    started = time.perf_counter()
    day = nezha_data.read_day(day_dir)
    config = load_config(settings.config or _bundled("nezha-config.yaml"))
    job = _Run(day, _graph(day, settings, config), config)
    clock = job.lap("read", started)
    with tempfile.TemporaryDirectory(prefix="nezha-tsdb-") as tsdb:
        types = {"container_cpu_usage_seconds": "counter"}
        localprom.backfill(localprom.openmetrics_text(nezha_data.series(day), types=types), tsdb)
        clock = job.lap("backfill", clock)
        with localprom.start_prometheus(tsdb, retention="100y") as prom:
            result = _through(prom.url, faults, job, settings, clock)
    job.timing["total"] = round(time.perf_counter() - started, 2)
    return result


def _through(url: str, faults: list[Fault], job: _Run, settings: Settings, clock: float) -> dict:
    """Rules, Alertmanager and the pipeline over the day in Prometheus, then a look at each fault time."""
    alerts = _alerts(url, job.day, settings)
    clock = job.lap("rules", clock)
    recorder = _Recorder(PrometheusEvidence(job.config.evidence, url, job.graph))
    versions = _replay(alerts, job.day, job, recorder)
    clock = job.lap("replay", clock)
    starts = _starts(alerts)
    records = [_look(fault, versions, starts, recorder, job, settings) for fault in faults]
    job.lap("look", clock)
    return _result(job, settings, records, len(alerts), recorder.provider.queries)


def _bundled(name: str) -> Path:
    return Path(str(resources.files("pipeline") / "data" / name))


def _graph(day: Day, settings: Settings, config: Config) -> ServiceGraph:
    """The given graph file, else the day's own dependency.csv without its node-IP rows."""
    depth = config.incidents.link_depth
    if settings.graph:
        return load_graph(settings.graph, depth)
    path = nezha_data.day_graph_file(day)
    if path is None:
        return ServiceGraph(GraphFile(nodes=day.services), depth)
    edges = nezha_data.graph_edges(path)
    return ServiceGraph(parse_graph({"edges": [{"from": a, "to": b} for a, b in edges]}, str(path)), depth)


def _alerts(url: str, day: Day, settings: Settings) -> list:
    threshold = settings.latency_threshold or LATENCY_THRESHOLDS.get(day.namespace, "0.2")
    rules = load_rules(settings.rules or _bundled("nezha-rules.yaml"), {"latency_threshold": threshold})
    return [life for rule in rules for life in evaluate(url, rule, day.start, day.end)]


def _replay(alerts: list, day: Day, job: _Run, recorder: _Recorder) -> list[Diagnosis]:
    """Alertmanager's webhooks through the same replay path as `stormdrain replay`."""
    from pipeline.cli import replay

    sent = notifications(alerts, ROUTE, until=day.end + timedelta(hours=1))
    lines = "".join(json.dumps({"received_at": at.isoformat(), "webhook": body}) + "\n" for at, body in sent)
    engine = Embedded(job.config, job.graph, load_catalog(), keep=("diagnoses",), evidence=recorder)
    versions: list[Diagnosis] = []
    replay(io.BytesIO(lines.encode()), engine, versions.append)
    job.timing["webhooks"] = len(sent)
    return versions


def _starts(alerts: list[AlertLife]) -> dict[str, list[datetime]]:
    """When each fingerprint's episodes began."""
    starts: dict[str, list[datetime]] = {}
    for life in alerts:
        starts.setdefault(life.fingerprint, []).append(life.starts_at)
    return starts


def _look(fault: Fault, versions: list[Diagnosis], starts: dict[str, list[datetime]], recorder: _Recorder,
          job: _Run, settings: Settings) -> dict:
    """What stormdrain said about the time of one fault, ranked, with the truth beside it when known."""
    until = fault.at + settings.look
    diagnosis = _diagnosis_at(fault.at, until, versions, starts)
    if diagnosis is None:
        return _metrics_only(fault, until, recorder, job)
    answer = _answer_at(recorder.answers.get(diagnosis.incident_id, []), until)
    ranked = fill([c.service for c in diagnosis.candidates], answer.scores if answer else {}, job.graph,
                  job.day.services)
    return _record(fault, ranked, diagnosis.confidence, "diagnosis", diagnosis, answer)


def _metrics_only(fault: Fault, until: datetime, recorder: _Recorder, job: _Run) -> dict:
    """No alert fired: the metric evidence alone, for every service of the day and the graph."""
    services = tuple(sorted(set(job.graph.nodes) | set(job.day.services)))
    answer = recorder.provider.gather(EvidenceRequest(incident_id=f"look-{fault.at:%Y%m%dT%H%M%S}", revision=0,
                                                      scope="default", services=services, onset=fault.at,
                                                      as_of=until))
    ranked = fill(_by_score(answer), answer.scores, job.graph, job.day.services)
    return _record(fault, ranked, _top_share(answer), "metrics only: no alert fired", None, answer)


def _diagnosis_at(since: datetime, until: datetime, versions: list[Diagnosis],
                  starts: dict[str, list[datetime]]) -> Diagnosis | None:
    """The incident with the most alerts that began firing in [since, until], as it stood at `until`.

    An alert that began before the fault time cannot be the fault's: Prometheus
    sends an alert when it has held for its `for:`, after the change began. Nor
    can an incident opened before it: an incident that opened in the span is the
    fault's page, and one that only took some alerts in it counts when none did.
    """
    latest: dict[str, Diagnosis] = {}
    for d in versions:
        if d.updated_at <= until:
            latest[d.incident_id] = d
    best, best_key = None, None
    for d in latest.values():
        if d.updated_at < since:
            continue  # over before the fault: its fingerprints' later episodes are another incident's
        began = [t for fp in d.fingerprints for t in starts.get(fp, ()) if since <= t <= until]
        opened = since <= d.opened_at <= until
        key = (opened, len(began), -min(began).timestamp(), d.incident_id) if began else None
        if key is not None and (best_key is None or key > best_key):
            best, best_key = d, key
    return best


def _answer_at(answers: list[IncidentEvidence], until: datetime) -> IncidentEvidence | None:
    usable = [a for a in answers if a.at <= until]
    return usable[-1] if usable else None


def _by_score(answer: IncidentEvidence) -> list[str]:
    return [s for s, _ in sorted(answer.scores.items(), key=lambda kv: (-kv[1], kv[0]))]


def _top_share(answer: IncidentEvidence) -> float:
    """The softmax share of the best evidence score: a posterior over the services looked at."""
    if not answer.scores:
        return 0.0
    top = max(answer.scores.values())
    total = sum(math.exp(v - top) for v in answer.scores.values())
    return round(1.0 / total, 3)


def fill(ranked: list[str], scores: dict[str, float], graph: ServiceGraph, services: list[str],
         at_least: int = MIN_CANDIDATES) -> list[str]:
    """The ranking, then the other services by evidence score, then by call hops from the top, then by name."""
    out = list(dict.fromkeys(ranked))
    out += [s for s, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])) if s not in out]
    if len(out) < at_least and out and out[0] in graph:
        hops = _undirected_hops(graph, out[0])
        out += [s for s in sorted(hops, key=lambda s: (hops[s], s)) if s not in out]
    out += [s for s in sorted(set(graph.nodes) | set(services)) if s not in out]
    return out


def _undirected_hops(graph: ServiceGraph, source: str) -> dict[str, int]:
    """Call hops from a service either way along the edges (breadth first)."""
    neighbours: dict[str, set[str]] = {}
    for a, b in graph.edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    hops, frontier = {source: 0}, [source]
    while frontier:
        reached = sorted({n for node in frontier for n in neighbours.get(node, ()) if n not in hops})
        hops.update((n, hops[frontier[0]] + 1) for n in reached)
        frontier = reached
    return hops


def _record(fault: Fault, ranked: list[str], confidence: float, source: str, diagnosis: Diagnosis | None,
            answer: IncidentEvidence | None) -> dict:
    truth = fault.service
    return {
        "fault_at": fault.at.isoformat(),
        "candidates": ranked,
        "confidence": confidence,
        "posterior": diagnosis.candidates[0].score if diagnosis and diagnosis.candidates else None,
        "source": source,
        "incident_id": diagnosis.incident_id if diagnosis else None,
        "version": diagnosis.version if diagnosis else None,
        "evidence_status": answer.status if answer else None,
        "evidence": [i.text for i in answer.items[:5]] if answer else [],
        "evidence_scores": dict(sorted(answer.scores.items(), key=lambda kv: -kv[1])[:5]) if answer else {},
        "true_service": truth,
        "fault_type": fault.kind,
        "fault_class": fault.fault_class,
        "rank_of_true": ranked.index(truth) + 1 if truth in ranked else None,
    }


def figures(records: list[dict]) -> dict[str, dict]:
    """AS@1, AS@3, AS@5 over all labelled faults, the resource and code faults apart, and by fault type."""
    labelled = [r for r in records if r["true_service"]]
    groups = {"all": labelled, "resource": [r for r in labelled if r["fault_class"] == "resource"],
              "code": [r for r in labelled if r["fault_class"] == "code"]}
    for kind in sorted({r["fault_type"] for r in labelled if r["fault_type"]}):
        groups[kind] = [r for r in labelled if r["fault_type"] == kind]
    return {name: _at_k(rows) for name, rows in groups.items() if rows}


def outcomes(records: list[dict]) -> list[Outcome]:
    """The page of each labelled fault, right or wrong, with its confidence; a fault no alert announced had none."""
    return [Outcome(posterior=r["posterior"], confidence=r["confidence"], right=r["rank_of_true"] == 1)
            for r in records if r["true_service"] and r["source"] == "diagnosis"]


def _at_k(rows: list[dict]) -> dict:
    n = len(rows)
    hit = lambda k: sum(1 for r in rows if r["rank_of_true"] is not None and r["rank_of_true"] <= k)  # noqa: E731
    return {"faults": n, "as_at_1": round(hit(1) / n, 3), "as_at_3": round(hit(3) / n, 3),
            "as_at_5": round(hit(5) / n, 3)}


def _result(job: _Run, settings: Settings, records: list[dict], alerts: int, queries: int) -> dict:
    return {
        "day": str(job.day.directory), "system": job.day.namespace, "services": len(job.day.services),
        "graph": {"nodes": len(job.graph), "edges": len(job.graph.edges)},
        "settings": {"look_s": settings.look.total_seconds(),
                     "latency_threshold": settings.latency_threshold
                     or LATENCY_THRESHOLDS.get(job.day.namespace, "0.2")},
        "alerts": alerts, "evidence_queries": queries, "timing_s": job.timing,
        "figures": figures(records), "calibration": calibration_figures(outcomes(records)),
        "published": PUBLISHED.get(job.day.namespace, {}), "faults": records,
    }


def table(result: dict) -> str:
    """The figures beside the published ones, as a terminal table."""
    rows = [f"{result['system']} ({result['day']}): {len(result['faults'])} faults, {result['alerts']} alerts, "
            f"{result['timing_s']['total']:.0f} s", f"{'':46}{'n':>4}{'AS@1':>8}{'AS@3':>8}{'AS@5':>8}"]
    for name, f in result["figures"].items():
        rows.append(f"{'stormdrain, ' + name + ' faults':46}{f['faults']:>4}{f['as_at_1']:>8.2f}"
                    f"{f['as_at_3']:>8.2f}{f['as_at_5']:>8.2f}")
    for name, (a1, a3, a5) in result["published"].items():
        rows.append(f"{name + ' (study, all faults)':46}{'':>4}{a1 / 100:>8.2f}{a3 / 100:>8.2f}{a5 / 100:>8.2f}")
    return "\n".join(rows)
