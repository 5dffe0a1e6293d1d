"""The Kafka commands of the `stormdrain` CLI, registered through the `stormdrain.commands` entry points.

Each `register_*` takes the CLI's subparsers and adds one command.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from agents.options import add_kafka_options, kafka_of, namespace, replicas, signalled_stop
from pipeline.arguments import at_least, count, positive_seconds
from pipeline.alerts import InputError
from pipeline.cli import add_pipeline_options, evidence_provider, load_parts

log = logging.getLogger("stormdrain")
MIB = 1 << 20


def register_bridge(sub) -> None:
    parser = sub.add_parser("bridge", help="HTTP bridge: Alertmanager webhooks to alerts.raw")
    add_kafka_options(parser)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--config", help="configuration file (its identity section names the scope labels)")
    parser.add_argument("--max-body", type=count, default=32 * MIB,
                        help="largest webhook body in bytes (default 32 MiB, about 40,000 alerts)")
    parser.add_argument("--publish-timeout", type=positive_seconds, default=5.0,
                        help="seconds to wait for Kafka's acknowledgement before answering 503 (default 5)")
    parser.add_argument("--retry-after", type=count, default=5, help="Retry-After seconds on a 503 (default 5)")
    parser.add_argument("--request-timeout", type=positive_seconds, default=60.0,
                        help="seconds to read a request and answer it, else 503 and the connection closed; "
                             "above --publish-timeout (default 60)")
    parser.add_argument("--idle-timeout", type=positive_seconds, default=30.0,
                        help="seconds a connection may wait before its request headers or between requests "
                             "(default 30)")
    parser.add_argument("--max-connections", type=at_least(1), default=1024,
                        help="open connections at most; past it a new one gets 503 at once (default 1024)")
    parser.epilog = ("Credentials, when set, are required: STORMDRAIN_BRIDGE_TOKEN (bearer) and/or "
                     "STORMDRAIN_BRIDGE_BASIC_AUTH (user:password), or the same names with _FILE pointing to a file. "
                     "SLACK_SIGNING_SECRET (or SLACK_SIGNING_SECRET_FILE) adds POST /slack/actions for Slack's "
                     "buttons, publishing to approvals and feedback.")
    parser.set_defaults(run=run_bridge)


def run_bridge(args: argparse.Namespace) -> int:
    from agents.bridge import BridgeSettings, build_app, serve
    from agents.producer import Publisher
    from pipeline.config import load_config
    from pipeline.identity import Identity
    from topics.catalog import ALERTS_RAW

    if args.request_timeout <= args.publish_timeout:
        raise InputError("--request-timeout", f"must be above --publish-timeout ({args.publish_timeout:g} s), "
                                              "or a slow broker would cut a webhook off before its 503")
    kafka = kafka_of(args)
    settings = BridgeSettings(max_body=args.max_body, retry_after=args.retry_after,
                              bearer_token=_secret("STORMDRAIN_BRIDGE_TOKEN"), basic_auth=basic_auth(),
                              request_timeout=args.request_timeout, idle_timeout=args.idle_timeout,
                              max_connections=args.max_connections)
    _open_files(args.max_connections + 256)
    publisher = Publisher(kafka.bootstrap, kafka.topic(ALERTS_RAW).name, args.publish_timeout, linger_ms=2,
                          max_batch_size=256 * 1024)
    app = build_app(publisher, Identity(load_config(args.config).identity), settings)
    signing_secret = _secret("SLACK_SIGNING_SECRET")
    if signing_secret:
        from agents.slack_actions import add_slack_actions, kafka_publisher

        add_slack_actions(app, kafka_publisher(publisher, kafka.namespace), signing_secret,
                          retry_after=settings.retry_after)
    async def main() -> None:
        await serve(app, args.host, args.port, settings, signalled_stop())

    asyncio.run(main())
    return 0


def _open_files(wanted: int) -> None:
    """Raise the soft limit on open files towards `wanted` (one per connection, and some to spare)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    if ceiling < wanted:
        log.warning("open files are limited to %d; --max-connections is more than that allows", hard)


def _secret(name: str) -> str | None:
    """A credential from the environment, or from the file an environment variable names.

    A file that cannot be read, or is empty, stops the command: a bridge started with no usable credential
    would answer every webhook 401, and Alertmanager drops a notification on a 4xx.
    """
    if os.environ.get(name):
        return os.environ[name]
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return None
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{name}_FILE", f"cannot read {path}: {exc}") from None
    if not secret:
        raise InputError(f"{name}_FILE", f"{path} is empty")
    return secret


def basic_auth() -> tuple[str, str] | None:
    """STORMDRAIN_BRIDGE_BASIC_AUTH (or its _FILE) as (user, password); anything but user:password stops the bridge."""
    basic = _secret("STORMDRAIN_BRIDGE_BASIC_AUTH")
    if basic is None:
        return None
    user, colon, password = basic.partition(":")
    if not (user and colon and password):
        raise InputError("STORMDRAIN_BRIDGE_BASIC_AUTH", "expected user:password, both not empty")
    return user, password


def register_worker(sub) -> None:
    parser = sub.add_parser("worker", help="faust worker: the correlate and diagnose agents and the ticker")
    add_kafka_options(parser)
    add_pipeline_options(parser)
    parser.add_argument("--datadir", default=os.environ.get("STORMDRAIN_DATADIR", ".stormdrain/worker"),
                        help="where the RocksDB state lives (env STORMDRAIN_DATADIR)")
    parser.add_argument("--save-every", type=positive_seconds, default=1.0, help="seconds between state saves (default 1)")
    parser.add_argument("--tick-every", type=at_least(0, float, "number of seconds"), default=0.2,
                        help="seconds between ticks that move event time on; 0 turns the ticker off (default 0.2)")
    parser.add_argument("--batch-within", type=at_least(0, float, "number of seconds"), default=0.0,
                        help="seconds a batch waits for more records after its first; 0 takes what is queued "
                             "(default 0: a batch is as large as the backlog)")
    parser.add_argument("--session-timeout", type=positive_seconds, default=10.0,
                        help="seconds before a silent worker's partitions move to another (default 10)")
    parser.add_argument("--replication", type=replicas, default=1, help="replication of topics faust creates itself")
    parser.add_argument("--loglevel", default="info", help="faust log level (default info)")
    parser.set_defaults(run=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    import faust

    from agents.app import WorkerSettings
    from agents.worker import build_worker

    if args.incident_history:
        raise InputError("--incident-history", "the worker keeps history in Kafka (the diagnose.history table); "
                                               "this option is for replay and the demo")
    config, graph, catalog = load_parts(args)
    try:
        Path(args.datadir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError("--datadir", f"cannot create {args.datadir}: {exc.strerror or exc}") from None
    settings = WorkerSettings(datadir=Path(args.datadir), save_every=args.save_every, tick_every=args.tick_every,
                              batch_within=args.batch_within, session_timeout=args.session_timeout,
                              replication=args.replication)
    app = build_worker(kafka_of(args), settings, config, graph, catalog, evidence_provider(args, config, graph))
    faust.Worker(app, loglevel=args.loglevel).execute_from_commandline()
    return 0


def register_notifier(sub) -> None:
    parser = sub.add_parser("notifier", help="diagnoses and clicks to Slack, PagerDuty, a webhook or the terminal")
    add_kafka_options(parser)
    parser.add_argument("--config", help="configuration file; its notify section names the sinks (notify.sinks)")
    parser.add_argument("--runbooks", help="runbook catalog (default: the bundled playbooks/runbooks.yaml)")
    parser.add_argument("--webhook-url", help="also post each diagnosis version as JSON here (the webhook sink)")
    parser.add_argument("--print", action="store_true", dest="print_pages",
                        help="also print each page (printed anyway when no sink is configured)")
    parser.add_argument("--group", help="consumer group (default NAMESPACE.notifier)")
    parser.epilog = ("Secrets from the environment: SLACK_BOT_TOKEN (and SLACK_API_URL for another Slack API), "
                     "PAGERDUTY_ROUTING_KEY.")
    parser.set_defaults(run=run_notifier)


def run_notifier(args: argparse.Namespace) -> int:
    from agents.notifier import serve, with_webhook
    from pipeline.config import load_config
    from pipeline.runbooks import load_catalog

    logging.getLogger("stormdrain").setLevel(logging.INFO)
    config = with_webhook(load_config(args.config), args.webhook_url)
    return asyncio.run(serve(kafka_of(args), config, load_catalog(args.runbooks), args.group, args.print_pages))


def register_executor(sub) -> None:
    parser = sub.add_parser("executor", help="run approved runbooks from diagnoses (--dry-run: say which)")
    add_kafka_options(parser)
    parser.add_argument("--runbooks", help="runbook catalog (default: the bundled playbooks/runbooks.yaml)")
    parser.add_argument("--dry-run", action="store_true",
                        help="only log the runbook each new diagnosis version would run (no Ansible needed)")
    parser.add_argument("--work-dir", default=".stormdrain/executor", help="where ansible-runner keeps its runs")
    parser.add_argument("--scratch", help="the scratch folder the local demo runbook writes to (default: WORK/scratch)")
    parser.add_argument("--group", help="consumer group (default NAMESPACE.executor)")
    parser.add_argument("--approver-groups",
                        help="YAML or JSON {slack group id: [user ids]} for the catalog's approver groups")
    parser.add_argument("--max-concurrent", type=count, default=2, help="runs at a time over all targets (default 2)")
    parser.add_argument("--approval-ttl", default="15m", help="an older approval is refused (default 15m)")
    parser.add_argument("--lookback", default="24h", help="diagnoses re-read on start (default 24h)")
    parser.add_argument("--max-poll-interval-ms", type=int, default=300_000, help=argparse.SUPPRESS)
    parser.add_argument("--session-timeout-ms", type=int, default=10_000, help=argparse.SUPPRESS)
    parser.set_defaults(run=run_executor)


def run_executor(args: argparse.Namespace) -> int:
    from agents.remediation import run_command

    logging.getLogger("stormdrain").setLevel(logging.INFO)
    if not args.dry_run:
        return run_command(args)
    from agents.consumer import DiagnosisReader
    from agents.executor import Executor
    from pipeline.runbooks import load_catalog

    reader = DiagnosisReader(kafka_of(args), "executor", Executor(load_catalog(args.runbooks)).handle,
                             group=args.group)

    async def main() -> None:
        await reader.run(signalled_stop())

    asyncio.run(main())
    return 0


def register_topics(sub) -> None:
    parser = sub.add_parser("topics", help="create the catalog's topics, or render Strimzi manifests")
    topics_sub = parser.add_subparsers(title="actions", metavar="ACTION")
    create = topics_sub.add_parser("create", help="create missing topics and table changelogs with the admin client")
    add_kafka_options(create)
    create.add_argument("--replicas", type=replicas, help="replication factor (default: the catalog's, capped by brokers)")
    create.set_defaults(run=run_topics_create)
    render = topics_sub.add_parser("render", help="write Strimzi KafkaTopic manifests and JSON Schemas")
    render.add_argument("--out", default="deploy/kafka", help="folder to write into (default deploy/kafka)")
    render.add_argument("--cluster", default="stormdrain", help="the strimzi.io/cluster label (default stormdrain)")
    render.add_argument("--namespace", default="stormdrain", type=namespace,
                        help="topic name prefix (default stormdrain)")
    render.add_argument("--replicas", type=replicas, help="replication factor (default: the catalog's)")
    render.set_defaults(run=run_topics_render)


def run_topics_create(args: argparse.Namespace) -> int:
    from agents.admin import create_topics

    outcome = asyncio.run(create_topics(kafka_of(args), args.replicas))
    for name, what in sorted(outcome.items()):
        print(f"{name}: {what}")
    return 0


def run_topics_render(args: argparse.Namespace) -> int:
    from topics.strimzi import catalog_topics, write_rendered

    topics = [t.in_namespace(args.namespace) for t in catalog_topics()]
    for path in write_rendered(Path(args.out), topics, args.cluster, args.replicas):
        print(path)
    return 0


