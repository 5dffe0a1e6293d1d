"""The synthetic benchmark: storms on real graphs, scored against the faults that made them.

For each graph it replays the generated webhooks through the embedded runtime
and reports AC@1 and AC@3 of the root cause (at the first page and at the end),
pages per fault, the share of faults that became exactly one incident, replay
speed, and the same figures for the origin story's heuristic: trust an explicit
root-cause label, else pick the affected service with the most affected callers.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from pipeline.bench.storms import Fault, Storm, StormSettings, generate
from pipeline.calibration import Outcome, calibration_figures
from pipeline.config import Config
from pipeline.diagnose import Diagnosis
from pipeline.embedded import Embedded
from pipeline.graph import ServiceGraph, load_graph
from pipeline.identity import Identity
from pipeline.runbooks import Catalog, load_catalog

ORIGIN_WINDOW = timedelta(minutes=5)
NEAR = timedelta(minutes=50)


@dataclass
class Score:
    """Counts that add up across graphs and seeds; `figures` turns them into rates."""

    faults: int = 0
    top1: int = 0
    top3: int = 0
    first_page_top1: int = 0
    one_incident: int = 0
    pages: int = 0
    alerts: int = 0
    seconds: float = 0.0
    misses: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)  # the first page and the last version of each fault

    def add(self, other: "Score") -> None:
        for name in ("faults", "top1", "top3", "first_page_top1", "one_incident", "pages", "alerts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds
        self.misses += other.misses
        self.outcomes += other.outcomes

    def figures(self) -> dict[str, float]:
        n = max(self.faults, 1)
        out = {
            "faults": self.faults,
            "ac_at_1": round(self.top1 / n, 3),
            "ac_at_3": round(self.top3 / n, 3),
            "ac_at_1_first_page": round(self.first_page_top1 / n, 3),
            "pages_per_fault": round(self.pages / n, 3),
            "one_incident_share": round(self.one_incident / n, 3),
        }
        if self.seconds:
            out["alerts"] = self.alerts
            out["alerts_per_second"] = round(self.alerts / self.seconds)
        return out | calibration_figures(self.outcomes)


def run_graph(graph: ServiceGraph, seed: int, config: Config, catalog: Catalog,
              settings: StormSettings = StormSettings()) -> tuple[Score, Score]:
    """Score stormdrain and the origin heuristic on one generated history."""
    storm = generate(graph, seed, settings)
    versions, seconds, alerts = replay_envelopes(storm, config, graph, catalog)
    ours = score_diagnoses(storm, versions)
    ours.seconds, ours.alerts = seconds, alerts
    return ours, score_origin(storm, graph, config)


def replay_envelopes(storm: Storm, config: Config, graph: ServiceGraph,
                     catalog: Catalog) -> tuple[list[Diagnosis], float, int]:
    """Replay the storm's NDJSON through the CLI's replay path; time it."""
    from pipeline.cli import replay

    data = "".join(json.dumps(e) + "\n" for e in storm.envelopes).encode()
    engine = Embedded(config, graph, catalog, keep=("diagnoses",))
    versions: list[Diagnosis] = []
    started = time.perf_counter()
    summary = replay(io.BytesIO(data), engine, versions.append)
    return versions, time.perf_counter() - started, summary.alerts


def score_diagnoses(storm: Storm, versions: list[Diagnosis]) -> Score:
    latest: dict[str, Diagnosis] = {}
    first_page: dict[str, Diagnosis] = {}
    for d in versions:
        latest[d.incident_id] = d
        if d.paged_at is not None and d.incident_id not in first_page:
            first_page[d.incident_id] = d
    score = Score(faults=len(storm.faults), pages=len(first_page))
    for fault in storm.faults:
        # Fingerprints recur across storms (same labels), so look only at incidents near the fault.
        near = [d for d in latest.values() if abs(d.opened_at - fault.at) < NEAR]
        incident_of = {fp: d.incident_id for d in near for fp in d.fingerprints}
        counts = Counter(incident_of[fp] for fp in fault.fingerprints if fp in incident_of)
        if not counts:
            score.misses.append(f"{fault.root}: no incident")
            continue
        main = counts.most_common(1)[0][0]
        others = _other_faults(storm.faults, fault)
        if len(counts) == 1 and not any(incident_of.get(fp) == main for fp in others):
            score.one_incident += 1
        ranked = [c.service for c in latest[main].candidates]
        score.top1 += ranked[:1] == [fault.root]
        score.top3 += fault.root in ranked[:3]
        page = first_page.get(main, latest[main])
        score.first_page_top1 += [c.service for c in page.candidates[:1]] == [fault.root]
        score.outcomes += [_outcome(d, fault.root) for d in {id(page): page, id(latest[main]): latest[main]}.values()]
        if ranked[:1] != [fault.root]:
            score.misses.append(f"{fault.root}{' (silent)' if fault.silent else ''}: named {ranked[:3]}")
    return score


def _outcome(diagnosis: Diagnosis, root: str) -> Outcome:
    top = diagnosis.candidates[0] if diagnosis.candidates else None
    return Outcome(posterior=top.score if top else 0.0, confidence=diagnosis.confidence,
                   right=top is not None and top.service == root)


def _other_faults(faults: list[Fault], fault: Fault) -> set[str]:
    return {fp for f in faults if f is not fault and abs(f.at - fault.at) < NEAR for fp in f.fingerprints}


def score_origin(storm: Storm, graph: ServiceGraph, config: Config) -> Score:
    """The origin heuristic: time windows, an explicit label, else the most affected callers."""
    identity = Identity(config.identity)
    groups: list[list] = []
    for alert in sorted(storm.alerts, key=lambda a: a.starts_at):
        if groups and alert.starts_at - groups[-1][-1].starts_at <= ORIGIN_WINDOW:
            groups[-1].append(alert)
        else:
            groups.append([alert])
    score = Score(faults=len(storm.faults),
                  pages=sum(1 for g in groups if any(a.labels.get("severity") == "critical" for a in g)))
    for fault in storm.faults:
        group_of = {a.fingerprint: i for i, g in enumerate(groups) for a in g if abs(a.starts_at - fault.at) < NEAR}
        counts = Counter(group_of[fp] for fp in fault.fingerprints)
        main = counts.most_common(1)[0][0]
        if len(counts) == 1 and not any(group_of.get(fp) == main for fp in _other_faults(storm.faults, fault)):
            score.one_incident += 1
        ranked = _origin_rank(groups[main], graph, identity)
        score.top1 += ranked[:1] == [fault.root]
        score.top3 += fault.root in ranked[:3]
        score.first_page_top1 += ranked[:1] == [fault.root]
    return score


def _origin_rank(group: list, graph: ServiceGraph, identity: Identity) -> list[str]:
    services = {identity.service(a.labels) for a in group} - {None}
    labelled = [identity.service(a.labels) for a in group if a.labels.get("root_cause_candidate") == "true"]
    callers = defaultdict(int)
    for service in services:
        node = graph.node_for(service)
        for caller in graph.callers(node) if node else []:
            callers[service] += caller in services
    ranked = sorted(services, key=lambda s: (-callers[s], s))
    first = [s for s in dict.fromkeys(labelled) if s]
    return first + [s for s in ranked if s not in first]


def run(graph_paths: list[Path], seeds: range, config: Config, settings: StormSettings) -> tuple[dict, Score]:
    """Every graph, one history per seed: per-graph and overall figures for both methods."""
    catalog = load_catalog()
    result: dict = {"settings": settings.__dict__, "seeds": [seeds.start, seeds.stop - 1], "graphs": {}}
    total_ours, total_origin = Score(), Score()
    for path in graph_paths:
        graph = load_graph(path, config.incidents.link_depth)
        ours, origin = Score(), Score()
        for seed in seeds:
            a, b = run_graph(graph, seed, config, catalog, settings)
            ours.add(a)
            origin.add(b)
        result["graphs"][path.stem] = {"stormdrain": ours.figures(), "origin_heuristic": origin.figures(),
                                       "misses": ours.misses[:10]}
        total_ours.add(ours)
        total_origin.add(origin)
    result["overall"] = {"stormdrain": total_ours.figures(), "origin_heuristic": total_origin.figures()}
    return result, total_ours


def table(result: dict) -> str:
    """The figures as a terminal table, one row per graph and method."""
    head = f"{'graph':<28}{'method':<18}{'AC@1':>7}{'AC@3':>7}{'AC@1 pg1':>9}{'pages/f':>9}{'1 inc':>7}{'alerts/s':>10}"
    rows = [head, "-" * len(head)]
    items = list(result["graphs"].items()) + [("overall", result["overall"])]
    for name, methods in items:
        for method in ("stormdrain", "origin_heuristic"):
            f = methods[method]
            rows.append(f"{name:<28}{method:<18}{f['ac_at_1']:>7.3f}{f['ac_at_3']:>7.3f}"
                        f"{f['ac_at_1_first_page']:>9.3f}{f['pages_per_fault']:>9.2f}"
                        f"{f['one_incident_share']:>7.2f}{f.get('alerts_per_second', ''):>10}")
    return "\n".join(rows)
