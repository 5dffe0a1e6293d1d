"""Sources of history for a replay: a file, the `alerts.raw` topic by time range, or Prometheus's ALERTS.

Every source ends as the same NDJSON the file replay reads (records from the
topic, webhook envelopes rebuilt from Prometheus), so one replay path serves
them all. The Kafka source lives in the Kafka runtime (the pure core imports
no Kafka client) and is found through the `stormdrain.sources` entry point.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from importlib.metadata import entry_points
from typing import IO, Any, Callable

from pipeline.alerts import InputError, format_time, parse_time
from pipeline.config import looks_like_duration, parse_duration
from pipeline.grouping import Route, dispatch, notifications
from pipeline.replay import open_input
from pipeline.routing import load_alertmanager_config
from topics.catalog import ALERTS_RAW, TABLES, TOPICS

SPOOL_BYTES = 64 << 20
TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
# Without an Alertmanager config: the grouping most configs start from.
DEFAULT_ROUTE = Route(receiver="stormdrain", group_by=("alertname",), replicas=("",))


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """The replay's input: a file, or one of the history sources with a time range."""
    parser.add_argument("input", nargs="?",
                        help="NDJSON file of webhooks, envelopes or alerts.raw records (.gz ok, - for stdin)")
    group = parser.add_argument_group("history sources (instead of a file)")
    group.add_argument("--from-kafka", action="store_true", help="read the alerts.raw topic by time range")
    group.add_argument("--bootstrap", default="localhost:9092", help="Kafka bootstrap servers (default %(default)s)")
    group.add_argument("--topic", default=ALERTS_RAW.name, help="topic to read (default %(default)s)")
    group.add_argument("--republish", metavar="TOPIC",
                       help="also publish the diagnoses to this topic (never a live stormdrain topic)")
    group.add_argument("--from-prometheus", metavar="URL", help="rebuild alerts from Prometheus's ALERTS series")
    group.add_argument("--alertmanager-config", metavar="FILE",
                       help="alertmanager.yml: send the rebuilt alerts as this Alertmanager would have")
    group.add_argument("--receiver", action="append", help="only the webhooks of this receiver (repeatable)")
    group.add_argument("--chunk", default="6h", help="Prometheus query chunk (default %(default)s)")
    group.add_argument("--since", help="start: a duration back from now (7d, 12h) or an RFC 3339 time")
    group.add_argument("--until", help="end: a duration back from now or an RFC 3339 time (default: now)")
    group.add_argument("--save-history", metavar="FILE", help="also keep the history read as NDJSON here")


def open_source(args: argparse.Namespace, now: datetime | None = None) -> IO[bytes]:
    """Open the one history the arguments name, as an NDJSON byte stream."""
    chosen = [name for name, on in (("a file", args.input), ("--from-kafka", args.from_kafka),
                                    ("--from-prometheus", args.from_prometheus)) if on]
    if len(chosen) != 1:
        raise InputError("replay", "give one history: a file, --from-kafka or --from-prometheus"
                         + (f" (got {' and '.join(chosen)})" if chosen else ""))
    if args.input:
        given = [option for option, value in (("--since", args.since), ("--until", args.until),
                                              ("--save-history", args.save_history),
                                              ("--alertmanager-config", args.alertmanager_config),
                                              ("--receiver", args.receiver)) if value]
        if given:
            raise InputError(given[0], "applies to --from-kafka and --from-prometheus; a file is replayed whole")
        return open_input(args.input)
    start, end = time_range(args.since, args.until, now or datetime.now(timezone.utc))
    if args.from_kafka:
        kafka = kafka_plugin()
        return _spool(args, lambda out: kafka.dump(args.bootstrap, args.topic, start, end, out))
    return _spool(args, lambda out: _prometheus_history(args, start, end, out))


def time_range(since: str | None, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """--since and --until as times: durations count back from `now`."""
    if not since:
        raise InputError("--since", "a history source needs a start: --since 7d or --since 2025-01-01T00:00:00Z")
    start = _when(since, now, "--since")
    end = _when(until, now, "--until") if until else now
    if end <= start:
        raise InputError("--until", f"the time range is empty: {format_time(start)} is not before {format_time(end)}")
    return start, end


def _when(text: str, now: datetime, option: str) -> datetime:
    try:
        return now - parse_duration(text)
    except ValueError as exc:
        if looks_like_duration(text):
            raise InputError(option, str(exc)) from None  # a duration, but not one a history can have
    try:
        when = parse_time(text)
    except ValueError as exc:
        raise InputError(option, f"not a duration (7d, 12h) or an RFC 3339 time: {exc}") from None
    if when is None:
        raise InputError(option, "the zero time is not a point in a history")
    return when


def check_republish(topic: str | None) -> None:
    """Refuse to republish into a live topic: replays never write where the pipeline reads or pages from."""
    if topic is None:
        return
    live = {t.name for t in TOPICS + TABLES} | {t.name.removeprefix("stormdrain.") for t in TOPICS + TABLES}
    if topic in live:
        raise InputError("--republish", f"{topic!r} is a live stormdrain topic; republish to a topic of its own")
    if not TOPIC_NAME.match(topic):
        raise InputError("--republish", f"{topic[:60]!r} is not a Kafka topic name")


def kafka_plugin() -> Any:
    """The Kafka history source from the Kafka runtime, found by its entry point."""
    found = list(entry_points(group="stormdrain.sources", name="kafka"))
    if not found:
        raise InputError("--from-kafka", "the Kafka runtime (agents package) is not installed")
    return found[0].load()


def _spool(args: argparse.Namespace, write: Callable[[IO[bytes]], object]) -> IO[bytes]:
    """Write the history once (to --save-history, else a temp file) and hand it back for reading."""
    if args.save_history:
        try:
            out = open(args.save_history, "wb")
        except OSError as exc:
            raise InputError("--save-history", f"cannot write {args.save_history}: {exc.strerror}") from None
        with out:
            write(out)
        return open(args.save_history, "rb")
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    write(spool)
    spool.seek(0)
    return spool


def _prometheus_history(args: argparse.Namespace, start: datetime, end: datetime, out: IO[bytes]) -> None:
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    from pipeline.metrics import http_url
    from pipeline.sources_prometheus import read_alert_history

    chunk = parse_duration(args.chunk)
    if chunk <= timedelta(0):
        raise InputError("--chunk", "must be longer than zero")
    send = sender(args.alertmanager_config, tuple(args.receiver or ()))  # a bad config stops us before any query
    retry = Retry(total=2, backoff_factor=0.5, status_forcelist=(502, 503, 504))  # a proxy's hiccup, not a bad query
    client = PrometheusConnect(http_url(args.from_prometheus), timeout=60, retry=retry)
    history = read_alert_history(client, start, end, chunk)
    for note in history.notes:
        print(f"stormdrain: note: {note}", file=sys.stderr)
    for reason, count in history.skipped.items():
        print(f"stormdrain: skipped {count} x {reason}", file=sys.stderr)
    write_envelopes(send(history.lives, end), out)


def sender(alertmanager_config: str | None, receivers: tuple[str, ...]) -> Callable[[list, datetime], list]:
    """What turns alert lives into webhooks: the Alertmanager the config describes, or the default route."""
    if alertmanager_config is None:
        return lambda lives, until: notifications(lives, DEFAULT_ROUTE, until)
    config = load_alertmanager_config(alertmanager_config)
    for note in config.ignored:
        print(f"stormdrain: note: not simulated: {note}", file=sys.stderr)
    unknown = [name for name in receivers if name not in config.receivers]
    if unknown:
        raise InputError("--receiver", f"no receiver named {unknown[0]!r} in {alertmanager_config}")
    return lambda lives, until: dispatch(lives, config, until, receivers or None)


def write_envelopes(sent: list[tuple[datetime, dict]], out: IO[bytes]) -> None:
    for at, body in sent:
        out.write(json.dumps({"received_at": format_time(at), "webhook": body}).encode() + b"\n")
