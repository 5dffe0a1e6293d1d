"""The stormdrain command line: demo and replay here, Kafka commands from the agents package.

Commands beyond the core register under the `stormdrain.commands` entry point
group, so the pure core never imports the Kafka runtime.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from importlib.metadata import entry_points
from typing import IO, Callable

from pipeline.alerts import InputError
from pipeline.arguments import count
from pipeline.config import Config, load_config
from pipeline.diagnose import Diagnosis
from pipeline.embedded import Embedded
from pipeline import sources, tune, whatif
from pipeline.bench import history as bench_history
from pipeline.graph import ServiceGraph, load_graph
from pipeline.history import open_store
from pipeline.render import render_page
from pipeline.replay import read_lines, write_ndjson, write_output
from pipeline.runbooks import Catalog, load_catalog
from pipeline.summary import ReplaySummary

log = logging.getLogger("stormdrain")
MAX_SHOWN_ERRORS = 20
REPLAY_CHUNK = 1024
# The pipeline allocates many small objects that live on (alert states, incidents, versions); collecting
# the youngest generation every 700 allocations, CPython's default, cost 5 to 19 % of a replay.
GC_YOUNG_THRESHOLD = 50_000
REPEAT_SECONDS = 30.0  # the same log message at most once in this time


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    gc.freeze()  # what is loaded by now lives as long as the process: never scan it again
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(Repeats(REPEAT_SECONDS))
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except InputError as exc:
        print(f"stormdrain: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


class Repeats(logging.Filter):
    """A message said again within `seconds` is dropped, and counted in the next one let through: a Kafka
    client retrying every few milliseconds while the broker is away says so once in a while, not 30 times a second."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.last: dict[str, float] = {}
        self.dropped: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if len(self.last) > 1000:
            self.last.clear()
        if record.created - self.last.get(text, float("-inf")) < self.seconds:
            self.dropped[text] = self.dropped.get(text, 0) + 1
            return False
        self.last[text] = record.created
        dropped = self.dropped.pop(text, 0)
        if dropped:
            record.msg, record.args = f"{text} (repeated {dropped} times since it was last logged)", ()
        return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stormdrain", description="One page for an alert storm.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    demo = sub.add_parser("demo", help="replay the bundled Black Friday storm and print its page")
    demo.add_argument("--out", help="also write every diagnosis version as NDJSON here")
    demo.set_defaults(run=run_demo)
    replay = sub.add_parser("replay", help="replay recorded alerts through the pipeline")
    sources.add_source_options(replay)
    add_pipeline_options(replay)
    replay.add_argument("--out", required=True, help="where to write diagnosis versions as NDJSON (- for stdout)")
    replay.add_argument("--strict", action="store_true", help="stop at the first line that cannot be read")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    replay.set_defaults(run=run_replay)
    bench = sub.add_parser("bench", help="benchmarks of root-cause accuracy, pages and speed")
    bench_sub = bench.add_subparsers(title="benchmarks", metavar="BENCH")
    storms = bench_sub.add_parser("storms", help="synthetic storms on service graphs, scored against their faults")
    storms.add_argument("graphs", nargs="+", help="service graph files (CSV source,target or the JSON format)")
    storms.add_argument("--seeds", default="100-103",
                        help="seeds of the histories per graph, as FIRST-LAST (default 100-103, held out from tuning)")
    storms.add_argument("--fit", action="store_true",
                        help="fit the confidence calibration on these histories and print the config to use")
    storms.add_argument("--scenarios", type=count, default=60, help="storms per history (default 60)")
    storms.add_argument("--config", help="configuration file (YAML or JSON)")
    storms.add_argument("--out", help="write the figures as JSON here")
    storms.set_defaults(run=run_bench_storms)
    bench_history.add_command(bench_sub)
    tune.add_command(sub)
    whatif.add_command(sub)
    nezha = bench_sub.add_parser("nezha", help="a recorded day of the Nezha study through Prometheus and the "
                                               "pipeline, scored against its injected faults")
    nezha.add_argument("day", help="a day directory: metric/<pod>_metric.csv.gz files and fault_list.json")
    nezha.add_argument("--faults", help="fault list (default: DAY/fault_list.json); times only is enough")
    nezha.add_argument("--graph", help="service graph (default: the day's metric/dependency.csv)")
    nezha.add_argument("--config", help="stormdrain configuration (default: the bundled nezha-config.yaml)")
    nezha.add_argument("--rules", help="Prometheus rule file (default: the bundled nezha-rules.yaml)")
    nezha.add_argument("--latency-threshold", help="seconds, for the latency rules (default: 0.2 for "
                                                   "online-boutique, 0.3 for train-ticket)")
    nezha.add_argument("--look", default="7m", help="read the diagnosis this long after each fault (default 7m)")
    nezha.add_argument("--out", required=True, help="write the per-fault records and figures as JSON here")
    nezha.set_defaults(run=run_bench_nezha)
    for plugin in entry_points(group="stormdrain.commands"):
        plugin.load()(sub)
    return parser


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--graph", help="service graph: JSON or YAML {nodes, edges: [{from, to}]}, or CSV source,target")
    parser.add_argument("--config", help="configuration file (YAML or JSON); defaults otherwise")
    parser.add_argument("--runbooks", help="runbook catalog (default: the bundled playbooks/runbooks.yaml)")
    parser.add_argument("--incident-history", metavar="DIR",
                        help="a RocksDB directory that keeps past incidents between runs")
    parser.add_argument("--prometheus", metavar="URL", help="add metric evidence from this Prometheus "
                                                            "(default: evidence.prometheus_url of the config)")
    parser.add_argument("--discover-graph", metavar="URL", help="merge call edges seen by this Prometheus "
                                                                "(service-graph and mesh series) into the graph")


def load_parts(args: argparse.Namespace) -> tuple[Config, ServiceGraph, Catalog]:
    config = load_config(args.config)
    graph = load_graph(args.graph, config.incidents.link_depth)
    if getattr(args, "discover_graph", None):
        from datetime import datetime, timezone

        from pipeline.metrics import GraphDiscovery

        discovery = GraphDiscovery(args.discover_graph, config.evidence, graph)
        graph = discovery.current(datetime.now(timezone.utc))  # the CLI may read the clock; the core never does
        log.info("graph: %d edges discovered at %s, %d nodes in all", len(discovery.edges), args.discover_graph,
                 len(graph))
    return config, graph, load_catalog(args.runbooks)


def evidence_provider(args: argparse.Namespace, config: Config, graph: ServiceGraph):
    """The Prometheus evidence provider when a URL is given (flag or config), else none."""
    url = getattr(args, "prometheus", None) or config.evidence.prometheus_url
    if not url:
        return None
    from pipeline.metrics import PrometheusEvidence

    return PrometheusEvidence(config.evidence, url, graph)


def run_demo(args: argparse.Namespace) -> int:
    from pipeline.bench import demo

    config, graph, catalog = load_config(None), load_graph(demo.GRAPH), load_catalog()
    engine = Embedded(config, graph, catalog, keep=("diagnoses",))
    versions: list[Diagnosis] = []
    with open(demo.STORM, "rb") as stream:
        summary = replay(stream, engine, versions.append)
    if args.out:
        with write_ndjson(args.out) as out:
            for diagnosis in versions:
                out.write(diagnosis.model_dump_json() + "\n")
    print(summary.headline() + "\n")
    for diagnosis in summary.paging(versions):
        print(render_page(diagnosis, catalog) + "\n")
    return 0


def run_bench_storms(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.bench import synthetic
    from pipeline.bench.storms import StormSettings
    from pipeline.calibration import fit_platt, reliability_text

    first, _, last = args.seeds.partition("-")
    try:
        seeds = range(int(first), int(last or first) + 1)
    except ValueError:
        raise InputError("--seeds", f"expected FIRST-LAST, got {args.seeds!r}") from None
    if not seeds:
        raise InputError("--seeds", f"the range {args.seeds!r} is empty: LAST comes before FIRST")
    result, ours = synthetic.run([Path(p) for p in args.graphs], seeds, load_config(args.config),
                                 StormSettings(scenarios=args.scenarios))
    print(synthetic.table(result))
    print("\n" + reliability_text(ours.outcomes, "confidence reliability (first page and last version of each fault)"))
    if args.fit:
        intercept, slope = fit_platt(ours.outcomes)
        print(f"\nfitted calibration:\nrank:\n  calibration: {{intercept: {intercept}, slope: {slope}}}")
    if args.out:
        write_output(args.out, json.dumps(result, indent=2) + "\n")
    return 0


def run_bench_nezha(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.bench import nezha
    from pipeline.bench.nezha_data import read_faults
    from pipeline.calibration import reliability_text
    from pipeline.config import parse_duration

    try:
        look = parse_duration(args.look)
    except ValueError as exc:
        raise InputError("--look", str(exc)) from None
    threshold = args.latency_threshold
    if threshold is not None and not _positive_number(threshold):
        raise InputError("--latency-threshold", f"expected a number of seconds, got {threshold[:40]!r}")
    faults = read_faults(args.faults or Path(args.day) / "fault_list.json")
    settings = nezha.Settings(look=look, latency_threshold=args.latency_threshold, config=args.config,
                              graph=args.graph, rules=args.rules)
    result = nezha.run(args.day, faults, settings)
    print(nezha.table(result))
    outcomes = nezha.outcomes(result["faults"])
    if outcomes:
        print("\n" + reliability_text(outcomes, f"confidence reliability (the page of each labelled fault: "
                                                 f"{len(outcomes)} of {len(result['faults'])} faults)"))
    write_output(args.out, json.dumps(result, indent=2) + "\n")
    return 0


def _positive_number(text: str) -> bool:
    try:
        return 0 < float(text) < 1e9
    except ValueError:
        return False


def run_replay(args: argparse.Namespace) -> int:
    config, graph, catalog = load_parts(args)
    sources.check_republish(args.republish)
    past = open_store(args.incident_history)
    engine = Embedded(config, graph, catalog, keep=("diagnoses", "alerts.dlq"), history=past,
                      evidence=evidence_provider(args, config, graph))
    stream = sources.open_source(args)
    kept: list[Diagnosis] = []  # only to republish
    try:
        with stream, write_ndjson(args.out) as out:
            def emit(diagnosis: Diagnosis) -> None:
                out.write(diagnosis.model_dump_json() + "\n")
                if args.republish:
                    kept.append(diagnosis)

            summary = replay(stream, engine, emit, strict=args.strict, progress=_progress(args, stream))
    except OSError as exc:  # opening was checked: this is writing the diagnoses, or the disk under the input
        raise InputError(str(exc.filename or args.out), f"replay stopped: {exc.strerror or exc}") from None
    finally:
        if hasattr(past, "close"):
            past.close()
    print(summary.report(), file=sys.stderr)
    if args.republish:
        count = sources.kafka_plugin().republish(args.bootstrap, args.republish, kept)
        print(f"{'republished':>20}  {count} diagnosis versions to {args.republish}", file=sys.stderr)
    return 1 if summary.cut_at is not None or (summary.errors and args.strict) else 0


def replay(stream: IO[bytes], engine: Embedded, emit: Callable[[Diagnosis], object],
           strict: bool = False, progress: Callable[[int], object] | None = None,
           name_errors: bool = True) -> ReplaySummary:
    """Feed every readable line through the engine; emit each diagnosis version as it appears.

    Lines go in by chunks: the operators release records by event time, so
    chunking changes nothing but the per-call overhead.
    """
    summary = ReplaySummary()
    chunk: list = []
    for line in read_lines(stream, engine.identity.scope):
        if progress:
            progress(line.size)
        if line.error is not None:
            summary.error(line.error)
            if line.cut:
                summary.cut_at = line.number
            if name_errors and summary.errors <= MAX_SHOWN_ERRORS:
                log.warning("skipped %s", line.error)
            if strict:
                break
            continue
        summary.line(line.kind, len(line.records))
        chunk.extend(line.records)
        if len(chunk) >= REPLAY_CHUNK:
            engine.pipe_many(chunk)
            chunk = []
            _drain(engine, summary, emit)
    engine.pipe_many(chunk)
    engine.flush()
    _drain(engine, summary, emit)
    summary.counts = engine.counts()
    return summary


def _drain(engine: Embedded, summary: ReplaySummary, emit: Callable[[Diagnosis], object]) -> None:
    for diagnosis in engine.read("diagnoses"):
        summary.diagnosis(diagnosis)
        emit(diagnosis)
    for dead in engine.read("alerts.dlq"):
        summary.dead_letter(dead)


def _progress(args: argparse.Namespace, stream: IO[bytes]) -> Callable[[int], object] | None:
    if args.no_progress or not sys.stderr.isatty() or args.input == "-":
        return None
    from tqdm import tqdm

    total = None
    try:
        import os

        total = os.fstat(stream.fileno()).st_size if not args.input.endswith(".gz") else None
    except (OSError, AttributeError, ValueError):
        total = None
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="replay", file=sys.stderr, leave=False)
    return bar.update


if __name__ == "__main__":
    sys.exit(main())
