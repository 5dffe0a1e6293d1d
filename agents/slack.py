"""The Slack sink: one living message per incident through slack-sdk, queued per channel, nothing lost or doubled.

Calls go through slack-sdk's AsyncWebClient (its `base_url` points at Slack,
or at the local server in tests). Each channel has its own queue, so a rate
limit on one channel holds only that channel. HTTP 429 waits the Retry-After
(slack-sdk's rate-limit handler first, then this module's own loop, so a long
limit never drops a message); 5xx and connection failures back off and retry.

A post is the one call that is not idempotent. Before posting, the sink
writes a "pending" note in the message's reference; the post carries the
message key in its metadata. After a crash, or a failure that leaves it
unknown whether Slack took the post, the sink looks the message up in the
channel's history (by that metadata) before it posts again. References live
in a store (a compacted Kafka topic in production), so a redelivered
diagnosis updates the existing message instead of posting a second one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from agents.sinks import Backoff, Retry, retry_after
from pipeline.actions import Approval, Feedback
from pipeline.config import NotifyConfig
from pipeline.diagnose import Diagnosis
from pipeline.runbooks import Catalog
from pipeline.slack.digest import render_digest, window_start
from pipeline.slack.lifecycle import POST, MessageRef, Reply, decide
from pipeline.slack.page import Links, Message, render_message, reply_message
from pipeline.slack.routing import Target, targets

log = logging.getLogger("stormdrain.slack")
EVENT_TYPE = "stormdrain_message"
SLACK_API = "https://slack.com/api/"
# Errors that stop the notifier: nothing will get through until a person fixes the app's set-up.
FATAL = {"not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired", "missing_scope",
         "no_permission", "org_login_required", "ekm_access_denied", "not_allowed_token_type"}
TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
GONE = {"message_not_found", "cant_update_message", "edit_window_closed"}
LOOKBACK = timedelta(minutes=10)


class SlackFatal(RuntimeError):
    """Slack refuses the app itself (token, scopes): stop, commit nothing, let a person fix it."""


class Refused(RuntimeError):
    """Slack refused one message for good (e.g. channel_not_found); counted and logged, not retried."""


def client(token: str, base_url: str = SLACK_API, rate_limit_retries: int = 2) -> AsyncWebClient:
    """slack-sdk's client with only its rate-limit retry: other retries here know which posts took effect."""
    return AsyncWebClient(token=token, base_url=base_url,
                          retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries)])


class SlackCalls:
    """Slack Web API calls, one at a time per channel, retried until they succeed or are refused for good."""

    def __init__(self, web: AsyncWebClient, backoff: Backoff | None = None):
        self.web = web
        self.backoff = backoff or Backoff()
        self.locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.ids: dict[str, str] = {}  # channel name -> id, as Slack answered: one queue per channel either way
        self.counts: Counter = Counter()

    def queue(self, channel: str) -> asyncio.Lock:
        return self.locks[self.ids.get(channel, channel)]

    async def post(self, channel: str, message: Message, key: str, token: str, thread_ts: str | None = None,
                   since: datetime | None = None) -> tuple[str, str]:
        """Post once: (channel id, ts). After an unclear failure, look for the post before posting again."""
        metadata = {"event_type": EVENT_TYPE, "event_payload": {"key": key, "token": token}}
        async with self.queue(channel):
            attempt, unclear = 0, False
            while True:
                if unclear:
                    found = await self._find(channel, key, token, thread_ts, since)
                    if found:
                        self.counts["found_after_failure"] += 1
                        return found
                try:
                    answer = await self._once("chat_postMessage", channel=channel, text=message.text,
                                              blocks=message.blocks, thread_ts=thread_ts, metadata=metadata,
                                              unfurl_links=False, unfurl_media=False)
                    self.ids[channel] = answer["channel"]
                    return answer["channel"], answer["ts"]
                except Retry as retry:
                    unclear = unclear or retry.ambiguous
                    await self.backoff.wait(retry, attempt)
                    attempt += 1

    async def update(self, channel: str, ts: str, message: Message) -> None:
        async with self.queue(channel):
            await self._retrying("chat_update", channel=channel, ts=ts, text=message.text, blocks=message.blocks)

    async def find(self, channel: str, key: str, token: str, thread_ts: str | None = None,
                   since: datetime | None = None) -> tuple[str, str] | None:
        async with self.queue(channel):
            return await self._find(channel, key, token, thread_ts, since)

    async def _find(self, channel: str, key: str, token: str, thread_ts: str | None,
                    since: datetime | None) -> tuple[str, str] | None:
        """The (channel, ts) of a message this notifier posted with this key and token, if Slack has it."""
        oldest = f"{(since - LOOKBACK).timestamp():.6f}" if since else None
        try:
            if thread_ts:
                answer = await self._retrying("conversations_replies", channel=channel, ts=thread_ts,
                                              include_all_metadata=True, limit=200)
            else:
                answer = await self._retrying("conversations_history", channel=channel, oldest=oldest,
                                              include_all_metadata=True, limit=200)
        except Refused as exc:  # e.g. a channel given by name, which history cannot read: post again
            log.warning("cannot look for an earlier post in %s: %s", channel, exc)
            return None
        for message in answer.get("messages", []):
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("key") == key and payload.get("token") == token:
                return answer.get("channel") or channel, message["ts"]
        return None

    async def _retrying(self, method: str, **kwargs) -> dict:
        attempt = 0
        while True:
            try:
                return await self._once(method, **kwargs)
            except Retry as retry:
                await self.backoff.wait(retry, attempt)
                attempt += 1

    async def _once(self, method: str, **kwargs) -> dict:
        """One call: its answer, or Retry (wait and call again), Refused or SlackFatal."""
        self.counts[method] += 1
        try:
            answer = await getattr(self.web, method)(**{k: v for k, v in kwargs.items() if v is not None})
            return {**answer.data, "channel": answer.get("channel") or kwargs.get("channel")}
        except SlackApiError as exc:
            raise self._classify(method, exc) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            raise Retry(f"{method}: {type(exc).__name__}", ambiguous=True) from None

    def _classify(self, method: str, exc: SlackApiError) -> Exception:
        status, error = exc.response.status_code, exc.response.get("error", "")
        if status == 429:
            self.counts["rate_limited"] += 1
            return Retry(f"{method}: rate limited", retry_after(exc.response.headers) or 1.0)
        if status >= 500 or error in TRANSIENT:
            return Retry(f"{method}: HTTP {status} {error}", ambiguous=True)
        if error in FATAL:
            return SlackFatal(f"{method}: {error}")
        return Refused(error or f"HTTP {status}")


class RefStore(Protocol):
    """Where message references are kept: read from memory, saved durably before a step counts as done."""

    def get(self, key: str) -> MessageRef | None: ...

    def view(self) -> Mapping[str, MessageRef]: ...

    async def save(self, ref: MessageRef) -> None: ...


class MemoryRefs:
    """References in memory: the embedded use, and the cache in front of the Kafka store."""

    def __init__(self, refs: Mapping[str, MessageRef] | None = None):
        self.refs: dict[str, MessageRef] = dict(refs or {})

    def get(self, key: str) -> MessageRef | None:
        return self.refs.get(key)

    def view(self) -> Mapping[str, MessageRef]:
        return self.refs

    async def save(self, ref: MessageRef) -> None:
        self.refs[ref.key] = ref


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class SlackSink:
    """Diagnoses and clicks into living Slack messages: decide (pure), call Slack, save the reference."""

    name = "slack"
    every_version = False  # a living message shows the newest version; the ones between are not worth a call

    def __init__(self, calls: SlackCalls, refs: RefStore, config: NotifyConfig = NotifyConfig(),
                 catalog: Catalog | None = None, clock: Callable[[], datetime] = utcnow):
        self.calls, self.refs, self.config, self.catalog, self.clock = calls, refs, config, catalog, clock
        self.links = Links(config.alertmanager_url, config.prometheus_url)
        self.key_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.counts: Counter = Counter()

    async def handle(self, diagnosis: Diagnosis) -> None:
        """Show one diagnosis version on every message it belongs to."""
        for target in targets(diagnosis, self.config.slack, self.refs.view()):
            async with self.key_locks[target.key]:
                await self._show(target, diagnosis)

    async def handle_act(self, act: Approval | Feedback) -> None:
        """Record who clicked what on the incident's page, and show it there."""
        async with self.key_locks[act.incident_id]:
            ref = self.refs.get(act.incident_id)
            if ref is None or ref.knows(act):
                self.counts["act_unknown_incident" if ref is None else "act_duplicate"] += 1
                return
            ref = ref.with_act(act)
            if ref.ts and ref.diagnosis is not None:
                ref = await self._guarded(ref, self._update(ref))
            await self.refs.save(ref)
            self.counts["act_shown"] += 1

    async def close(self) -> None:
        return None  # slack-sdk opens a session per call unless given one

    async def _show(self, target: Target, d: Diagnosis) -> None:
        known = self.refs.get(target.key)
        ref = await self._recover(known)
        if ref is not known:
            await self.refs.save(ref)
        decision = decide(ref, d, self.config.slack.thread_replies)
        self.counts[decision.reason] += 1
        if not decision.acts:
            log.info("%s v%d on %s: %s, nothing to send", d.incident_id, d.version, target.key, decision.reason)
            return
        ref = (ref or MessageRef(key=target.key, kind=target.kind, channel=target.channel)).showing(d)
        ref = await self._guarded(ref, self._steps(ref, decision))
        await self.refs.save(ref)

    async def _steps(self, ref: MessageRef, decision) -> MessageRef:
        ref = await self._post(ref) if decision.post else await self._update(ref)
        for reply in decision.replies:
            ref = await self._reply(ref, reply)
        return ref

    async def _guarded(self, ref: MessageRef, steps) -> MessageRef:
        """Run Slack steps; a message Slack refuses for good is counted and logged, and the rest goes on."""
        try:
            return await steps or ref
        except Refused as exc:
            self.counts[f"refused_{exc}"] += 1
            log.error("Slack refused %s in %s: %s", ref.key, ref.channel, exc)
            return ref.model_copy(update={"pending": "", "pending_at": None})

    async def _post(self, ref: MessageRef) -> MessageRef:
        ref = ref.begun(POST, self.clock())
        await self.refs.save(ref)
        channel, ts = await self.calls.post(ref.channel, self._message(ref), ref.key, POST, since=ref.pending_at)
        self.counts["posted"] += 1
        return ref.posted(channel, ts)

    async def _update(self, ref: MessageRef) -> MessageRef:
        try:
            await self.calls.update(ref.channel, ref.ts, self._message(ref))
        except Refused as exc:
            if str(exc) not in GONE:
                raise
            self.counts["reposted_gone"] += 1  # someone deleted the message: the incident gets a new one
            return await self._post(ref.model_copy(update={"ts": ""}))
        self.counts["updated"] += 1
        return ref

    async def _reply(self, ref: MessageRef, reply: Reply) -> MessageRef:
        ref = ref.begun(reply.token, self.clock())
        await self.refs.save(ref)
        await self.calls.post(ref.channel, reply_message(reply.text), ref.key, reply.token, thread_ts=ref.ts,
                              since=ref.pending_at)
        self.counts["replied"] += 1
        return ref.replied(reply.token)

    async def _recover(self, ref: MessageRef | None) -> MessageRef | None:
        """A step begun before a crash: if Slack has it, take it as done; if not, it will be made again."""
        if ref is None or not ref.pending:
            return ref
        thread = ref.ts if ref.pending != POST else None
        found = await self.calls.find(ref.channel, ref.key, ref.pending, thread, ref.pending_at)
        self.counts["recovered_found" if found else "recovered_absent"] += 1
        if found is None:
            return ref.model_copy(update={"pending": "", "pending_at": None})
        return ref.posted(*found) if ref.pending == POST else ref.replied(ref.pending)

    def _message(self, ref: MessageRef) -> Message:
        if ref.kind == "digest":
            window = self.config.slack.digest_window
            return render_digest(ref.entries, window_start(ref.entries[0].opened_at, window), window)
        return render_message(ref.diagnosis, self.catalog, self.links, ref.acts)
