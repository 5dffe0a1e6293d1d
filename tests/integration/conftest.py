"""One Kafka broker per test session; each test gets its own namespace of topics."""

from __future__ import annotations

import asyncio
import shutil
import uuid

import pytest

from agents.admin import create_topics
from agents.options import Kafka
from tests.integration.parts import load_script
from tests.timeline import require_ci_part


@pytest.fixture(scope="session")
def local_kafka():
    return load_script("kafka")


@pytest.fixture(scope="session")
def broker(local_kafka, tmp_path_factory):
    """A single-node KRaft broker from Maven Central jars: (bootstrap, data dir)."""
    if not shutil.which("java") or not (shutil.which("mvn") or _jars_cached(local_kafka)):
        require_ci_part("Kafka needs Java 17 and (once) Maven to fetch the broker jars")
    data_dir = tmp_path_factory.mktemp("kafka")
    bootstrap = local_kafka.start(port=0, data_dir=data_dir, stop_at_exit=True)
    yield bootstrap, data_dir
    local_kafka.stop(data_dir)


def _jars_cached(local_kafka) -> bool:
    return (local_kafka.cache_dir(local_kafka.DEFAULT_VERSION) / "classpath.txt").exists()


@pytest.fixture
def kafka(broker) -> Kafka:
    """A fresh namespace on the session broker, every catalog topic created."""
    namespace = f"t{uuid.uuid4().hex[:10]}"
    kafka = Kafka(bootstrap=broker[0], namespace=namespace)
    asyncio.run(create_topics(kafka))
    return kafka
