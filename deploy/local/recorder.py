#!/usr/bin/env python3
"""A local HTTP API that records every call and fails on demand: the base of the local Slack and PagerDuty.

Stdlib only. Each call is recorded with its time, method, parameters, status
and answer. Faults are queued per method (or for any method): the next N calls
get HTTP 429 with Retry-After, a 5xx, or an API error, optionally after the
call took effect (a 500 for a message that was in fact posted, as real APIs
sometimes do).

From Python::

    spec = importlib.util.spec_from_file_location("local_recorder", path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    with mod.Recorder().start() as api:   # api.url is http://127.0.0.1:PORT
        ...; api.calls

Over HTTP, for a server in another process: ``GET /_recorder/calls``,
``POST /_recorder/faults`` with ``{"method", "status", "count", "retry_after",
"error", "after_effect"}``, ``POST /_recorder/reset``.

Command line (a plain webhook receiver that answers 200 and records)::

    python deploy/local/recorder.py [--port 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_BODY = 10 << 20
ADMIN = "/_recorder/"


@dataclass
class Call:
    """One request as the API saw it."""

    method: str
    at: float
    params: dict
    headers: dict
    status: int = 0
    response: Any = None


@dataclass
class Fault:
    """What the next `count` calls of `method` ("*": any) get instead of an answer."""

    method: str = "*"
    status: int = 500
    count: int = 1
    retry_after: int | None = None
    error: str | None = None  # an API error in an HTTP 200 answer, e.g. "channel_not_found"
    after_effect: bool = False  # the call takes effect, then fails


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict = field(default_factory=dict)


class Recorder:
    """A recording HTTP API on 127.0.0.1; subclasses answer `call` for their methods."""

    name = "recorder"

    def __init__(self, port: int = 0, host: str = "127.0.0.1"):
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "Recorder":
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------

    def fail(self, method: str = "*", status: int = 500, count: int = 1, retry_after: int | None = None,
             error: str | None = None, after_effect: bool = False) -> None:
        with self.lock:
            self.faults.append(Fault(method, status, count, retry_after, error, after_effect))

    def rate_limit(self, count: int = 1, retry_after: int = 1, method: str = "*") -> None:
        """The next `count` calls get 429 with Retry-After, as an API over its rate limit does."""
        self.fail(method, 429, count, retry_after)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.faults.clear()

    def _take_fault(self, method: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method in ("*", method) and fault.count > 0:
                    fault.count -= 1
                    return fault
        return None

    # -- calls ---------------------------------------------------------------

    def method_of(self, path: str) -> str:
        return path.strip("/")

    def call(self, method: str, params: dict, headers: dict) -> Answer:
        """The API's answer to a call; the base records and accepts anything."""
        return Answer(200, {"ok": True})

    def fault_answer(self, fault: Fault) -> Answer:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        body = {"ok": False, "error": fault.error or ("ratelimited" if fault.status == 429 else "internal_error")}
        return Answer(200 if fault.error else fault.status, body, headers)

    def serve(self, method: str, params: dict, headers: dict) -> Answer:
        """Record the call; answer it, or fail it as queued."""
        record = Call(method, time.time(), params, headers)
        with self.lock:
            self.calls.append(record)
        fault = self._take_fault(method)
        answer = self.call(method, params, headers) if fault is None or fault.after_effect else None
        if fault is not None:
            answer = self.fault_answer(fault)
        record.status, record.response = answer.status, answer.body
        return answer

    def admin(self, verb: str, path: str, body: dict) -> Answer:
        if verb == "GET" and path == "calls":
            with self.lock:
                return Answer(200, [asdict(c) for c in self.calls])
        if verb == "POST" and path == "faults":
            self.fail(**{k: body[k] for k in asdict(Fault()) if k in body})
            return Answer(200, {"ok": True})
        if verb == "POST" and path == "reset":
            self.reset()
            return Answer(200, {"ok": True})
        return Answer(404, {"ok": False, "error": "unknown_admin_path"})

    def of(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method]


def _handler(api: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def _handle(self, verb: str) -> None:
            url = urlsplit(self.path)
            try:
                params = self._params(verb, url.query)
            except ValueError as exc:
                return self._send(Answer(400, {"ok": False, "error": "invalid_request", "detail": str(exc)}))
            if url.path.startswith(ADMIN):
                return self._send(api.admin(verb, url.path[len(ADMIN):], params))
            self._send(api.serve(api.method_of(url.path), params, dict(self.headers.items())))

        def _params(self, verb: str, query: str) -> dict:
            params: dict = dict(parse_qsl(query))
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ValueError("body too large")
            raw = self.rfile.read(length) if length else b""
            kind = self.headers.get("Content-Type", "")
            if raw and "json" in kind:
                body = json.loads(raw)
                params.update(body if isinstance(body, dict) else {"_body": body})
            elif raw:
                params.update(parse_qsl(raw.decode("utf-8")))
            return params

        def _send(self, answer: Answer) -> None:
            data = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # the calls are recorded; no noise on stderr
            pass

    return Handler


def serve_forever(api: Recorder, what: str) -> int:
    """Run a local API in the foreground until interrupted, printing its URL."""
    api.start()
    print(api.url, flush=True)
    print(f"{what} at {api.url}; calls at {api.url}{ADMIN}calls", file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        api.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local webhook receiver that records every call.")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    return serve_forever(Recorder(args.port), "webhook receiver")


if __name__ == "__main__":
    sys.exit(main())
