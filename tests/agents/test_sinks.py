"""The PagerDuty Events API v2 sink and the plain webhook sink, against local servers that speak those APIs."""

import asyncio

from agents.sinks import Backoff, PagerDutySink, WebhookSink
from pipeline.actions import Approval
from pipeline.diagnose import Diagnosis
from tests.local_parts import pagerduty_api, webhook_receiver  # noqa: F401 (fixtures)
from tests.pages import thirty_alert_storm
from tests.timeline import at

STORM = thirty_alert_storm()
KEY = "R0UT1NGKEY0123456789abcdef012345"
FAST = Backoff(first=0.05, cap=0.2)


def run(target, *items):
    async def go():
        try:
            for item in items:
                await (target.handle(item) if isinstance(item, Diagnosis) else target.handle_act(item))
        finally:
            await target.close()
    asyncio.run(go())


def approval(version=3):
    return Approval(incident_id=STORM[0].incident_id, version=version, user_id="U1", at=at(100),
                    request_id="r-1", runbook="RB-DB-001")


def test_pagerduty_triggers_once_acknowledges_on_approval_and_resolves(pagerduty_api):
    run(PagerDutySink(pagerduty_api.events_url, KEY, backoff=FAST), *STORM[:3], approval(), *STORM[3:])
    actions = [c.params["event_action"] for c in pagerduty_api.calls]
    assert actions == ["trigger", "trigger", "acknowledge", "resolve"]  # the second trigger names the new root
    assert {c.params["dedup_key"] for c in pagerduty_api.calls} == {STORM[0].incident_id}
    assert pagerduty_api.alerts[STORM[0].incident_id]["status"] == "resolved"
    first = pagerduty_api.calls[0].params["payload"]
    assert first["severity"] == "critical" and first["source"] == "checkout"
    assert pagerduty_api.calls[1].params["payload"]["summary"].startswith("db: DBConnectionPoolExhausted")


def test_pagerduty_rate_limit_and_outage_are_waited_out(pagerduty_api):
    pagerduty_api.rate_limit(count=1, retry_after=1)
    pagerduty_api.fail(status=503, count=2)
    target = PagerDutySink(pagerduty_api.events_url, KEY, backoff=FAST)
    run(target, STORM[0])
    statuses = [c.status for c in pagerduty_api.calls]
    assert statuses == [429, 503, 503, 202]
    assert pagerduty_api.calls[1].at - pagerduty_api.calls[0].at >= 1.0
    assert target.counts["delivered"] == 1


def test_pagerduty_refusal_is_counted_not_retried(pagerduty_api):
    target = PagerDutySink(pagerduty_api.events_url, "too-short", backoff=FAST)
    run(target, STORM[0])
    assert [c.status for c in pagerduty_api.calls] == [400]
    assert target.counts["refused_400"] == 1


def test_warnings_do_not_page_through_pagerduty(pagerduty_api):
    quiet = [d.model_copy(update={"paged_at": None}) for d in STORM]
    run(PagerDutySink(pagerduty_api.events_url, KEY, backoff=FAST), *quiet)
    assert pagerduty_api.calls == []


def test_the_webhook_gets_every_version_as_the_diagnoses_contract(webhook_receiver):
    webhook_receiver.fail(status=502)
    run(WebhookSink(webhook_receiver.url + "/hook", backoff=FAST), *STORM[:2])
    accepted = [c for c in webhook_receiver.calls if c.status == 200]
    assert [Diagnosis.model_validate(c.params) for c in accepted] == STORM[:2]
    assert [c.status for c in webhook_receiver.calls] == [502, 200, 200]
