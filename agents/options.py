"""Command-line options every Kafka command shares: where the broker is and which namespace to use."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import re
from dataclasses import dataclass

from pipeline.arguments import at_least
from topics.catalog import NAMESPACE, TABLES, TOPICS, Topic

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
# A namespace starts every topic name, consumer group and rendered file name: Kafka's topic characters only.
_NAMESPACE = re.compile(r"^[a-zA-Z0-9._-]{1,100}$")


@dataclass(frozen=True)
class Kafka:
    """Where the broker is and the namespace whose topics a command uses."""

    bootstrap: str = DEFAULT_BOOTSTRAP
    namespace: str = NAMESPACE

    def topic(self, topic: Topic) -> Topic:
        return topic.in_namespace(self.namespace)

    def all_topics(self) -> list[Topic]:
        return [self.topic(t) for t in TOPICS + TABLES]

    def group(self, role: str) -> str:
        """The consumer group of a role: each role keeps its own offsets."""
        return f"{self.namespace}.{role}"


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", default=os.environ.get("STORMDRAIN_BOOTSTRAP", DEFAULT_BOOTSTRAP),
                        help="Kafka bootstrap servers, host:port[,host:port] (env STORMDRAIN_BOOTSTRAP)")
    parser.add_argument("--namespace", default=os.environ.get("STORMDRAIN_NAMESPACE", NAMESPACE), type=namespace,
                        help="prefix of every topic name and consumer group (env STORMDRAIN_NAMESPACE)")


def namespace(text: str) -> str:
    """A --namespace value that can prefix a Kafka topic name, or an argparse error that says why not."""
    if not _NAMESPACE.match(text):
        raise argparse.ArgumentTypeError(f"{text[:60]!r} cannot prefix a topic name: use letters, digits, "
                                         "'.', '_' and '-', at most 100")
    return text


replicas = at_least(1, int, "replication factor")


def kafka_of(args: argparse.Namespace) -> Kafka:
    return Kafka(bootstrap=args.bootstrap, namespace=args.namespace)


def signalled_stop() -> asyncio.Event:
    """An event SIGTERM or SIGINT sets: a long-running command stops cleanly on either (call it in the loop)."""
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    return stop
