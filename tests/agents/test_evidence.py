"""The worker's evidence asker without a broker: the question runs in a thread, the event loop never waits."""

import asyncio
import threading
from datetime import timedelta

from agents.evidence import EvidenceAsker
from pipeline.evidence import EvidenceRequest, IncidentEvidence
from tests.timeline import alert, at, driver, graph_of, webhook


class SlowPrometheus:
    """A provider that blocks until the test lets it answer, as a Prometheus near its deadline does."""

    def __init__(self, fail: bool = False):
        self.release, self.asked, self.fail = threading.Event(), [], fail

    def gather(self, request: EvidenceRequest) -> IncidentEvidence:
        self.asked.append(request)
        self.release.wait(10)
        if self.fail:
            raise RuntimeError("connection refused")
        return IncidentEvidence(incident_id=request.incident_id, revision=request.revision, at=request.as_of,
                                status="ok")


def a_version():
    """The state and the diagnosis of an incident's first version, from the embedded runtime."""
    run = driver(graph_of("web>orders", "orders>db"))
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders"), alert("HighErrorRate", "web")), at(0))
    run.advance(60)
    [diagnosis] = run.read("diagnoses")
    return run.diagnosis_states[diagnosis.incident_id], diagnosis


def ask(provider, times: int = 1) -> tuple[list, EvidenceAsker, bool]:
    """Tell the asker of one version `times` times; return what was published and whether the loop ran on."""
    state, diagnosis = a_version()
    published: list = []

    async def publish(incident_id, answer):
        published.append((incident_id, answer))

    async def go():
        asker = EvidenceAsker(provider, publish, timedelta(seconds=30))
        ticks = 0

        async def ticker():  # the event loop's other work, e.g. the next batch of alerts
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)
        beat = asyncio.create_task(ticker())
        for _ in range(times):
            asker.after_version(state, diagnosis)
        await asyncio.sleep(0.2)
        running_on = ticks > 5 and not published  # the loop went on while the provider had not answered
        provider.release.set()
        await asyncio.gather(*asker.tasks)
        beat.cancel()
        asker.close()
        return asker, running_on
    asker, running_on = asyncio.run(go())
    return published, asker, running_on


def test_the_answer_is_published_keyed_by_incident_while_the_loop_goes_on():
    provider = SlowPrometheus()
    published, asker, running_on = ask(provider, times=3)
    assert running_on
    assert len(provider.asked) == 1  # one question per incident in flight
    [(incident_id, answer)] = published
    assert incident_id == answer.incident_id == provider.asked[0].incident_id and answer.status == "ok"
    assert "orders" in provider.asked[0].services
    assert asker.counts["ok"] == 1


def test_a_provider_that_raises_still_answers_unavailable():
    published, asker, _ = ask(SlowPrometheus(fail=True))
    [(_, answer)] = published
    assert answer.status == "unavailable" and "RuntimeError" in answer.detail
    assert asker.counts["unavailable"] == 1
