"""`stormdrain slack-preview`: the Slack page of each incident, as text or Block Kit JSON, without Slack."""

from __future__ import annotations

import argparse
import json

from pipeline.alerts import InputError
from pipeline.config import load_config
from pipeline.diagnose import Diagnosis
from pipeline.replay import open_input
from pipeline.runbooks import load_catalog
from pipeline.slack.page import Links, render_message
from pipeline.slack.text import to_text


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("slack-preview", help="show the Slack page of each incident (text or Block Kit JSON)")
    parser.add_argument("diagnoses", nargs="?", help="diagnoses NDJSON from replay (- for stdin); default: the demo")
    parser.add_argument("--json", action="store_true", help="print the Block Kit JSON for chat.postMessage")
    parser.add_argument("--config", help="configuration file (its notify section gives the links)")
    parser.add_argument("--runbooks", help="runbook catalog (default: the bundled one)")
    parser.set_defaults(run=run_preview)


def run_preview(args: argparse.Namespace) -> int:
    notify = load_config(args.config).notify
    catalog, links = load_catalog(args.runbooks), Links(notify.alertmanager_url, notify.prometheus_url)
    for diagnosis in latest(_diagnoses(args.diagnoses)).values():
        message = render_message(diagnosis, catalog, links)
        if args.json:
            print(json.dumps({"text": message.text, "blocks": message.blocks}, ensure_ascii=False, indent=2))
        else:
            print(to_text(message.blocks))
    return 0


def latest(diagnoses) -> dict[str, Diagnosis]:
    """The newest version of each incident, the paging ones preferred."""
    found: dict[str, Diagnosis] = {}
    for d in diagnoses:
        known = found.get(d.incident_id)
        if known is None or (d.paged_at is not None, d.version) >= (known.paged_at is not None, known.version):
            found[d.incident_id] = d
    return found


def demo_versions() -> list[Diagnosis]:
    """Every diagnosis version of the bundled Black Friday storm, in order."""
    from pipeline.bench import demo
    from pipeline.cli import replay
    from pipeline.embedded import Embedded
    from pipeline.graph import load_graph

    engine = Embedded(load_config(None), load_graph(demo.GRAPH), load_catalog())
    versions: list[Diagnosis] = []
    with open(demo.STORM, "rb") as stream:
        replay(stream, engine, versions.append)
    return versions


def _diagnoses(path: str | None):
    if path is None:
        yield from demo_versions()
        return
    with open_input(path) as stream:
        for number, line in enumerate(stream, 1):
            if line.strip():
                try:
                    yield Diagnosis.model_validate_json(line)
                except ValueError as exc:
                    raise InputError(f"{path}:{number}", f"not a diagnosis: {str(exc).splitlines()[0]}") from None
