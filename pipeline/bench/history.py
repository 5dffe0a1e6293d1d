"""A generated alert history of a given size, written as NDJSON with its truth beside it.

Synthetic storms (pipeline/bench/storms.py) on a real service graph, as many
as it takes to reach the number of alerts asked for; the faults that made them
go to `<history>.truth.json`, which `stormdrain tune` reads to score AC@1.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from pipeline.alerts import InputError, format_time
from pipeline.arguments import count
from pipeline.bench.storms import Fault, StormSettings, generate
from pipeline.graph import load_graph

PILOT_SCENARIOS = 20
MAX_ALERTS = 10_000_000  # about 8 GB of history: past that, split it


def alert_count(text: str) -> int:
    """--alerts: a count, bounded so a typo does not fill the disk."""
    value = count(text)
    if value > MAX_ALERTS:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is over {MAX_ALERTS:,} alerts; generate histories in parts")
    return value


def truth_path(history: str | Path) -> Path:
    """Where a history's truth lives: beside it, `.truth.json` in place of `.ndjson` (or `.ndjson.gz`)."""
    path = Path(history)
    name = path.name.removesuffix(".gz").removesuffix(".ndjson")
    return path.with_name(name + ".truth.json")


TOP_UPS = 20  # at most this many tries to reach the alerts asked for (a tenth more each)


def write_history(graph_path: str | Path, alerts: int, seed: int, out: str | Path) -> dict:
    """Generate at least `alerts` alerts of storms on the graph; write the history and its truth."""
    graph = load_graph(graph_path)
    pilot = generate(graph, seed, StormSettings(scenarios=PILOT_SCENARIOS))
    per_scenario = max(1.0, _alerts(pilot.envelopes) / PILOT_SCENARIOS)
    scenarios = max(1, math.ceil(alerts / per_scenario * 1.05))
    storm = generate(graph, seed, StormSettings(scenarios=scenarios))
    for _ in range(TOP_UPS):  # the pilot's estimate fell short: a tenth more scenarios, until it does not
        if _alerts(storm.envelopes) >= alerts:
            break
        scenarios = math.ceil(scenarios * 1.1)
        storm = generate(graph, seed, StormSettings(scenarios=scenarios))
    truth = {"graph": Path(graph_path).name, "seed": seed, "faults": [fault_json(f) for f in storm.faults]}
    try:
        Path(out).write_text("".join(json.dumps(e) + "\n" for e in storm.envelopes))
        truth_path(out).write_text(json.dumps(truth, indent=1) + "\n")
    except OSError as exc:
        raise InputError(str(exc.filename or out), f"cannot write the history: {exc.strerror}") from None
    return {"alerts": _alerts(storm.envelopes), "webhooks": len(storm.envelopes), "faults": len(storm.faults),
            "history": str(out), "truth": str(truth_path(out))}


def fault_json(fault: Fault) -> dict:
    return {"root": fault.root, "at": format_time(fault.at), "silent": fault.silent, "affected": fault.affected,
            "fingerprints": sorted(fault.fingerprints)}


def _alerts(envelopes: list[dict]) -> int:
    return sum(len(e["webhook"]["alerts"]) for e in envelopes)


def add_command(bench_sub) -> None:
    """Register `stormdrain bench history`."""
    command = bench_sub.add_parser("history", help="write a generated storm history of N alerts, with its truth")
    command.add_argument("graph", help="service graph file (CSV source,target or the JSON format)")
    command.add_argument("--alerts", type=alert_count, default=100_000,
                         help=f"alerts at least, at most {MAX_ALERTS:,} (default %(default)s)")
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--out", required=True, help="the history (NDJSON); the truth goes beside it")
    command.set_defaults(run=lambda args: print(json.dumps(write_history(args.graph, args.alerts, args.seed,
                                                                         args.out))))
