#!/usr/bin/env python3
"""Run a real Prometheus and a real Alertmanager on loopback, for tests and benchmarks.

Standard library only, so tests can load it straight from its path::

    import importlib.util, pathlib
    spec = importlib.util.spec_from_file_location("localprom", pathlib.Path("deploy/local/prometheus.py"))
    localprom = importlib.util.module_from_spec(spec); spec.loader.exec_module(localprom)

    localprom.ensure_installed()
    localprom.backfill(localprom.openmetrics_text(series), tsdb_dir)
    with localprom.start_prometheus(tsdb_dir) as prom:          # prom.url, prom.log_path
        ...
    with localprom.WebhookReceiver() as hook, \\
         localprom.start_alertmanager(config_text(hook.url)) as am:
        localprom.post_alerts(am.url, [...])
        body = hook.wait_for(1)[0].json

Binaries are Debian's (bookworm: prometheus 2.42, prometheus-alertmanager 0.25):
``/usr/bin/prometheus``, ``/usr/bin/promtool``, ``/usr/bin/prometheus-alertmanager``.
Override with the environment variables PROMETHEUS_BIN, PROMTOOL_BIN, ALERTMANAGER_BIN.

``promtool tsdb create-blocks-from openmetrics`` rules (checked on promtool 2.42):

* the text must end with a ``# EOF`` line; nothing may follow it (not even an
  empty line), and there may be no empty lines anywhere;
* every sample needs a timestamp, in **seconds** (floats allowed, ms precision);
  a millisecond timestamp is silently read as seconds (year ~54000);
* series may be interleaved, but each series' samples must come in increasing
  time order: an out-of-order or duplicate sample is silently dropped;
* ``# TYPE`` / ``# HELP`` lines are optional; a ``# UNIT`` must be a suffix of
  the metric name;
* blocks are cut at 2 h boundaries (UTC epoch aligned); running it again into
  the same directory just adds blocks (overlaps are merged by Prometheus);
* promtool re-reads the whole input once per 2 h window, so :func:`backfill` splits
  the input per window and runs promtool in parallel (24 h x 1000 series: 71 s -> 28 s).

Command line: ``python prometheus.py install | versions | backfill FILE DIR |
prometheus DIR [--port N] [--config FILE] | alertmanager CONFIG [--port N]``.
"""

import atexit
import contextlib
import http.server
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

PROMETHEUS_BIN = os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus")
PROMTOOL_BIN = os.environ.get("PROMTOOL_BIN", "/usr/bin/promtool")
ALERTMANAGER_BIN = os.environ.get("ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager")

#: binary path -> Debian package that provides it
PACKAGES = {
    PROMETHEUS_BIN: "prometheus",
    PROMTOOL_BIN: "prometheus",
    ALERTMANAGER_BIN: "prometheus-alertmanager",
}

HOST = "127.0.0.1"


class NotInstalled(RuntimeError):
    """A Prometheus/Alertmanager binary is missing and could not be installed."""


class StartError(RuntimeError):
    """A process exited or did not become ready in time."""


# --------------------------------------------------------------------------- install

_apt_updated = False
_install_lock = threading.Lock()


def missing_binaries() -> list[str]:
    return [b for b in PACKAGES if not (os.path.isfile(b) and os.access(b, os.X_OK))]


def ensure_installed() -> dict[str, str]:
    """Make sure the three binaries exist; install the Debian packages if root.

    Returns ``{"prometheus": path, "promtool": path, "alertmanager": path}``.
    Raises :class:`NotInstalled` naming what is missing otherwise.
    """
    global _apt_updated
    with _install_lock:
        missing = missing_binaries()
        if missing:
            pkgs = sorted({PACKAGES[b] for b in missing})
            can_apt = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
            if not can_apt:
                raise NotInstalled(
                    f"missing {', '.join(missing)}; install the Debian package(s) "
                    f"{' '.join(pkgs)} (apt-get install -y {' '.join(pkgs)}) as root, "
                    "or set PROMETHEUS_BIN / PROMTOOL_BIN / ALERTMANAGER_BIN"
                )
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            try:
                if not _apt_updated:
                    subprocess.run(["apt-get", "update"], env=env, check=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                    _apt_updated = True
                subprocess.run(
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", *pkgs],
                    env=env, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                )
            except subprocess.CalledProcessError as e:
                out = (e.stdout or b"").decode(errors="replace")[-2000:]
                raise NotInstalled(f"apt-get failed for {' '.join(pkgs)}:\n{out}") from e
            missing = missing_binaries()
            if missing:
                raise NotInstalled(f"still missing after apt-get install {' '.join(pkgs)}: {', '.join(missing)}")
    return {"prometheus": PROMETHEUS_BIN, "promtool": PROMTOOL_BIN, "alertmanager": ALERTMANAGER_BIN}


def versions() -> dict[str, str]:
    """First line of ``--version`` of each binary, e.g. ``'prometheus, version 2.42.0+ds (...)'``."""
    out = {}
    for name, b in (("prometheus", PROMETHEUS_BIN), ("promtool", PROMTOOL_BIN), ("alertmanager", ALERTMANAGER_BIN)):
        r = subprocess.run([b, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out[name] = (r.stdout.strip().splitlines() or [""])[0]
    return out


# --------------------------------------------------------------------------- openmetrics / backfill

def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_value(v: float) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "+Inf" if v > 0 else "-Inf"
    return repr(v) if isinstance(v, float) else str(v)


def _fmt_ts(ts: Any) -> str:
    if hasattr(ts, "timestamp"):  # datetime
        ts = ts.timestamp()
    if ts > 1e11:
        raise ValueError(f"timestamp {ts} looks like milliseconds; OpenMetrics backfill wants seconds")
    if type(ts) is int:
        return str(ts)
    return ("%.3f" % ts).rstrip("0").rstrip(".")


def openmetrics_text(series: Iterable[tuple[str, Mapping[str, str], Iterable[tuple[Any, float]]]],
                     types: Mapping[str, str] | None = None) -> str:
    """Render ``(metric_name, labels, [(unix_seconds | datetime, value), ...])`` triples as
    backfillable OpenMetrics.

    Samples of each series are sorted by time and de-duplicated to ms (promtool would
    silently drop them otherwise); labels are sorted and escaped; the text ends
    with ``# EOF``.  ``types`` optionally maps a metric *family* name to its
    OpenMetrics type (``gauge``, ``counter``, ...); for a counter the family
    name is the sample name without ``_total``.
    """
    lines: list[str] = [f"# TYPE {fam} {typ}" for fam, typ in (types or {}).items()]
    append = lines.append
    for name, labels, samples in series:
        lab = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()))
        head = f"{name}{{{lab}}} " if lab else f"{name} "
        last = None
        for ts, val in sorted(samples, key=lambda s: s[0]):
            t = _fmt_ts(ts)
            if t == last:
                continue
            last = t
            append(f"{head}{_fmt_value(val)} {t}")
    append("# EOF")
    return "\n".join(lines) + "\n"


@dataclass
class BackfillResult:
    tsdb_dir: Path
    blocks: list[str]          # ULIDs of the blocks this call created
    seconds: float             # wall time, splitting + promtool
    output: str                # promtool's table(s)


BLOCK_SECONDS = 7200  # promtool cuts blocks at 2 h boundaries


def _split_by_block(text: str) -> list[str]:
    """Split OpenMetrics text into one text per 2 h block window (metadata lines repeated in
    each).  promtool re-reads the whole input once per block window, so one run over N hours
    costs O(N/2 x input); N/2 small runs in parallel cost O(input)."""
    meta: list[str] = []
    chunks: dict[int, list[str]] = {}
    for line in text.splitlines():
        if not line:
            raise ValueError("OpenMetrics text must not contain empty lines")
        if line[0] == "#":
            if line != "# EOF":
                meta.append(line)
            continue
        ts = float(line.rsplit(" ", 1)[-1])
        if ts > 1e11:
            raise ValueError(f"timestamp in {line[:120]!r} looks like milliseconds; backfill wants seconds")
        chunks.setdefault(int(ts // BLOCK_SECONDS), []).append(line)
    if len(chunks) <= 1:
        return [text]
    head = "\n".join(meta) + "\n" if meta else ""
    return [head + "\n".join(chunks[k]) + "\n# EOF\n" for k in sorted(chunks)]


def backfill(openmetrics: str | os.PathLike, tsdb_dir: str | os.PathLike, *,
             parallel: int | None = None) -> BackfillResult:
    """Write TSDB blocks into ``tsdb_dir`` (created if needed; existing blocks are kept) from
    OpenMetrics text, or from a path to a file holding it.

    A ``str`` that contains a newline or ends with ``# EOF`` is taken as text; anything else as
    a path.  Input spanning several 2 h windows is split per window and promtool runs
    ``parallel`` (default: CPU count) at a time: same blocks, much faster for long ranges.
    """
    ensure_installed()
    tsdb_dir = Path(tsdb_dir)
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    if isinstance(openmetrics, str) and ("\n" in openmetrics or openmetrics.rstrip().endswith("# EOF")):
        text = openmetrics
    else:
        text = Path(openmetrics).read_text()
    text = text.rstrip("\n") + "\n"
    if not text.endswith("# EOF\n"):
        raise ValueError("OpenMetrics text must end with a '# EOF' line")
    parts = _split_by_block(text)
    before = {p.name for p in tsdb_dir.iterdir()}
    tmpdir = tempfile.mkdtemp(prefix="backfill-")

    def run(i_part: tuple[int, str]) -> subprocess.CompletedProcess:
        src = os.path.join(tmpdir, f"part{i_part[0]}.om")
        with open(src, "w") as f:
            f.write(i_part[1])
        try:
            return subprocess.run([PROMTOOL_BIN, "tsdb", "create-blocks-from", "openmetrics", src, str(tsdb_dir)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        finally:
            os.unlink(src)

    try:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max(1, parallel or os.cpu_count() or 1)) as ex:
            results = list(ex.map(run, enumerate(parts)))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    secs = time.monotonic() - t0
    for r in results:
        if r.returncode != 0:
            raise RuntimeError(f"promtool tsdb create-blocks-from openmetrics failed ({r.returncode}): {r.stdout.strip()}")
    blocks = sorted(p.name for p in tsdb_dir.iterdir() if p.name not in before and (p / "meta.json").exists())
    return BackfillResult(tsdb_dir, blocks, secs, "".join(r.stdout for r in results))


# --------------------------------------------------------------------------- processes

def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_live: set["ServiceProcess"] = set()


@atexit.register
def _kill_all() -> None:
    for p in list(_live):
        with contextlib.suppress(Exception):
            p.stop()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_post_json(url: str, payload: Any, timeout: float = 10.0, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@dataclass(eq=False)
class ServiceProcess:
    """A running Prometheus or Alertmanager. Context manager; ``stop()`` is idempotent."""

    name: str
    argv: list[str]
    port: int
    workdir: Path                 # temp dir holding config, log (and AM storage)
    log_path: Path
    proc: subprocess.Popen | None = None
    startup_seconds: float = 0.0  # spawn -> /-/ready answered 200
    _owns_workdir: bool = True

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self, tail: int | None = None) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-tail:]) if tail else text

    def reload(self) -> None:
        """SIGHUP: re-read config (and rule files)."""
        if self.running():
            self.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

    def stop(self, timeout: float = 10.0) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(5)
        _live.discard(self)

    def cleanup(self) -> None:
        """Stop and remove the temp workdir (log included)."""
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "ServiceProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{self.name} {self.url} pid={self.pid} log={self.log_path}>"


def _spawn_ready(name: str, build_argv: Callable[[int], list[str]], port: int, workdir: Path,
                 owns_workdir: bool, timeout: float, ready_path: str = "/-/ready") -> ServiceProcess:
    """Start the process and wait for GET ready_path == 200. Retries with a new port on bind races."""
    attempts = 3 if port == 0 else 1
    last_err = ""
    for attempt in range(attempts):
        p = port or free_port()
        log_path = workdir / f"{name}.log"
        argv = build_argv(p)
        logf = open(log_path, "ab")
        logf.write(f"# {' '.join(argv)}\n".encode())
        logf.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=workdir, start_new_session=True)
        logf.close()
        sp = ServiceProcess(name, argv, p, workdir, log_path, proc, _owns_workdir=owns_workdir)
        _live.add(sp)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                status, _ = http_get(sp.url + ready_path, timeout=1.0)
                if status == 200:
                    sp.startup_seconds = time.monotonic() - t0
                    return sp
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        sp.stop()
        last_err = sp.log_text(tail=30)
        if proc.returncode is not None and "address already in use" in last_err and attempt + 1 < attempts:
            continue
        break
    raise StartError(f"{name} did not become ready (exit={proc.returncode}); log {log_path}:\n{last_err}")


def _prom_config(evaluation_interval: str, rule_paths: Sequence[str], alertmanager_url: str | None,
                 scrape_targets: Sequence[str], scrape_interval: str) -> str:
    lines = ["global:", f"  evaluation_interval: {evaluation_interval}", f"  scrape_interval: {scrape_interval}"]
    if rule_paths:
        lines.append("rule_files:")
        lines += [f"  - {json.dumps(str(p))}" for p in rule_paths]
    if alertmanager_url:
        u = alertmanager_url.split("://", 1)[-1].rstrip("/")
        lines += ["alerting:", "  alertmanagers:", "    - static_configs:", f"        - targets: [{json.dumps(u)}]"]
    if scrape_targets:
        lines += ["scrape_configs:", "  - job_name: local", "    static_configs:",
                  f"      - targets: [{', '.join(json.dumps(t.split('://', 1)[-1].rstrip('/')) for t in scrape_targets)}]"]
    return "\n".join(lines) + "\n"


def start_prometheus(tsdb_dir: str | os.PathLike, port: int = 0, config: str | None = None, *,
                     rules: Sequence[str] = (), rule_files: Sequence[str | os.PathLike] = (),
                     alertmanager_url: str | None = None, scrape_targets: Sequence[str] = (),
                     evaluation_interval: str = "15s", scrape_interval: str = "15s",
                     retention: str = "100y", extra_args: Sequence[str] = (),
                     external_url: str | None = None,
                     workdir: str | os.PathLike | None = None, timeout: float = 60.0) -> ServiceProcess:
    """Start ``prometheus`` on 127.0.0.1 over ``tsdb_dir``; returns once ``/-/ready`` answers 200.

    ``config``: full prometheus.yml *text*, used verbatim.  When ``None`` a config is
    generated from ``evaluation_interval``, ``rules`` (YAML texts of rule files, written
    into the workdir), ``rule_files`` (paths), ``alertmanager_url`` (send alerts there)
    and ``scrape_targets`` (``host:port`` or URLs serving ``/metrics``).  With an explicit
    ``config`` and ``rules``/``rule_files`` a ``rule_files:`` section is appended
    (the config must not have one).
    Retention defaults to 100y.  (Prometheus 2.42 measures time retention from the newest
    block's max time, not the wall clock: blocks older than that minus the retention are
    deleted at startup, e.g. with 15d and backfilled blocks two months apart.)
    ``--web.enable-lifecycle`` and ``--web.enable-admin-api`` are on; ``external_url``
    (-> alerts' ``generatorURL``) defaults to the loopback URL, not the host name.
    """
    ensure_installed()
    tsdb_dir = Path(tsdb_dir).resolve()
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    owns = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="prometheus-")) if owns else Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    rule_paths = [str(Path(p).resolve()) for p in rule_files]
    for i, text in enumerate(rules):
        rp = wd / f"rules_{i}.yml"
        rp.write_text(text)
        rule_paths.append(str(rp))
    if config is None:
        config = _prom_config(evaluation_interval, rule_paths, alertmanager_url, scrape_targets, scrape_interval)
    elif rule_paths:
        if "rule_files:" in config:
            raise ValueError("config already has rule_files:; reference the rule files there")
        config = config.rstrip("\n") + "\nrule_files:\n" + "".join(f"  - {json.dumps(p)}\n" for p in rule_paths)
    cfg = wd / "prometheus.yml"
    cfg.write_text(config)

    def argv(p: int) -> list[str]:
        return [PROMETHEUS_BIN, f"--config.file={cfg}", f"--storage.tsdb.path={tsdb_dir}",
                f"--web.listen-address={HOST}:{p}", f"--web.external-url={external_url or f'http://{HOST}:{p}'}",
                f"--storage.tsdb.retention.time={retention}", "--web.enable-lifecycle",
                "--web.enable-admin-api", *extra_args]

    return _spawn_ready("prometheus", argv, port, wd, owns, timeout)


def start_alertmanager(config_yaml_text: str, port: int = 0, *, extra_args: Sequence[str] = (),
                       workdir: str | os.PathLike | None = None, external_url: str | None = None,
                       timeout: float = 30.0) -> ServiceProcess:
    """Start ``prometheus-alertmanager`` on 127.0.0.1 with the given config text; no gossip
    (``--cluster.listen-address=``), its own ``--storage.path`` under a temp workdir.
    Returns once ``/-/ready`` answers 200.  ``external_url`` (-> ``externalURL`` in webhooks)
    defaults to the loopback URL.
    """
    ensure_installed()
    owns = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="alertmanager-")) if owns else Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    cfg = wd / "alertmanager.yml"
    cfg.write_text(config_yaml_text)
    storage = wd / "data"
    storage.mkdir(exist_ok=True)

    def argv(p: int) -> list[str]:
        return [ALERTMANAGER_BIN, f"--config.file={cfg}", f"--storage.path={storage}",
                f"--web.listen-address={HOST}:{p}", "--cluster.listen-address=",
                f"--web.external-url={external_url or f'http://{HOST}:{p}'}", *extra_args]

    return _spawn_ready("alertmanager", argv, port, wd, owns, timeout)


def post_alerts(alertmanager_url: str, alerts: Sequence[Mapping[str, Any]], timeout: float = 10.0) -> None:
    """POST /api/v2/alerts. Each alert: ``{"labels": {...}, "annotations": {...}, "startsAt": ..., "endsAt": ...,
    "generatorURL": ...}``; Alertmanager fills missing times (startsAt=now, endsAt=now+resolve_timeout)."""
    status, body = http_post_json(alertmanager_url.rstrip("/") + "/api/v2/alerts", list(alerts), timeout)
    if status != 200:
        raise RuntimeError(f"POST /api/v2/alerts -> {status}: {body[:500]!r}")


# --------------------------------------------------------------------------- helpers for tests

@dataclass
class ReceivedRequest:
    at: float                  # time.time() when the request arrived
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    status: int                # what we answered

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class WebhookReceiver:
    """A stdlib HTTP server on 127.0.0.1 that records every request (any path, any method).

    ``responses`` is a list of status codes answered in turn (the last one repeats);
    default 200.  ``.url`` is the base URL; ``.requests`` the recorded :class:`ReceivedRequest`s.
    """

    def __init__(self, responses: Sequence[int] = (200,), port: int = 0,
                 response_headers: Mapping[str, str] | None = None):
        self.responses = list(responses) or [200]
        self.response_headers = dict(response_headers or {})
        self.requests: list[ReceivedRequest] = []
        self._cond = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with outer._cond:
                    i = len(outer.requests)
                    status = outer.responses[min(i, len(outer.responses) - 1)]
                    outer.requests.append(ReceivedRequest(time.time(), self.command, self.path,
                                                          list(self.headers.items()), body, status))
                    outer._cond.notify_all()
                payload = b"{}" if status < 300 else json.dumps({"error": f"status {status}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in outer.response_headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PUT = do_GET = _handle

            def log_message(self, *a: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((HOST, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

    def wait_for(self, n: int, timeout: float = 30.0) -> list[ReceivedRequest]:
        """Block until at least ``n`` requests arrived; return them all (raise on timeout)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"got {len(self.requests)} of {n} requests in {timeout}s")
            return list(self.requests)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "WebhookReceiver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MetricsServer:
    """Serves Prometheus text exposition at ``/metrics`` for Prometheus to scrape (live data).
    ``.text`` can be replaced at any time; ``.target`` is ``host:port`` for a scrape config."""

    def __init__(self, text: str = "", port: int = 0):
        self.text = text
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = outer.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((HOST, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def target(self) -> str:
        return f"{HOST}:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- CLI

def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="install the Debian packages if missing")
    sub.add_parser("versions")
    b = sub.add_parser("backfill", help="OpenMetrics file -> TSDB blocks")
    b.add_argument("file")
    b.add_argument("tsdb_dir")
    p = sub.add_parser("prometheus", help="serve a TSDB dir until Ctrl-C")
    p.add_argument("tsdb_dir")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--config")
    p.add_argument("--rules", action="append", default=[])
    a = sub.add_parser("alertmanager", help="run Alertmanager until Ctrl-C")
    a.add_argument("config")
    a.add_argument("--port", type=int, default=0)
    ns = ap.parse_args(argv)

    if ns.cmd == "install":
        print(json.dumps(ensure_installed(), indent=2))
    elif ns.cmd == "versions":
        ensure_installed()
        print(json.dumps(versions(), indent=2))
    elif ns.cmd == "backfill":
        r = backfill(Path(ns.file), ns.tsdb_dir)
        print(r.output, end="")
        print(f"{len(r.blocks)} block(s) in {r.seconds:.2f}s", file=sys.stderr)
    else:
        if ns.cmd == "prometheus":
            h = start_prometheus(ns.tsdb_dir, ns.port, Path(ns.config).read_text() if ns.config else None,
                                 rule_files=ns.rules)
        else:
            h = start_alertmanager(Path(ns.config).read_text(), ns.port)
        print(f"{h.name} ready at {h.url} in {h.startup_seconds:.2f}s; log {h.log_path}", flush=True)
        try:
            while h.running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            h.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
