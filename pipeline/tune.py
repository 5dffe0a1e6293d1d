"""stormdrain tune: one history under many configurations, side by side.

A grid (`--grid incidents.hold=30s,2m --grid gap=5m,15m`) or a list of config
files gives the variants. Each variant replays the whole history through the
same replay path as `stormdrain replay`, one process per core, and the table
says what it would have done: pages, incidents, median alerts per page, pages
at night in a given time zone, and AC@1 of the root cause where the history
carries the truth (a labelled benchmark, or people's feedback).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.alerts import InputError, validation_error
from pipeline.arguments import count
from pipeline.bench.history import truth_path
from pipeline.bench.storms import Fault, Storm
from pipeline.config import Config, load_config
from pipeline.diagnose import Diagnosis
from pipeline.replay import check_writable, write_output

MAX_VARIANTS = 256
PROGRESS_BYTES = 1 << 20  # a worker reports its progress every MiB


@dataclass(frozen=True)
class Variant:
    """One configuration to try: a name for the table and the full config as plain data."""

    name: str
    config: dict


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to replay one variant, small enough to send to another process."""

    history: str
    graph: str | None
    runbooks: str | None
    variant: Variant
    zone: str = "UTC"
    night: tuple[int, int] = (22, 7)
    faults: list[Fault] | None = None
    keep_versions: bool = False
    name_errors: bool = True  # log each line it cannot read; only the first job does, as all read the same lines


@dataclass
class Outcome:
    """What one variant did with the history."""

    name: str
    alerts: int = 0
    pages: int = 0
    incidents: int = 0
    alerts_per_page: float | None = None  # median unique alerts of a paging incident
    night_pages: int = 0
    ac_at_1: float | None = None
    faults: int = 0
    seconds: float = 0.0
    skipped_lines: int = 0
    versions: list[Diagnosis] | None = field(default=None, repr=False)

    def figures(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "versions"}


# -- variants ------------------------------------------------------------------


def variants(base: Config, configs: list[str], grid: list[str]) -> list[Variant]:
    """The config files (or the base) crossed with the grid; each checked before anything runs."""
    bases = [(Path(p).stem, load_config(p).model_dump()) for p in configs] or [("", base.model_dump())]
    axes = [parse_grid_item(item) for item in grid]
    out = []
    for (stem, data), values in itertools.product(bases, itertools.product(*[a[1] for a in axes])):
        merged = _copy(data)
        for (path, _), value in zip(axes, values):
            _set(merged, path, value)
        name = " ".join([stem] * bool(stem) + [f"{path[-1]}={_show(v)}" for (path, _), v in zip(axes, values)])
        out.append(Variant(name or "base", _checked(merged, name or "base")))
        if len(out) > MAX_VARIANTS:
            raise InputError("--grid", f"over {MAX_VARIANTS} variants; narrow the grid")
    return out


def parse_grid_item(text: str) -> tuple[tuple[str, ...], list[Any]]:
    """`key=v1,v2`: the config path and its values (YAML each: 30s, 0.1, [critical, page])."""
    key, sep, values = text.partition("=")
    if not sep or not values.strip():
        raise InputError("--grid", f"{text[:60]!r} is not key=value1,value2")
    path = resolve_key(key.strip())
    try:
        return path, [yaml.safe_load(v) for v in split_values(values)]
    except yaml.YAMLError as exc:
        raise InputError("--grid", f"a value of {key} is not readable: {exc}") from None


def resolve_key(key: str) -> tuple[str, ...]:
    """A dotted config path (incidents.hold), or a leaf name that only one section has (hold)."""
    parts = tuple(key.split("."))
    if _exists(Config, parts):
        return parts
    if len(parts) == 1:
        found = [(name, key) for name, f in Config.model_fields.items() if key in f.annotation.model_fields]
        if len(found) == 1:
            return found[0]
        if found:
            raise InputError("--grid", f"{key!r} is in several sections: say {' or '.join('.'.join(f) for f in found)}")
    raise InputError("--grid", f"no config key {key!r} (keys look like incidents.hold, page.severities, rank.p_noise)")


def split_values(text: str) -> list[str]:
    """Split on commas outside brackets, so a list value stays whole."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in parts + [current] if p.strip()]


def _exists(model: Any, parts: tuple[str, ...]) -> bool:
    for part in parts:
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        if part not in fields:
            return False
        model = fields[part].annotation
    return True


def _copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _copy(v) for k, v in data.items()}
    return list(data) if isinstance(data, (list, tuple)) else data


def _set(data: dict, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
    data[path[-1]] = value


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _checked(data: dict, name: str) -> dict:
    try:
        Config.model_validate(data)
    except ValidationError as exc:
        error = validation_error(exc)
        raise InputError(f"variant {name}", f"{error.field}: {error.reason}") from None
    return data


# -- running -------------------------------------------------------------------

_progress_queue: Any = None


def run_job(job: Job) -> Outcome:
    """Replay the history under one variant and measure what it did (runs in a worker)."""
    from pipeline.cli import replay
    from pipeline.embedded import Embedded
    from pipeline.graph import load_graph
    from pipeline.replay import open_input
    from pipeline.runbooks import load_catalog

    config = Config.model_validate(job.variant.config)
    engine = Embedded(config, load_graph(job.graph, config.incidents.link_depth), load_catalog(job.runbooks),
                      keep=("diagnoses",))
    versions: list[Diagnosis] = []
    started = time.perf_counter()
    with open_input(job.history) as stream, _Reporter() as report:
        summary = replay(stream, engine, versions.append, progress=report, name_errors=job.name_errors)
    outcome = measure(job, versions, summary.alerts)
    outcome.seconds, outcome.skipped_lines = time.perf_counter() - started, summary.errors
    outcome.versions = versions if job.keep_versions else None
    return outcome


def measure(job: Job, versions: list[Diagnosis], alerts: int) -> Outcome:
    """Pages, incidents, alerts per page, night pages and AC@1 from the diagnosis versions."""
    from pipeline.bench.synthetic import score_diagnoses

    latest = {d.incident_id: d for d in versions}
    paging = [d for d in latest.values() if d.paged_at is not None]
    zone, (start, end) = ZoneInfo(job.zone), job.night
    night = [d for d in paging if _at_night(d.paged_at.astimezone(zone).hour, start, end)]
    outcome = Outcome(job.variant.name, alerts, len(paging), len(latest), night_pages=len(night))
    if paging:
        outcome.alerts_per_page = statistics.median(d.unique_alerts for d in paging)
    if job.faults:
        score = score_diagnoses(Storm(job.faults, [], []), versions)
        outcome.ac_at_1, outcome.faults = score.top1 / score.faults, score.faults
    return outcome


def _at_night(hour: int, start: int, end: int) -> bool:
    return start <= hour or hour < end if start > end else start <= hour < end


def run_jobs(jobs: list[Job], processes: int, progress: Callable[[int], object] | None = None) -> list[Outcome]:
    """Run every job, `processes` at a time; the outcomes come back in the order of the jobs."""
    global _progress_queue
    jobs = [job if i == 0 else replace(job, name_errors=False) for i, job in enumerate(jobs)]
    if processes <= 1 or len(jobs) == 1:
        _progress_queue = _Direct(progress)
        return [run_job(job) for job in jobs]
    context = multiprocessing.get_context("fork")  # workers inherit the loaded modules: no re-import per job
    queue = context.Queue()
    with context.Pool(processes, initializer=_start_worker, initargs=(queue,)) as pool:
        reader = threading.Thread(target=_drain, args=(queue, progress), daemon=True)
        reader.start()  # after the fork: no thread of the parent is copied into a worker
        outcomes = pool.map(run_job, jobs, chunksize=1)
    queue.put(None)
    reader.join()
    return outcomes


class _Direct:
    """The progress queue of an in-process run: straight to the callback."""

    def __init__(self, progress: Callable[[int], object] | None):
        self.progress = progress

    def put(self, n: int) -> None:
        if self.progress:
            self.progress(n)


class _Reporter:
    """A replay progress callback that sends bytes read to the parent in large steps."""

    def __init__(self):
        self.pending = 0

    def __call__(self, n: int) -> None:
        self.pending += n
        if self.pending >= PROGRESS_BYTES:
            self._send()

    def _send(self) -> None:
        if _progress_queue is not None and self.pending:
            _progress_queue.put(self.pending)
        self.pending = 0

    def __enter__(self) -> "_Reporter":
        return self

    def __exit__(self, *exc: object) -> None:
        self._send()


def _start_worker(queue: Any) -> None:
    global _progress_queue
    _progress_queue = queue


def _drain(queue: Any, progress: Callable[[int], object] | None) -> None:
    while (n := queue.get()) is not None:
        if progress:
            progress(n)


# -- the command ---------------------------------------------------------------


def add_command(sub: Any) -> None:
    """Register `stormdrain tune`."""
    tune = sub.add_parser("tune", help="replay one history under several configurations and compare them")
    tune.add_argument("history", help="NDJSON history (a file, .gz ok), e.g. one replay --save-history wrote")
    tune.add_argument("--graph", help="service graph file")
    tune.add_argument("--runbooks", help="runbook catalog (default: the bundled one)")
    tune.add_argument("--config", help="base configuration the grid varies (default: the defaults)")
    tune.add_argument("--configs", nargs="+", default=[], metavar="FILE", help="configuration files to compare")
    tune.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                      help="a config key and values to try (repeatable; keys: incidents.hold, gap, link_depth, "
                           "page.severities, rank.p_noise, ...)")
    add_scoring_options(tune)
    tune.add_argument("--jobs", type=count, default=os.cpu_count() or 1, help="processes (default: all cores)")
    tune.add_argument("--out", help="also write the figures as JSON here")
    tune.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    tune.set_defaults(run=run_tune)


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tz", default=os.environ.get("TZ") or "UTC", help="time zone of 'night' (default: $TZ or UTC)")
    parser.add_argument("--night", default="22-7", help="night hours, from-to in local time (default %(default)s)")
    parser.add_argument("--truth", help="labelled faults (default: HISTORY.truth.json beside the history, if any)")
    parser.add_argument("--feedback", help="feedback records (NDJSON) to score AC@1 with")
    parser.add_argument("--diagnoses", help="the diagnoses people judged (NDJSON); default: a replay under --config")


def run_tune(args: argparse.Namespace) -> int:
    check_paths(args)
    base = load_config(args.config)
    found = variants(base, args.configs, args.grid)
    zone, night, faults = scoring(args, base)
    jobs = [Job(args.history, args.graph, args.runbooks, v, zone, night, faults) for v in found]
    started, bar = time.perf_counter(), progress_bar(args, len(jobs))
    try:
        outcomes = run_jobs(jobs, min(args.jobs, len(jobs)), bar.update if bar else None)
    finally:
        if bar:
            bar.close()  # cleared before the table is printed
    seconds = max(time.perf_counter() - started, 1e-6)
    print(table(outcomes, args.tz), flush=True)
    alerts = sum(o.alerts for o in outcomes)
    print(f"{len(outcomes)} configurations x {outcomes[0].alerts} alerts in {seconds:.1f}s on "
          f"{min(args.jobs, len(jobs))} processes: {alerts / seconds:.0f} alerts/s", file=sys.stderr)
    if args.out:
        write_output(args.out, json.dumps({"seconds": round(seconds, 2), "alerts_per_second": round(alerts / seconds),
                                              "variants": [o.figures() for o in outcomes]}, indent=2) + "\n")
    return 0


def check_paths(args: argparse.Namespace) -> None:
    """The history is there and the output can be written, before any job starts."""
    if not Path(args.history).is_file():
        raise InputError("history", f"{args.history}: not a file")
    if args.out:
        check_writable(args.out)


def scoring(args: argparse.Namespace, base: Config) -> tuple[str, tuple[int, int], list[Fault] | None]:
    """The time zone, the night hours and the truth, checked once for every job."""
    try:
        ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError("--tz", f"no time zone {args.tz[:60]!r} (use names like Europe/Berlin)") from None
    start, sep, end = args.night.partition("-")
    if not (sep and start.isdigit() and end.isdigit() and int(start) < 24 and int(end) < 24):
        raise InputError("--night", f"{args.night[:20]!r} is not from-to hours, like 22-7")
    return args.tz, (int(start), int(end)), truth(args, base)


def truth(args: argparse.Namespace, base: Config) -> list[Fault] | None:
    """The faults to score against: --truth, else --feedback, else the truth beside the history."""
    from pipeline.actions import Feedback
    from pipeline.truth import faults_from_feedback, load_truth, read_records

    if args.truth:
        return load_truth(args.truth)
    if args.feedback:
        feedback, skipped = read_records(args.feedback, Feedback)
        if args.diagnoses:
            judged, unread = read_records(args.diagnoses, Diagnosis)
            skipped += unread
        else:
            live = Job(args.history, args.graph, args.runbooks, Variant("live", base.model_dump()), keep_versions=True)
            judged = run_job(live).versions
        faults, unused = faults_from_feedback(feedback, judged)
        for reason, n in (skipped + unused).items():
            print(f"stormdrain: feedback: {n} x {reason}", file=sys.stderr)
        return faults
    beside = truth_path(args.history)
    return load_truth(beside) if beside.exists() else None


def progress_bar(args: argparse.Namespace, jobs: int) -> Any:
    """A tqdm bar over the bytes all jobs will read, on a terminal only."""
    if args.no_progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    size = Path(args.history).stat().st_size if not args.history.endswith(".gz") else None
    return tqdm(total=size * jobs if size else None, unit="B", unit_scale=True, desc="tune", file=sys.stderr,
                leave=False)


def table(outcomes: list[Outcome], zone: str) -> str:
    """The figures as a terminal table, one row per variant."""
    width = max(len("configuration"), *(len(o.name) for o in outcomes))
    head = (f"{'configuration':<{width}}  {'pages':>6}  {'incidents':>9}  {'alerts/page':>11}  "
            f"{'night pages':>11}  {'AC@1':>6}")
    rows = [head, "-" * len(head)]
    for o in outcomes:
        per_page = f"{o.alerts_per_page:g}" if o.alerts_per_page is not None else "-"
        ac1 = f"{o.ac_at_1:.3f}" if o.ac_at_1 is not None else "-"
        rows.append(f"{o.name:<{width}}  {o.pages:>6}  {o.incidents:>9}  {per_page:>11}  {o.night_pages:>11}  {ac1:>6}")
    first = outcomes[0]
    rows.append(f"{first.alerts} alerts per configuration; night in {zone}"
                + (f"; AC@1 over {first.faults} labelled faults" if first.ac_at_1 is not None else "")
                + (f"; {first.skipped_lines} lines of the history could not be read" if first.skipped_lines else ""))
    return "\n".join(rows)
