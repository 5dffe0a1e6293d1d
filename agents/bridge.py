"""The bridge: Alertmanager webhooks in, one `alerts.raw` record per alert out.

`POST /alerts` answers 200 only once the broker has acknowledged every record
of the webhook. Bad input is refused whole, before anything is sent: 400 for
JSON or schema errors (the error names the field), 413 over the body limit or
for an alert whose labels alone are over the record limit (long annotations
are cut to fit instead, saying so), 415 for a body that is not JSON, 401 without the configured credentials. A
broker that is away or slow gets 503 with Retry-After: Alertmanager retries a
5xx but drops a notification for good on any 4xx, so a valid webhook never
gets one. The receive time is the event time: it goes into every record and
is the record's Kafka timestamp.

A client cannot hold the bridge's connections: one that has not sent its
request headers within the idle timeout is closed, a request not read and
answered within the request timeout gets 503 and its connection closed, and
past the connection cap a new connection gets 503 at once.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import ValidationError

from agents.producer import Publisher, Unavailable
from pipeline.alerts import AlertRecord, InputError, Webhook, encode_within, split_webhook, validation_error
from pipeline.identity import Identity

log = logging.getLogger("stormdrain.bridge")
MIB = 1 << 20
JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class BridgeSettings:
    """Limits and credentials of the bridge."""

    max_body: int = 32 * MIB  # a group of about 40,000 alerts
    max_record: int = MIB // 2  # far below the broker's default 1 MiB message limit
    retry_after: int = 5
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    request_timeout: float = 60.0  # to read a request and answer it; far above the publish timeout
    idle_timeout: float = 30.0  # for a connection's request headers, and between requests
    max_connections: int = 1024


class Metrics:
    """What the bridge exposes on /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("stormdrain_bridge_requests", "Webhook requests by HTTP status", ["code"],
                                registry=self.registry)
        self.alerts = Counter("stormdrain_bridge_alerts_published", "Alert records acknowledged by Kafka",
                              registry=self.registry)
        self.ack = Histogram("stormdrain_bridge_ack_seconds", "Receive to Kafka acknowledgement of a webhook",
                             buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10), registry=self.registry)
        self.ready = Gauge("stormdrain_bridge_broker_ready", "1 when Kafka answers and knows alerts.raw",
                           registry=self.registry)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def build_app(publisher: Publisher, identity: Identity, settings: BridgeSettings = BridgeSettings(),
              clock: Callable[[], datetime] = utc_now) -> web.Application:
    """The bridge's HTTP application; `clock` gives the receive time (a test may set it)."""
    metrics = Metrics()
    bridge = _Bridge(publisher, identity, settings, clock, metrics)
    app = web.Application(client_max_size=settings.max_body,
                          middlewares=[_deadline(settings.request_timeout, settings.retry_after)])
    app.router.add_post("/alerts", bridge.receive)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", bridge.readyz)
    app.router.add_get("/metrics", bridge.metrics_text)
    app.on_startup.append(lambda _: publisher.start())
    app.on_cleanup.append(lambda _: publisher.stop())
    return app


async def _healthz(_: web.Request) -> web.Response:
    return _json(200, {"status": "ok"})


def _deadline(seconds: float, retry_after: int):
    """A request not read and answered in time gets 503 (Alertmanager sends it again) and its connection closed."""

    @web.middleware
    async def deadline(request: web.Request, handler) -> web.StreamResponse:
        try:
            async with asyncio.timeout(seconds):
                return await handler(request)
        except TimeoutError:
            log.warning("%s %s not read and answered within %g s; closed", request.method, request.path, seconds)
            response = _json(503, {"error": f"request not read and answered within {seconds:g} s", "field": ""},
                             headers={"Retry-After": str(retry_after)})
            response.force_close()
            return response

    return deadline


class _QuietClients(logging.Filter):
    """A client gone mid-request is dropped silently, a malformed request is one line: neither is the bridge's
    fault, and a traceback for each would let any client flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ConnectionError):
            return False
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "refused a malformed HTTP request: %s", (exc.message,)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


QUIET_CLIENTS = _QuietClients()


async def serve(app: web.Application, host: str, port: int, settings: BridgeSettings, stop: asyncio.Event) -> None:
    """Serve `app` until `stop` is set, under the settings' idle timeout and connection cap."""
    logging.getLogger("aiohttp.server").addFilter(QUIET_CLIENTS)  # the same filter object is added once
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=settings.idle_timeout, lingering_time=2.0,
                           shutdown_timeout=10.0)
    await runner.setup()
    try:
        try:
            server = await asyncio.get_running_loop().create_server(
                _Capped(runner.server, settings.max_connections, settings.retry_after), host, port,
                reuse_address=True, backlog=512)
        except (OSError, OverflowError) as exc:
            raise InputError("--port", f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") \
                from None
        for sock in server.sockets:
            log.warning("bridge listening on http://%s:%d", *sock.getsockname()[:2])
        try:
            await stop.wait()
        finally:
            server.close()
    finally:
        await runner.cleanup()


class _Capped:
    """The app's connections up to a cap; past it a connection gets 503 and is closed at once."""

    def __init__(self, server: web.Server, cap: int, retry_after: int):
        self.server, self.cap = server, cap
        self.busy = (f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after}\r\n"
                     "Content-Length: 0\r\nConnection: close\r\n\r\n").encode()
        self.refused = 0
        self.starting = 0  # made, not yet connected: a burst of accepts makes them all before any connects

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self.server.connections) + self.starting < self.cap:
            self.starting += 1
            asyncio.get_running_loop().call_soon(self._started)  # runs just before its connection_made
            return self.server()
        self.refused += 1
        if self.refused in (1, 10) or self.refused % 1000 == 0:
            log.warning("%d connections open, the cap; %d refused so far", self.cap, self.refused)
        return _Busy(self.busy)

    def _started(self) -> None:
        self.starting -= 1


class _Busy(asyncio.Protocol):
    """Writes its answer and closes; it reads what the client sent meanwhile, for a second at most, so that
    closing with that unread does not reset the connection before the client reads the answer."""

    def __init__(self, answer: bytes):
        self.answer = answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.answer)
        transport.write_eof()
        asyncio.get_running_loop().call_later(1.0, transport.close)
        self.transport = transport

    def eof_received(self) -> bool:
        self.transport.close()
        return False


class _Bridge:
    def __init__(self, publisher: Publisher, identity: Identity, settings: BridgeSettings,
                 clock: Callable[[], datetime], metrics: Metrics):
        self.publisher = publisher
        self.identity = identity
        self.settings = settings
        self.clock = clock
        self.metrics = metrics

    async def receive(self, request: web.Request) -> web.Response:
        """Take one webhook: check it whole, then publish every alert or none answered 200."""
        received_at = self.clock()
        response = await self._receive(request, received_at)
        self.metrics.requests.labels(str(response.status)).inc()
        return response

    async def _receive(self, request: web.Request, received_at: datetime) -> web.Response:
        try:
            records = await self._records(request, received_at)
        except _Refused as refused:
            return _json(refused.status, refused.error.as_json())
        values = [encode_within(r, self.settings.max_record) for r in records]
        too_big = next((i for i, value in enumerate(values) if value is None), None)
        if too_big is not None:
            return _json(413, InputError(f"alerts.{too_big}.labels", f"the labels of one alert are over the "
                                         f"{self.settings.max_record} byte record limit").as_json())
        encoded = [(r.scope.encode(), value) for r, value in zip(records, values)]
        try:
            await self.publisher.publish(encoded, int(received_at.timestamp() * 1000))
        except Unavailable as exc:
            return _json(503, {"error": str(exc), "field": ""},
                         headers={"Retry-After": str(self.settings.retry_after)})
        self.metrics.alerts.inc(len(records))
        self.metrics.ack.observe((utc_now() - received_at).total_seconds())
        return _json(200, {"status": "published", "alerts": len(records)})

    async def _records(self, request: web.Request, received_at: datetime) -> list[AlertRecord]:
        self._authorize(request.headers.get("Authorization", ""))
        if request.content_type not in JSON_TYPES:
            raise _Refused(415, InputError("Content-Type", f"expected application/json, got {request.content_type!r}"))
        if request.content_length is not None and request.content_length > self.settings.max_body:
            raise _Refused(413, _over_limit(request.content_length, self.settings.max_body))
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(413, _over_limit(None, self.settings.max_body)) from None
        try:
            webhook = Webhook.model_validate_json(body)
        except ValidationError as exc:
            error = validation_error(exc)
            raise _Refused(400, InputError(error.field or "body", error.reason)) from None
        return split_webhook(webhook, received_at, self.identity.scope)

    def _authorize(self, header: str) -> None:
        bearer, basic = self.settings.bearer_token, self.settings.basic_auth
        if bearer is None and basic is None:
            return
        if bearer is not None and _same(header, f"Bearer {bearer}"):
            return
        if basic is not None and _same(header, "Basic " + base64.b64encode(":".join(basic).encode()).decode()):
            return
        raise _Refused(401, InputError("Authorization", "missing or wrong credentials"))

    async def readyz(self, _: web.Request) -> web.Response:
        ready = self.publisher.ready
        self.metrics.ready.set(1 if ready else 0)
        return _json(200 if ready else 503, {"ready": ready, "topic": self.publisher.topic})

    async def metrics_text(self, _: web.Request) -> web.Response:
        self.metrics.ready.set(1 if self.publisher.ready else 0)
        response = web.Response(body=generate_latest(self.metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


class _Refused(Exception):
    def __init__(self, status: int, error: InputError):
        super().__init__(str(error))
        self.status = status
        self.error = error


def _over_limit(size: int | None, limit: int) -> InputError:
    what = f"body is {size} bytes" if size is not None else "body is larger"
    return InputError("body", f"{what}, over the {limit} byte limit")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _json(status: int, payload: dict, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json", headers=headers)
