#!/usr/bin/env python3
"""Start and stop a single-node KRaft Apache Kafka broker from Maven Central jars.

Stdlib only; no Docker.  Needs Java 17+ (``java`` on PATH or ``$JAVA_HOME``)
and, the first time a version is used, Maven (``mvn``) to resolve the broker
jars into ``~/.m2``.  The classpath is cached under
``~/.cache/stormdrain/kafka/<version>/`` (``$STORMDRAIN_KAFKA_CACHE``).

Command line::

    python deploy/local/kafka.py start [--port 9092] [--dir DIR] [--fresh]
    python deploy/local/kafka.py status|wait|stop|kill [--dir DIR]

``start`` prints the bootstrap address (``127.0.0.1:PORT``) on stdout and
returns once the broker answers Metadata and FindCoordinator (group and
transaction) over the Kafka protocol; a second ``start`` on a running broker
says so and prints the same address.  ``--port 0`` picks a free port.  Data
in ``DIR`` survives ``stop``/``kill``; ``--fresh`` wipes it first.

From Python (pytest fixtures)::

    spec = importlib.util.spec_from_file_location("local_kafka", path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    bootstrap = mod.start(port=0, data_dir=tmp)   # "127.0.0.1:PORT"
    mod.kill(data_dir=tmp); mod.start(data_dir=tmp)  # same port, same data
    mod.stop(data_dir=tmp)

Broker settings: ``auto.create.topics.enable=false`` (topics are created
explicitly, as in production), replication factor 1 and min.insync.replicas 1
everywhere, one partition each for ``__consumer_offsets`` and
``__transaction_state``, ``group.initial.rebalance.delay.ms=0``,
``group.min.session.timeout.ms=1000``, heap ``-Xmx512m``.
Environment: ``STORMDRAIN_KAFKA_VERSION`` (default below),
``STORMDRAIN_KAFKA_DIR`` (default data dir), ``KAFKA_HEAP_OPTS``, ``KAFKA_OPTS``
(extra JVM options).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

DEFAULT_VERSION = "4.4.0"
DEFAULT_PORT = 9092
HOST = "127.0.0.1"
LOG4J2_VERSION = "2.24.3"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"
STATE_FILE = "broker.json"
PID_FILE = "kafka.pid"

# Popen handles of brokers started by this process, so that a killed child is
# reaped (a zombie would still look alive to os.kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen] = {}
_ENDED: dict[int, subprocess.Popen] = {}  # reaped children, for the exit status in an error


class KafkaError(RuntimeError):
    """The broker could not be started, found or stopped."""


class BrokerDied(KafkaError):
    """The broker process ended while it was awaited."""


# --------------------------------------------------------------------------
# paths and state


def default_dir() -> Path:
    env = os.environ.get("STORMDRAIN_KAFKA_DIR")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / "stormdrain-kafka"


def _dir(data_dir) -> Path:
    return Path(data_dir).resolve() if data_dir else default_dir().resolve()


def cache_dir(version: str) -> Path:
    base = os.environ.get("STORMDRAIN_KAFKA_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "stormdrain" / "kafka"
    return root / version


def _read_state(d: Path) -> dict | None:
    try:
        return json.loads((d / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_state(d: Path, state: dict) -> None:
    tmp = d / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(d / STATE_FILE)


def _read_pid(d: Path) -> int | None:
    try:
        return int((d / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    """True when pid is a live (not zombie) Kafka JVM."""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _ENDED[pid] = _CHILDREN.pop(pid)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"kafka.Kafka" in cmd
    except OSError:
        return True  # no /proc: trust os.kill


def _free_port() -> int:
    """A free port below the kernel's ephemeral range, so no outgoing connection takes it before the JVM binds."""
    low = _ephemeral_low()
    for port in random.sample(range(10_000, low), min(200, low - 10_000)):
        if not _port_in_use(port):
            return port
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, 10_200)


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


# --------------------------------------------------------------------------
# jars


def _pom(version: str) -> str:
    major = int(version.split(".")[0])
    if major >= 4:  # Kafka 4 logs through slf4j 1.7 -> log4j2
        logging = f"""
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{LOG4J2_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{LOG4J2_VERSION}</version></dependency>"""
    else:  # Kafka 3.x logs through slf4j 1.7 -> reload4j
        logging = """
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
    <dependency><groupId>ch.qos.reload4j</groupId><artifactId>reload4j</artifactId><version>1.2.25</version></dependency>"""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- written by stormdrain deploy/local/kafka.py: the broker's runtime classpath -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.stormdrain</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{version}</version></dependency>{logging}
  </dependencies>
  <build><pluginManagement><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId><version>{DEPENDENCY_PLUGIN_VERSION}</version>
  </plugin></plugins></pluginManagement></build>
</project>
"""


def classpath(version: str = DEFAULT_VERSION, log=None) -> str:
    """The broker's classpath; resolves the jars with Maven the first time."""
    cdir = cache_dir(version)
    cp_file = cdir / "classpath.txt"
    if cp_file.exists():
        cp = cp_file.read_text().strip()
        if cp and all(os.path.exists(p) for p in cp.split(os.pathsep)):
            return cp
    mvn = shutil.which("mvn")
    if not mvn:
        raise KafkaError("Maven (mvn) is needed once to fetch the Kafka jars; not on PATH")
    cdir.mkdir(parents=True, exist_ok=True)
    (cdir / "pom.xml").write_text(_pom(version))
    if log:
        log(f"resolving Kafka {version} jars with Maven (first start only)...")
    tmp_out = cdir / "classpath.txt.tmp"
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", str(cdir / "pom.xml"), "dependency:build-classpath",
         "-Dmdep.includeScope=runtime", f"-Dmdep.outputFile={tmp_out}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    if proc.returncode != 0 or not tmp_out.exists():
        raise KafkaError(f"mvn failed to resolve Kafka {version}:\n{proc.stdout[-4000:]}")
    tmp_out.replace(cp_file)
    return cp_file.read_text().strip()


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return os.path.join(home, "bin", "java")
    java = shutil.which("java")
    if not java:
        raise KafkaError("java (17+) not found on PATH or in $JAVA_HOME")
    return java


# --------------------------------------------------------------------------
# config


def _server_properties(d: Path, port: int, controller_port: int, version: str) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(d / "data"),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        # after a SIGKILL the new incarnation cannot register until the old
        # broker session expires (default 9 s)
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
        # a small box: few threads, a small compaction buffer
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "delete.topic.enable": "true",
    }
    if int(version.split(".")[0]) >= 4:
        props.update({
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
        })
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _log_config(d: Path, version: str) -> tuple[str, str]:
    """(file name, JVM system property) for the logging backend."""
    log_file = d / "logs" / "server.log"
    if int(version.split(".")[0]) >= 4:
        text = (
            "status = warn\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {log_file}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
            "logger.kafka.name = org.apache.kafka\n"
            "logger.kafka.level = INFO\n"
        )
        (d / "log4j2.properties").write_text(text)
        return "log4j2.properties", f"-Dlog4j2.configurationFile={d / 'log4j2.properties'}"
    text = (
        "log4j.rootLogger=INFO, FILE\n"
        "log4j.appender.FILE=org.apache.log4j.FileAppender\n"
        f"log4j.appender.FILE.File={log_file}\n"
        "log4j.appender.FILE.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.FILE.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
    )
    (d / "log4j.properties").write_text(text)
    return "log4j.properties", f"-Dlog4j.configuration=file:{d / 'log4j.properties'}"


def _cluster_id() -> str:
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


# --------------------------------------------------------------------------
# the Kafka protocol, just enough to ask for readiness


def _request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    client = b"stormdrain-kafka-py"
    header = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", _recv(sock, 4))[0]
    data = _recv(sock, size)
    if struct.unpack(">i", data[:4])[0] != corr:
        raise KafkaError("correlation id mismatch")
    return data[4:]  # response header v0 is just the correlation id


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def _string(data: bytes, pos: int) -> tuple[str | None, int]:
    n = struct.unpack(">h", data[pos:pos + 2])[0]
    pos += 2
    if n < 0:
        return None, pos
    return data[pos:pos + n].decode(), pos + n


def probe(bootstrap: str, timeout: float = 2.0, coordinators: bool = True) -> dict:
    """Ask the broker for ApiVersions, Metadata (v4) and, with coordinators,
    FindCoordinator (v1) for a group and a transactional id: the last ones make
    the broker create ``__consumer_offsets`` and ``__transaction_state``.
    Returns {"brokers": [...], "cluster_id": ...}; raises when not ready."""
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.settimeout(timeout)
        data = _request(s, 18, 0, 1, b"")  # ApiVersions v0
        err, count = struct.unpack(">hi", data[:6])
        if err:
            raise KafkaError(f"ApiVersions error {err}")
        ranges = {}
        for i in range(count):
            k, lo, hi = struct.unpack(">hhh", data[6 + 6 * i:12 + 6 * i])
            ranges[k] = (lo, hi)
        lo, hi = ranges.get(3, (0, -1))
        if not lo <= 4 <= hi:
            raise KafkaError(f"broker does not speak Metadata v4 ({lo}..{hi})")
        # Metadata v4: topics = [] (none), allow_auto_topic_creation = false
        data = _request(s, 3, 4, 2, struct.pack(">ib", 0, 0))
        pos = 4  # throttle_time_ms
        (nb,) = struct.unpack(">i", data[pos:pos + 4])
        pos += 4
        brokers = []
        for _ in range(nb):
            (node,) = struct.unpack(">i", data[pos:pos + 4])
            h, pos = _string(data, pos + 4)
            (p,) = struct.unpack(">i", data[pos:pos + 4])
            _, pos = _string(data, pos + 4)  # rack
            brokers.append((node, h, p))
        cluster_id, pos = _string(data, pos)
        if not brokers:
            raise KafkaError("no broker registered yet")
        if coordinators:
            for corr, (key, key_type) in enumerate(
                    ((b"stormdrain-ready", 0), (b"stormdrain-ready", 1)), start=3):
                data = _request(s, 10, 1, corr,
                                struct.pack(">h", len(key)) + key + struct.pack(">b", key_type))
                (err,) = struct.unpack(">h", data[4:6])
                if err:
                    raise KafkaError(f"FindCoordinator(type {key_type}) error {err}")
        return {"brokers": brokers, "cluster_id": cluster_id}


# --------------------------------------------------------------------------
# lifecycle


def _tail(path: Path, n: int = 30) -> str:
    """The last n lines, after the errors among the lines before them (a config dump can bury the cause)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines[:-n] if " ERROR " in line or " FATAL " in line or "Exception" in line]
    return "\n".join(errors[-10:] + lines[-n:])


def _ended(pid: int) -> str:
    """How a broker this process started ended, when it knows."""
    child = _CHILDREN.get(pid) or _ENDED.get(pid)
    code = child.poll() if child is not None else None
    if code is None:
        return "is not running"
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


def wait(data_dir=None, timeout: float = 90.0, coordinators: bool = True) -> str:
    """Wait until the broker in data_dir is ready; return its bootstrap."""
    d = _dir(data_dir)
    state = _read_state(d)
    if not state:
        raise KafkaError(f"no broker was started in {d}")
    bootstrap = state["bootstrap"]
    deadline = time.monotonic() + timeout
    last = None
    while True:
        pid = _read_pid(d)
        if pid is None:
            raise KafkaError(f"Kafka broker in {d} is not running")
        if not _alive(pid):
            raise BrokerDied(
                f"Kafka broker (pid {pid}) {_ended(pid)}; last log lines:\n"
                + _tail(d / "logs" / "server.log") + "\n" + _tail(d / "logs" / "stdout.log"))
        try:
            probe(bootstrap, coordinators=coordinators)
            return bootstrap
        except (OSError, KafkaError, struct.error) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise KafkaError(f"Kafka at {bootstrap} not ready after {timeout}s: {last}")
        time.sleep(0.2)


def status(data_dir=None) -> dict | None:
    """State of the broker in data_dir when it is running and ready, else None."""
    d = _dir(data_dir)
    state = _read_state(d)
    pid = _read_pid(d)
    if not state or not _alive(pid):
        return None
    try:
        info = probe(state["bootstrap"], coordinators=False)
    except (OSError, KafkaError, struct.error):
        return dict(state, pid=pid, ready=False)
    return dict(state, pid=pid, ready=True, cluster_id=info["cluster_id"])


def start(port: int | None = None, data_dir=None, version: str | None = None,
          fresh: bool = False, timeout: float = 120.0, heap: str | None = None,
          stop_at_exit: bool = False, log=None, retry: bool | None = None) -> str:
    """Start (or find running) the broker; return its bootstrap "127.0.0.1:PORT".

    port None reuses the port of an earlier run in data_dir, else 9092; port 0
    picks a free one.  Data in data_dir is kept between runs unless fresh;
    version None reuses the version of that data, else $STORMDRAIN_KAFKA_VERSION,
    else DEFAULT_VERSION.  stop_at_exit registers an atexit stop() for this
    data_dir (the JVM runs in its own session and outlives its starter).
    A broker on ports picked here that dies while starting is started once more
    on other ports (retry None: only when port is 0).
    """
    if retry is None:
        retry = port == 0
    d = _dir(data_dir)
    state = _read_state(d)
    pid = _read_pid(d)
    if not version and state and not fresh and (d / "data" / "meta.properties").exists():
        version = state.get("version")  # restart with the version that wrote the data
    version = version or os.environ.get("STORMDRAIN_KAFKA_VERSION") or DEFAULT_VERSION
    if _alive(pid) and state:
        if fresh:
            raise KafkaError(f"a broker is running in {d} (pid {pid}); stop it before --fresh")
        if port not in (None, 0, state["port"]):
            raise KafkaError(f"a broker is already running in {d} on {state['bootstrap']}")
        if log:
            log(f"Kafka already running (pid {pid}) at {state['bootstrap']}")
        return wait(d, timeout)
    if fresh and d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "logs").mkdir(exist_ok=True)
    formatted = (d / "data" / "meta.properties").exists()
    if formatted and state and state.get("version") != version:
        raise KafkaError(f"{d} holds Kafka {state.get('version')} data; use --fresh for {version}")

    if port is None:
        port = state["port"] if (state and formatted) else DEFAULT_PORT
    if port == 0:
        port = _free_port()
    if _port_in_use(port):
        raise KafkaError(f"port {port} on {HOST} is in use")
    controller_port = state.get("controller_port") if (state and formatted) else None
    if not controller_port or _port_in_use(controller_port):
        controller_port = _free_port()

    cp = classpath(version, log=log)
    java = _java()
    (d / "server.properties").write_text(_server_properties(d, port, controller_port, version))
    _, log_prop = _log_config(d, version)

    if not formatted:
        cluster_id = _cluster_id()
        proc = subprocess.run(
            [java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", log_prop,
             "-cp", cp, "kafka.tools.StorageTool", "format", "-t", cluster_id,
             "-c", str(d / "server.properties")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        if proc.returncode != 0:
            raise KafkaError(f"kafka-storage format failed:\n{proc.stdout[-4000:]}")
    else:
        cluster_id = (state or {}).get("cluster_id")

    bootstrap = f"{HOST}:{port}"
    _write_state(d, {
        "bootstrap": bootstrap, "port": port, "controller_port": controller_port,
        "version": version, "cluster_id": cluster_id, "dir": str(d),
    })
    heap = heap or os.environ.get("KAFKA_HEAP_OPTS") or "-Xms128m -Xmx512m"
    cmd = [java, *heap.split(), "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError",
           "-Djava.awt.headless=true", log_prop, f"-Dkafka.logs.dir={d / 'logs'}",
           *os.environ.get("KAFKA_OPTS", "").split(),
           "-cp", cp, "kafka.Kafka", str(d / "server.properties")]
    with open(d / "logs" / "stdout.log", "ab") as out:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, cwd=str(d),
                                 start_new_session=True, close_fds=True)
    _CHILDREN[child.pid] = child
    (d / PID_FILE).write_text(str(child.pid))
    if stop_at_exit:
        atexit.register(stop, d)
    try:
        return wait(d, timeout)
    except BrokerDied:
        if not retry:
            raise
        if log:
            log("Kafka died while starting; starting it again on other free ports")
        return start(0, d, version, timeout=timeout, heap=heap, log=log, retry=False)
    except KafkaError:
        _signal(d, signal.SIGKILL, 10)
        raise


def _signal(d: Path, sig: int, timeout: float) -> bool:
    pid = _read_pid(d)
    if not _alive(pid):
        (d / PID_FILE).unlink(missing_ok=True)
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            if sig == signal.SIGKILL:
                raise KafkaError(f"Kafka pid {pid} survived SIGKILL")
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            sig = signal.SIGKILL
        time.sleep(0.1)
    _CHILDREN.pop(pid, None)
    (d / PID_FILE).unlink(missing_ok=True)
    return True


def stop(data_dir=None, timeout: float = 30.0) -> bool:
    """SIGTERM (clean shutdown), SIGKILL after timeout. False if it was not running."""
    return _signal(_dir(data_dir), signal.SIGTERM, timeout)


def kill(data_dir=None) -> bool:
    """SIGKILL, for fault tests. False if it was not running."""
    return _signal(_dir(data_dir), signal.SIGKILL, 10)


# --------------------------------------------------------------------------
# command line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kafka.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=None, help=f"data dir (default {default_dir()})")
    p = sub.add_parser("start", parents=[common], help="start, print bootstrap")
    p.add_argument("--port", type=int, default=None,
                   help=f"PLAINTEXT port (default: previous, else {DEFAULT_PORT}; 0 = free port)")
    p.add_argument("--version", default=None, help=f"Kafka version (default {DEFAULT_VERSION})")
    p.add_argument("--fresh", action="store_true", help="wipe DIR first")
    p.add_argument("--timeout", type=float, default=120.0)
    sub.add_parser("stop", parents=[common], help="SIGTERM, wait")
    sub.add_parser("kill", parents=[common], help="SIGKILL")
    sub.add_parser("status", parents=[common], help="exit 0 when running and ready")
    p = sub.add_parser("wait", parents=[common], help="wait for readiness, print bootstrap")
    p.add_argument("--timeout", type=float, default=90.0)
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    try:
        if args.cmd == "start":
            t0 = time.monotonic()
            bootstrap = start(port=args.port, data_dir=args.dir, version=args.version,
                              fresh=args.fresh, timeout=args.timeout, log=log)
            log(f"Kafka ready in {time.monotonic() - t0:.1f}s (dir {_dir(args.dir)})")
            print(bootstrap, flush=True)
        elif args.cmd == "wait":
            print(wait(args.dir, args.timeout), flush=True)
        elif args.cmd == "status":
            st = status(args.dir)
            if not st:
                print("stopped")
                return 1
            print(json.dumps(st))
            return 0 if st["ready"] else 2
        elif args.cmd == "stop":
            print("stopped" if stop(args.dir) else "not running")
        elif args.cmd == "kill":
            print("killed" if kill(args.dir) else "not running")
    except KafkaError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
