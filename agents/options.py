"""Command-line options every Kafka command shares: where the broker is and which namespace to use."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from topics.catalog import NAMESPACE, TABLES, TOPICS, Topic

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


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
    parser.add_argument("--namespace", default=os.environ.get("STORMDRAIN_NAMESPACE", NAMESPACE),
                        help="prefix of every topic name and consumer group (env STORMDRAIN_NAMESPACE)")


def kafka_of(args: argparse.Namespace) -> Kafka:
    return Kafka(bootstrap=args.bootstrap, namespace=args.namespace)
