"""Where diagnoses go: every sink has `handle(diagnosis)` (and `handle_act` for clicks), chosen by configuration.

Besides Slack (agents/slack.py): the page printed to standard output, a plain
webhook that receives each diagnosis version as JSON, and PagerDuty's Events
API v2 (trigger, acknowledge, resolve, with the incident id as the dedup key).
The HTTP sinks retry what may succeed later (HTTP 429 after its Retry-After,
5xx and connection errors, with backoff) and count and log what never will
(other 4xx). A sink with `every_version` gets each new version in order; the
others only the newest of a batch, which is all a living page needs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections import Counter
from typing import Awaitable, Callable, Protocol, TextIO

import aiohttp

from pipeline.actions import Approval, Feedback
from pipeline.diagnose import Diagnosis
from pipeline.render import printable, render_page
from pipeline.runbooks import Catalog
from pipeline.slack import blockkit as bk
from pipeline.slack.page import dedup_ratio

log = logging.getLogger("stormdrain.sinks")
Sleep = Callable[[float], Awaitable[object]]


class Sink(Protocol):
    """A place diagnoses go. `handle` returns once the diagnosis is delivered (or skipped by a named policy)."""

    every_version: bool  # each new version in order, or only the newest of a batch

    async def handle(self, diagnosis: Diagnosis) -> None: ...

    async def handle_act(self, act: Approval | Feedback) -> None: ...

    async def close(self) -> None: ...


class PrintSink:
    """The five-line page of each diagnosis version, and a line for each click, on standard output."""

    name = "print"
    every_version = True

    def __init__(self, catalog: Catalog | None = None, out: TextIO = sys.stdout):
        self.catalog = catalog
        self.out = out

    async def handle(self, diagnosis: Diagnosis) -> None:
        print(render_page(diagnosis, self.catalog) + "\n", file=self.out, flush=True)

    async def handle_act(self, act: Approval | Feedback) -> None:
        what = f"approved {act.runbook}" if isinstance(act, Approval) else act.verdict.replace("_", " ")
        print(printable(f"{act.kind} on {act.incident_id} (version {act.version} seen): {what} by {act.user_id}"),
              file=self.out, flush=True)

    async def close(self) -> None:
        return None


class Retry(Exception):
    """A call that may succeed later: wait `after` seconds (None: back off) and try again."""

    def __init__(self, reason: str, after: float | None = None, ambiguous: bool = False):
        super().__init__(reason)
        self.reason, self.after, self.ambiguous = reason, after, ambiguous


class Backoff:
    """Waits between tries: Retry-After when the server gives one, else exponential with jitter, capped."""

    def __init__(self, first: float = 0.5, cap: float = 30.0, sleep: Sleep = asyncio.sleep):
        self.first, self.cap, self.sleep = first, cap, sleep

    async def wait(self, retry: Retry, attempt: int) -> float:
        seconds = retry.after if retry.after is not None else min(self.cap, self.first * 2 ** attempt)
        seconds += random.uniform(0, 0.1) if retry.after is None else 0
        log.warning("retrying in %.1fs after %s (attempt %d)", seconds, retry.reason, attempt + 1)
        await self.sleep(seconds)
        return seconds


def retry_after(headers) -> float | None:
    """Seconds from a Retry-After header (delta seconds only; a date or junk gives the backoff instead)."""
    value = headers.get("Retry-After") if headers else None
    try:
        return min(max(float(value), 0.0), 3600.0) if value is not None else None
    except (TypeError, ValueError):
        return None


class HttpSink:
    """POSTs JSON events with retries; subclasses say which events a diagnosis makes."""

    name = "http"
    every_version = False

    def __init__(self, url: str, session: aiohttp.ClientSession | None = None, backoff: Backoff | None = None,
                 timeout: float = 10.0):
        self.url = url
        self._session = session
        self.backoff = backoff or Backoff()
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.counts: Counter = Counter()

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle_act(self, act: Approval | Feedback) -> None:
        return None

    async def send(self, event: dict, what: str) -> bool:
        """Deliver one event: True once accepted, False when refused for good (counted and logged)."""
        attempt = 0
        while True:
            try:
                return await self._post_once(event, what)
            except Retry as retry:
                self.counts["retried"] += 1
                await self.backoff.wait(retry, attempt)
                attempt += 1

    async def _post_once(self, event: dict, what: str) -> bool:
        session = await self.session()
        try:
            async with session.post(self.url, json=event) as response:
                body = (await response.text())[:500]
                if response.status == 429 or response.status >= 500:
                    raise Retry(f"{self.name} HTTP {response.status}", retry_after(response.headers))
                if response.status >= 400:
                    self.counts[f"refused_{response.status}"] += 1
                    log.error("%s refused %s: HTTP %d %s", self.name, what, response.status, body)
                    return False
                self.counts["delivered"] += 1
                return True
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise Retry(f"{self.name} {type(exc).__name__}") from None


class WebhookSink(HttpSink):
    """Each diagnosis version, as the diagnoses contract has it, POSTed to a URL."""

    name = "webhook"
    every_version = True

    async def handle(self, diagnosis: Diagnosis) -> None:
        await self.send(diagnosis.model_dump(mode="json"), f"{diagnosis.incident_id} v{diagnosis.version}")


PD_SEVERITY = {"critical": "critical", "page": "critical", "emergency": "critical", "p1": "critical",
               "error": "error", "major": "error", "high": "error", "warning": "warning"}


class PagerDutySink(HttpSink):
    """PagerDuty Events API v2: trigger when an incident pages, acknowledge on approval, resolve when it resolves.

    PagerDuty folds events by dedup key (the incident id), so the sink keeps
    only an in-memory note of what it sent to save calls; after a restart a
    repeated trigger lands on the same PagerDuty incident.
    """

    name = "pagerduty"

    def __init__(self, url: str, routing_key: str, **kwargs):
        super().__init__(url, **kwargs)
        self.routing_key = routing_key
        self.sent: dict[str, tuple[str, str | None]] = {}  # incident -> (last action, root it named)

    async def handle(self, d: Diagnosis) -> None:
        action = self.action_for(d)
        if action is None:
            return
        if await self.send(self.event(d, action), f"{action} {d.incident_id}"):
            self.sent[d.incident_id] = (action, d.root_cause.service)

    def action_for(self, d: Diagnosis) -> str | None:
        """trigger for a paging incident that is new here or has a new root; resolve once; else nothing."""
        last, root = self.sent.get(d.incident_id, (None, None))
        if d.status == "resolved":
            return "resolve" if d.paged_at and last != "resolve" else None
        if d.paged_at is None:
            return None
        return "trigger" if last in (None, "resolve") or root != d.root_cause.service else None

    async def handle_act(self, act: Approval | Feedback) -> None:
        if isinstance(act, Approval) or act.verdict == "manual":
            last, root = self.sent.get(act.incident_id, (None, None))
            if last != "resolve":
                await self.send({"routing_key": self.routing_key, "event_action": "acknowledge",
                                 "dedup_key": act.incident_id}, f"acknowledge {act.incident_id}")

    def event(self, d: Diagnosis, action: str) -> dict:
        event = {"routing_key": self.routing_key, "event_action": action, "dedup_key": d.incident_id}
        if action != "trigger":
            return event
        root = d.root_cause
        title = f"{root.service}: {root.alert}" if root.service and not root.inferred else (root.service or "unknown")
        event["payload"] = {
            "summary": bk.clip(bk.one_line(f"{title}: {d.summary}"), 1024),
            "source": root.service or d.scope, "severity": PD_SEVERITY.get(d.severity.lower(), "info"),
            "timestamp": d.opened_at.isoformat(), "component": root.service, "group": d.scope,
            "class": root.alert,
            "custom_details": {"incident_id": d.incident_id, "version": d.version, "confidence": d.confidence,
                               "dedup": dedup_ratio(d), "affected_services": d.affected_services[:50],
                               "runbook": d.recommended_runbook},
        }
        if d.external_url.startswith(("http://", "https://")):
            event["links"] = [{"href": d.external_url.rstrip("/") + "/#/alerts", "text": "Alertmanager"}]
        return event
