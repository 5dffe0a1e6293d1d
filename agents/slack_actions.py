"""`POST /slack/actions`: button clicks from Slack, verified, published to approvals or feedback once.

Add it to the bridge's aiohttp app with `add_slack_actions(app, publish,
signing_secret)`. A request whose signature does not verify, or is older than
five minutes, gets 401 and publishes nothing. A verified click becomes an
Approval (`stormdrain.approvals`) or Feedback (`stormdrain.feedback`) keyed by
incident id, with a request id made from Slack's trigger id, so Slack's
retries (X-Slack-Retry-Num) and replays within the window publish once; the
consumers deduplicate by request id too. The notifier, which consumes both
topics, then updates the message to show who did what.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from datetime import datetime, timezone
from typing import Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel

from agents.producer import Unavailable
from pipeline.actions import Approval, Feedback
from pipeline.alerts import InputError
from pipeline.slack.clicks import acts_from, parse_payload, verify
from topics.catalog import APPROVALS, FEEDBACK, NAMESPACE, Topic

log = logging.getLogger("stormdrain.slack.actions")
PATH = "/slack/actions"
MAX_BODY = 1 << 20  # a click carries the whole message it came from
WINDOW_S = 15 * 60  # longer than the signature's five minutes, so any replay it lets through is caught here
MAX_REMEMBERED = 100_000
Publish = Callable[[Topic, str, BaseModel], Awaitable[object]]
APP_KEY = web.AppKey("slack_actions", object)


def kafka_publisher(producer, namespace: str = NAMESPACE) -> Publish:
    """Publish to the namespace's topic through a producer (aiokafka's, or the bridge's publisher), keyed by
    incident id, acknowledged before the click is answered."""
    async def publish(topic: Topic, key: str, value: BaseModel) -> None:
        topic = topic.in_namespace(namespace)
        await producer.send_and_wait(topic.name, topic.encode(value), key=key.encode())
    return publish


class Once:
    """Runs each request id's publish once within a window; a concurrent duplicate waits for the first."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.window_s, self.clock = window_s, clock
        self.seen: OrderedDict[str, tuple[float, asyncio.Future]] = OrderedDict()

    async def run(self, request_id: str, publish: Callable[[], Awaitable[object]]) -> bool:
        """True when this call published; False when the same request was already handled."""
        self._expire()
        known = self.seen.get(request_id)
        if known is not None:
            await asyncio.shield(known[1])
            return False
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.seen[request_id] = (self.clock(), done)
        try:
            await publish()
        except BaseException as exc:
            del self.seen[request_id]  # not published: Slack's retry (or the next click) may try again
            done.set_exception(exc)
            done.exception()  # marked retrieved: the waiters, if any, get it too
            raise
        done.set_result(True)
        return True

    def _expire(self) -> None:
        horizon = self.clock() - self.window_s
        while self.seen and (len(self.seen) > MAX_REMEMBERED or next(iter(self.seen.values()))[0] < horizon):
            self.seen.popitem(last=False)


class SlackActions:
    """The handler: verify, parse, publish once, answer."""

    def __init__(self, publish: Publish, signing_secret: str, clock: Callable[[], float] = time.time,
                 retry_after: int = 5):
        if not signing_secret:
            raise ValueError("a Slack signing secret is required (SLACK_SIGNING_SECRET)")
        self.publish, self.secret, self.clock = publish, signing_secret.encode(), clock
        self.retry_after = retry_after  # seconds Slack should wait before it retries a click the broker missed
        self.once = Once()
        self.counts: Counter = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        body = await _bounded_body(request)
        if body is None:
            return self._refuse(413, "too_large", "the body is over the size limit")
        why = verify(self.secret, body, request.headers.get("X-Slack-Request-Timestamp"),
                     request.headers.get("X-Slack-Signature"), self.clock())
        if why is not None:
            return self._refuse(401, why, "the request signature does not verify")
        try:
            payload = parse_payload(body)
            acts = acts_from(payload, datetime.fromtimestamp(self.clock(), timezone.utc)) if payload else []
        except InputError as exc:
            return self._refuse(400, "malformed", str(exc))
        try:
            for act in acts:
                await self._publish_once(act, request.headers.get("X-Slack-Retry-Num"))
        except Unavailable as exc:  # Slack retries a failed click; nothing was taken as published
            return self._refuse(503, "unavailable", str(exc), {"Retry-After": str(self.retry_after)})
        self.counts["accepted" if acts else "ignored"] += 1
        return web.Response(status=200)

    async def _publish_once(self, act: Approval | Feedback, retry: str | None) -> None:
        topic = APPROVALS if isinstance(act, Approval) else FEEDBACK
        published = await self.once.run(act.request_id, lambda: self.publish(topic, act.incident_id, act))
        self.counts["published" if published else "duplicate"] += 1
        log.info("%s %s for %s v%d by %s%s", "published" if published else "duplicate", act.kind,
                 act.incident_id, act.version, act.user_id, f" (Slack retry {retry[:8]})" if retry else "")

    def _refuse(self, status: int, reason: str, text: str, headers: dict | None = None) -> web.Response:
        self.counts[f"refused_{reason}"] += 1
        log.warning("refused a Slack action: %s (%s)", reason, text[:200])
        return web.json_response({"error": text[:500], "reason": reason}, status=status, headers=headers)


async def _bounded_body(request: web.Request) -> bytes | None:
    """The body, or None once it is over the limit (read no further than that)."""
    if (request.content_length or 0) > MAX_BODY:
        return None
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def add_slack_actions(app: web.Application, publish: Publish, signing_secret: str, path: str = PATH,
                      clock: Callable[[], float] = time.time, retry_after: int = 5) -> SlackActions:
    """Add `POST /slack/actions` to an aiohttp app; returns the handler (its `counts` are its metrics)."""
    actions = SlackActions(publish, signing_secret, clock, retry_after)
    app.router.add_post(path, actions.handle)
    app[APP_KEY] = actions
    return actions
