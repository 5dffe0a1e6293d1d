"""Metric evidence on Kafka: asked for after a diagnosis version went out, gathered off the event loop.

The Prometheus client blocks for up to its deadline, so each question runs in
a worker thread; the answer is published to the evidence topic, keyed like
the incident, and diagnose folds it into a later version. The version that
prompted the question has already gone out: a slow or absent Prometheus never
delays a page. One question per incident is in flight at a time; a question
lost to a crash is asked again at the incident's next version.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Awaitable, Callable

from pipeline.diagnose import Diagnosis, DiagnosisState
from pipeline.evidence import EvidenceProvider, EvidenceRequest, IncidentEvidence, needs_refresh, request_for, unavailable

log = logging.getLogger("stormdrain.evidence")
Publish = Callable[[str, IncidentEvidence], Awaitable[object]]
THREADS = 2  # questions at a time; each runs its own queries in parallel


class EvidenceAsker:
    """Asks the provider in a thread when a new version needs fresh evidence, and publishes the answer."""

    def __init__(self, provider: EvidenceProvider, publish: Publish, refresh: timedelta, threads: int = THREADS):
        self.provider = provider
        self.publish = publish
        self.refresh = refresh
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="evidence")
        self.in_flight: set[str] = set()
        self.tasks: set[asyncio.Task] = set()
        self.counts: Counter = Counter()

    def after_version(self, state: DiagnosisState, diagnosis: Diagnosis) -> None:
        """Called on the event loop as a version goes out; returns at once."""
        if state.incident is None or state.incident_id in self.in_flight:
            return
        request = request_for(state.incident, [c.service for c in diagnosis.candidates])
        if not needs_refresh(state.evidence, request, self.refresh):
            return
        self.in_flight.add(state.incident_id)
        task = asyncio.ensure_future(self._ask(request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _ask(self, request: EvidenceRequest) -> None:
        try:
            answer = await self._gather(request)
            await self.publish(request.incident_id, answer)
            self.counts[answer.status] += 1
        except Exception:  # noqa: BLE001 - the incident's next version asks again
            self.counts["not_published"] += 1
            log.exception("evidence for %s could not be published", request.incident_id)
        finally:
            self.in_flight.discard(request.incident_id)

    async def _gather(self, request: EvidenceRequest) -> IncidentEvidence:
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, self.provider.gather, request)
        except Exception as exc:  # noqa: BLE001 - providers never raise; should one, the page says so
            log.exception("evidence for %s failed", request.incident_id)
            return unavailable(request, request.as_of, f"evidence failed: {type(exc).__name__}")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
