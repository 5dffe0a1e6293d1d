"""Real parts for integration tests: the local broker, Prometheus, CLI processes, an in-process bridge,
topic readers; a clear skip (a failure under CI=true) when a part is missing."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str):
    """Import a stdlib-only script from deploy/local by path."""
    path = ROOT / "deploy" / "local" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"local_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A free port below the ephemeral range, as the local broker picks them: no outgoing connection takes it."""
    return _local_kafka()._free_port()


_LOADED: dict = {}


def _local_kafka():
    if "kafka" not in _LOADED:
        _LOADED["kafka"] = load_script("kafka")
    return _LOADED["kafka"]


class Proc:
    """A `stormdrain` command in its own process, its output in a log file."""

    def __init__(self, log: Path, *args: str, env: dict | None = None):
        self.log = log
        self.args = args
        self._out = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, stdout=self._out,
                                     stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60.0, count: int = 1) -> None:
        """Wait until the log matches `pattern` `count` times; fail with the log's tail if not."""
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.text())) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.args[0]}: no {pattern!r} (exit {self.proc.poll()}); log tail:\n"
                                     + self.text()[-3000:])
            time.sleep(0.1)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()


def worker(tmp: Path, bootstrap: str, namespace: str, name: str, *extra: str) -> Proc:
    """A worker process, ready to take records when this returns."""
    proc = Proc(tmp / f"{name}.log", "worker", "--bootstrap", bootstrap, "--namespace", namespace,
                "--datadir", str(tmp / name / "store"), "--session-timeout", "3", *extra)  # parents made by it
    proc.wait_for(r"\[\^Worker\]: Ready")
    return proc


class BridgeThread:
    """The bridge's aiohttp app served from a thread, so a test can set its clock and read its port."""

    def __init__(self, app: web.Application):
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, shutdown_timeout=2.0)
        self.port = free_port()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.runner.setup())
            self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        started.wait(30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_ready(self.url, timeout)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def bridge_thread(kafka, timeout: float = 10.0) -> BridgeThread:
    """The bridge's app on the namespace's alerts.raw, served from a thread and ready."""
    from agents.bridge import build_app
    from agents.producer import Publisher
    from pipeline.config import Config
    from pipeline.identity import Identity
    from topics.catalog import ALERTS_RAW

    publisher = Publisher(kafka.bootstrap, kafka.topic(ALERTS_RAW).name, timeout=timeout)
    server = BridgeThread(build_app(publisher, Identity(Config().identity)))
    server.wait_ready()
    return server


def wait_ready(url: str, timeout: float = 30.0) -> None:
    """Wait until a bridge answers /readyz with 200."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"bridge at {url} not ready after {timeout}s")
        time.sleep(0.1)


class Clock:
    """A clock a test sets: the bridge stamps what it says."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def read_topic(bootstrap: str, topic: str, until: Callable[[list], bool] = lambda _: False,
               timeout: float = 30.0) -> list:
    """Read a topic from the beginning until `until(messages)` holds or the timeout passes."""

    async def read() -> list:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                    max_partition_fetch_bytes=16 << 20)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or
                          await _partitions(consumer, topic)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            messages: list = []
            deadline = time.monotonic() + timeout
            while not until(messages) and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    messages.extend(batch)
            return messages
        finally:
            await consumer.stop()

    return asyncio.run(read())


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


def produce(bootstrap: str, topic: str, records: list[tuple]) -> None:
    """Write (key, value, partition[, headers]) records straight to a topic."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for key, value, partition, *headers in records:
                await producer.send_and_wait(topic, value, key=key, partition=partition,
                                             headers=headers[0] if headers else None)
        finally:
            await producer.stop()

    asyncio.run(send())


def tick(bootstrap: str, topic: str, partitions: int, at: datetime) -> None:
    """Move event time on to `at` on every partition, as the ticker does."""
    from agents.ticker import send_ticks

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await send_ticks(producer, topic, partitions, at)
        finally:
            await producer.stop()

    asyncio.run(send())


def post(url: str, body: bytes, headers: dict | None = None, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """POST raw bytes; return (status, headers, body) whatever the status."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def prometheus_part():
    """`deploy/local/prometheus.py` with Debian's binaries in place (installed when running as root)."""
    from pipeline.bench.parts import local_prometheus
    from tests.timeline import require_ci_part

    localprom = local_prometheus()
    try:
        localprom.ensure_installed()
    except localprom.NotInstalled as exc:
        require_ci_part(str(exc))
    return localprom
