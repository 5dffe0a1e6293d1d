"""Kafka benchmark: a steady storm through bridge, broker and worker on this machine.

    python -m agents.bench [--bootstrap HOST:PORT] [--rate 5000] [--seconds 20]

Without --bootstrap it starts a broker with deploy/local/kafka.py in a temp
dir. It starts one worker and one bridge as processes, posts webhooks of
`--per-webhook` alerts at `--rate` alerts/s across `--scopes` clusters (each
webhook re-sends the alerts of its group, a tenth of them new, as Alertmanager
does), and reports:

- end-to-end alerts/s: alerts posted / (first post -> the last scope's final
  alert in an incident snapshot, less the out-of-order wait);
- added latency of every diagnosis version: its publish time less (its event
  time + the out-of-order wait), i.e. beyond the intentional holds;
- the bridge's acknowledgement latency (request sent -> 200) at the stated rate.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer

from agents.admin import create_topics
from agents.options import Kafka
from pipeline.alerts import ZERO_TIME, fingerprint, parse_time
from pipeline.bench import demo
from topics.catalog import DIAGNOSES, INCIDENTS

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ["order-service", "checkout-service", "payment-service", "inventory-service", "api-gateway",
            "notification-service"]
NAMES = ["HighErrorRate", "HighRequestLatency", "KubePodNotReady", "UpstreamTimeouts", "DBConnectionPoolExhausted"]


def webhooks(scopes: int, total: int, per: int, new_share: float, seed: int = 7) -> list[bytes]:
    """Bodies to post, round-robin over scopes: each re-sends its group's alerts, some of them new."""
    rng = random.Random(seed)
    groups: list[list[dict]] = [[] for _ in range(scopes)]
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    bodies = []
    for i in range(total):
        group = groups[i % scopes]
        for _ in range(max(1, int(per * new_share)) if len(group) >= per else per - len(group)):
            n = len(group)
            labels = {"alertname": NAMES[n % len(NAMES)], "service": SERVICES[n % len(SERVICES)],
                      "severity": rng.choice(["critical", "warning"]), "pod": f"p-{i % scopes}-{n}",
                      "cluster": f"c{i % scopes}"}
            group.append({"status": "firing", "startsAt": now, "endsAt": ZERO_TIME, "annotations": {},
                          "labels": labels, "fingerprint": fingerprint(labels)})  # Alertmanager sends it
        alerts = group[-per:]
        bodies.append(json.dumps({"version": "4", "status": "firing", "receiver": "stormdrain", "groupKey": f"g{i % scopes}",
                                  "externalURL": "http://am-0:9093", "alerts": alerts}).encode())
    return bodies


def sentinels(scopes: int) -> list[bytes]:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return [json.dumps({"version": "4", "alerts": [{"startsAt": now, "labels": {
        "alertname": "BenchEnd", "service": "order-service", "cluster": f"c{s}"}}]}).encode() for s in range(scopes)]


async def post_all(url: str, bodies: list[bytes], rate: float, concurrency: int) -> tuple[list[float], float]:
    """Post bodies at `rate` bodies/s; return the acknowledgement latencies (s) and the first post's time."""
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def one(body: bytes) -> None:
            async with gate:
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"bridge answered {response.status}")
                latencies.append(time.perf_counter() - start)

        first = time.time()
        tasks = []
        for k, body in enumerate(bodies):
            await asyncio.sleep(max(0.0, first + k / rate - time.time()))
            tasks.append(asyncio.create_task(one(body)))
        await asyncio.gather(*tasks)
    return latencies, first


async def watch(kafka: Kafka, out_of_order: float, scopes: int, stop: asyncio.Event, found: dict) -> None:
    """Collect diagnosis latencies and the time each scope's final alert reached an incident snapshot."""
    diagnoses, incidents = kafka.topic(DIAGNOSES).name, kafka.topic(INCIDENTS).name
    consumer = AIOKafkaConsumer(diagnoses, incidents, bootstrap_servers=kafka.bootstrap, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=16 << 20)
    await consumer.start()
    try:
        while not stop.is_set():
            for tp, messages in (await consumer.getmany(timeout_ms=200)).items():
                for m in messages:
                    value = json.loads(m.value)
                    if tp.topic == diagnoses:
                        event = parse_time(value["updated_at"]).timestamp()
                        found["added"].append(m.timestamp / 1000 - event - out_of_order)
                    elif "BenchEnd" in json.dumps(value.get("services", {})):
                        found["ends"].setdefault(value["scope"], m.timestamp / 1000)
            if len(found["ends"]) >= scopes:
                stop.set()
    finally:
        await consumer.stop()


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[p - 1] if len(values) > 1 else (values or [float("nan")])[0]


async def run(args: argparse.Namespace, bootstrap: str, tmp: Path) -> dict:
    kafka = Kafka(bootstrap, f"bench{uuid.uuid4().hex[:6]}")
    await create_topics(kafka)
    config = tmp / "bench.yaml"
    config.write_text(f"incidents:\n  hold: {args.hold}s\n  out_of_order: {args.out_of_order}s\n")
    common = ["--bootstrap", bootstrap, "--namespace", kafka.namespace]
    port = 18000 + random.randrange(1000)
    cli = [sys.executable, "-m", "pipeline.cli"]
    profiled = [sys.executable, "-m", "cProfile", "-o", str(tmp / "worker.prof"), "-m", "pipeline.cli"]
    workers = [subprocess.Popen([*(profiled if args.profile and n == 0 else cli), "worker", *common, "--graph",
                                 str(demo.GRAPH), "--config", str(config), "--datadir", str(tmp / f"worker{n}"),
                                 *args.worker_options.split()],
                                stdout=open(tmp / f"worker{n}.log", "wb"), stderr=subprocess.STDOUT, cwd=ROOT)
               for n in range(args.workers)]
    bridge = subprocess.Popen([*cli, "bridge", *common, "--port", str(port), "--host", "127.0.0.1", "--config",
                               str(config)], stdout=open(tmp / "bridge.log", "wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        for n in range(args.workers):
            await ready(f"http://127.0.0.1:{port}/readyz", tmp / f"worker{n}.log")
        total = int(args.rate * args.seconds / args.per_webhook)
        bodies = webhooks(args.scopes, total, args.per_webhook, new_share=0.1)
        found: dict = {"added": [], "ends": {}}
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(kafka, args.out_of_order, args.scopes, stop, found))
        url = f"http://127.0.0.1:{port}/alerts"
        acks, first = await post_all(url, bodies, args.rate / args.per_webhook, args.concurrency)
        await post_all(url, sentinels(args.scopes), 100, args.scopes)
        await asyncio.wait_for(watcher, timeout=120)
    finally:
        for proc in (bridge, *workers):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    alerts = total * args.per_webhook + args.scopes
    done = max(found["ends"].values()) - args.out_of_order
    return {"offered_alerts_per_s": args.rate, "alerts": alerts, "webhooks_per_s": round(args.rate / args.per_webhook, 1),
            "end_to_end_alerts_per_s": round(alerts / (done - first)),
            "diagnosis_versions": len(found["added"]),
            "added_latency_ms": {"p50": round(pct(found["added"], 50) * 1000), "p99": round(pct(found["added"], 99) * 1000)},
            "ack_latency_ms": {"p50": round(pct(acks, 50) * 1000, 1), "p99": round(pct(acks, 99) * 1000, 1)},
            "workers": args.workers, "hold_s": args.hold, "out_of_order_s": args.out_of_order, "scopes": args.scopes,
            "alerts_per_webhook": args.per_webhook}


async def ready(url: str, worker_log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status == 200 and b"Worker]: Ready" in worker_log.read_bytes():
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("bridge or worker not ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="an existing broker (default: start one in a temp dir)")
    parser.add_argument("--rate", type=float, default=5000, help="offered alerts per second (default 5000)")
    parser.add_argument("--seconds", type=float, default=20, help="how long to offer them (default 20)")
    parser.add_argument("--per-webhook", type=int, default=50, help="alerts per webhook (default 50)")
    parser.add_argument("--scopes", type=int, default=12, help="clusters, i.e. correlation scopes (default 12)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at most (default 16)")
    parser.add_argument("--hold", type=float, default=5, help="incident hold in seconds (default 5)")
    parser.add_argument("--out-of-order", type=float, default=2, help="out-of-order wait in seconds (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--profile", action="store_true", help="run the worker under cProfile (worker.prof in the logs)")
    parser.add_argument("--worker-options", default="",
                        help="more options for each worker, e.g. \"--tick-every 0.05 --batch-within 0.01\"")
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="stormdrain-bench-")
    print(f"logs in {tmp}", file=sys.stderr)
    broker_dir = Path(tmp) / "kafka"
    local = None
    if args.bootstrap is None:
        spec = importlib.util.spec_from_file_location("local_kafka", ROOT / "deploy" / "local" / "kafka.py")
        local = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(local)
        args.bootstrap = local.start(port=0, data_dir=broker_dir)
    try:
        result = asyncio.run(run(args, args.bootstrap, Path(tmp)))
    finally:
        if local is not None:
            local.stop(broker_dir)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
