"""Topic administration: create the catalog's topics on a cluster with the admin client."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from agents.options import Kafka

ALREADY_EXISTS = 36
CREATE_TIMEOUT_MS = 30_000


class TopicError(RuntimeError):
    """The broker refused to create a topic."""


async def create_topics(kafka: Kafka, replicas: int | None = None) -> dict[str, str]:
    """Create every topic and table changelog of the namespace that is missing; return name -> outcome.

    Replication is the catalog's, capped by the number of brokers, unless given.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        existing = set(await admin.list_topics())
        outcome = {t.name: "exists" for t in kafka.all_topics() if t.name in existing}
        wanted = {}
        for topic in kafka.all_topics():
            if topic.name not in existing:
                factor = replicas or min(topic.replicas, brokers)
                wanted[topic.name] = NewTopic(topic.name, topic.partitions, factor,
                                              topic_configs=topic.topic_configs(factor))
        if wanted:
            response = await admin.create_topics(list(wanted.values()), timeout_ms=CREATE_TIMEOUT_MS)
            for name, code, *message in response.topic_errors:
                outcome[name] = _outcome(wanted[name], code, message)
        return outcome
    finally:
        await admin.close()


def _outcome(topic: NewTopic, code: int, message: list) -> str:
    if code == 0:
        return f"created ({topic.num_partitions} partitions, replication {topic.replication_factor})"
    if code == ALREADY_EXISTS:
        return "exists"
    raise TopicError(f"{topic.name}: {for_code(code).__name__} {message[0] if message else ''}".rstrip())
