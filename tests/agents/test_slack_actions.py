"""POST /slack/actions: good, stale, replayed, forged, malformed, oversized and hostile requests."""

import asyncio
import json
import time
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agents.producer import Unavailable
from agents.slack_actions import MAX_BODY, add_slack_actions
from pipeline.actions import Approval, Feedback
from pipeline.runbooks import load_catalog
from pipeline.slack.clicks import signature
from pipeline.slack.page import render_message
from tests.pages import demo_page

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PAGE = demo_page()


def buttons(page) -> dict:
    return {b["action_id"]: b for block in render_message(page, load_catalog()).blocks if block["type"] == "actions"
            for b in block["elements"]}


def click(action_id="stormdrain.approve", trigger="13345224609.738474920.8088930838d88f008e0", value=None,
          user=None, page=PAGE, **extra) -> bytes:
    """A form-encoded block_actions body as Slack sends it for a click on one of the page's buttons."""
    button = buttons(page)[action_id]
    payload = {"type": "block_actions", "team": {"id": "T9TK3CUKW", "domain": "example"},
               "user": user or {"id": "U024BE7LH", "username": "ana", "team_id": "T9TK3CUKW"},
               "api_app_id": "AABA1ABCD", "trigger_id": trigger,
               "container": {"type": "message", "message_ts": "1548261231.000200", "channel_id": "C123"},
               "channel": {"id": "C123", "name": "incidents"}, "response_url": "https://hooks.slack.com/actions/x",
               "actions": [{"action_id": action_id, "block_id": "b", "type": "button",
                            "value": button["value"] if value is None else value,
                            "action_ts": f"{time.time():.6f}", "text": button["text"]}], **extra}
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, at: float | None = None, secret: str = SECRET) -> dict:
    timestamp = str(int(at if at is not None else time.time()))
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature(secret.encode(), timestamp, body),
            "Content-Type": "application/x-www-form-urlencoded"}


def send(*requests):
    """Send (body, headers) requests to a bridge app with the route; return the statuses and what was published."""
    published = []

    async def publish(topic, key, value):
        published.append((topic.name, key, value))

    async def go():
        app = web.Application()
        handler = add_slack_actions(app, publish, SECRET)
        async with TestClient(TestServer(app)) as http:
            statuses = []
            for body, headers in requests:
                response = await http.post("/slack/actions", data=body, headers=headers)
                statuses.append(response.status)
            return statuses, handler.counts
    statuses, counts = asyncio.run(go())
    return statuses, published, counts


def test_a_good_click_publishes_an_approval_with_who_when_and_what_they_saw():
    body = click()
    [status], [(topic, key, act)], _ = send((body, signed(body)))
    assert status == 200 and topic == "stormdrain.approvals" and key == PAGE.incident_id
    assert isinstance(act, Approval)
    assert (act.incident_id, act.version, act.runbook, act.user_id, act.user_name) == (
        PAGE.incident_id, PAGE.version, "RB-DB-001", "U024BE7LH", "ana")
    assert abs(act.at.timestamp() - time.time()) < 60


@pytest.mark.parametrize("action_id, verdict", [
    ("stormdrain.escalate", "escalate"), ("stormdrain.not_actionable", "not_actionable"),
    ("stormdrain.manual", "manual")])
def test_other_buttons_publish_feedback(action_id, verdict):
    body = click(action_id)
    _, [(topic, _, act)], _ = send((body, signed(body)))
    assert topic == "stormdrain.feedback" and isinstance(act, Feedback) and act.verdict == verdict


def test_slack_retries_and_replays_publish_once():
    body = click()
    retry = {**signed(body), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    statuses, published, counts = send((body, signed(body)), (body, retry), (body, signed(body)))
    assert statuses == [200, 200, 200] and len(published) == 1 and counts["duplicate"] == 2
    other = click(trigger="99999.1.other")  # another click is another act
    assert len(send((body, signed(body)), (other, signed(other)))[1]) == 2


@pytest.mark.parametrize("headers", [
    {},  # unsigned
    {"X-Slack-Request-Timestamp": str(int(time.time()))},  # no signature
    {"X-Slack-Request-Timestamp": "1e9", "X-Slack-Signature": "v0=00"},  # malformed timestamp
    {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64},  # forged
    {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=ü" + "0" * 63},  # non-ASCII
])
def test_unsigned_and_forged_requests_get_401_and_publish_nothing(headers):
    statuses, published, _ = send((click(), headers))
    assert statuses == [401] and published == []


def test_a_stale_request_gets_401_even_with_a_good_signature():
    body = click()
    statuses, published, counts = send((body, signed(body, at=time.time() - 301)),
                                       (body, signed(body, at=time.time() + 301)))
    assert statuses == [401, 401] and published == [] and counts["refused_stale"] == 2


def test_a_request_signed_with_another_secret_or_altered_after_signing_gets_401():
    body = click()
    tampered = body.replace(b"U024BE7LH", b"UEVIL0000")
    statuses, published, _ = send((body, signed(body, secret="not-the-secret")), (tampered, signed(body)))
    assert statuses == [401, 401] and published == []


def test_an_oversized_body_gets_413_and_publishes_nothing():
    body = click(padding="x" * MAX_BODY)
    statuses, published, _ = send((body, signed(body)))
    assert statuses == [413] and published == []


@pytest.mark.parametrize("body", [
    b"not a form at all \xff\xfe",
    b"payload=",
    b"payload=%5B1%2C2%5D",  # a JSON list
    urlencode({"payload": "{"}).encode(),
    urlencode({"payload": "[" * 100_000 + "]" * 100_000}).encode(),  # nested past any parser's depth
    click(value="not json"),
    click(value=json.dumps({"a": "approve", "i": PAGE.incident_id, "v": 0, "r": "RB-DB-001"})),  # version 0
    click(value=json.dumps({"a": "approve", "i": PAGE.incident_id, "v": 1})),  # an approval with no runbook
    click(value=json.dumps({"a": "approve", "i": PAGE.incident_id, "v": 1, "r": "RB-../../etc"})),
    click(value=json.dumps({"a": "escalate", "i": PAGE.incident_id, "v": 1})),  # value of another button
    click(value=json.dumps({"a": "approve", "i": "x" * 100, "v": 1, "r": "RB-DB-001"})),
    click(value=json.dumps({"a": "approve", "i": "../../etc/passwd", "v": 1, "r": "RB-DB-001"})),
    click(value=json.dumps({"a": "approve", "i": "inc-\u0000\u202e<!channel>", "v": 1, "r": "RB-DB-001"})),
    click(value=json.dumps({"a": "approve", "i": PAGE.incident_id, "v": 10**30, "r": "RB-DB-001"})),
    click(user={"id": ""}),
    click(trigger=""),
])
def test_signed_but_malformed_or_hostile_payloads_get_400_and_publish_nothing(body):
    statuses, published, _ = send((body, signed(body)))
    assert statuses == [400] and published == []


def test_interactions_that_are_not_our_buttons_are_ignored():
    view = urlencode({"payload": json.dumps({"type": "view_submission", "user": {"id": "U1"}})}).encode()
    foreign = click()
    foreign = foreign.replace(b"stormdrain.approve", b"otherapp.approve")
    statuses, published, counts = send((view, signed(view)), (foreign, signed(foreign)))
    assert statuses == [200, 200] and published == [] and counts["ignored"] == 2


def test_a_broker_that_is_away_gets_503_with_retry_after_and_the_retry_publishes():
    attempts = []

    async def flaky(topic, key, value):
        attempts.append(value)
        if len(attempts) == 1:
            raise Unavailable("broker unreachable")

    async def go():
        app = web.Application()
        add_slack_actions(app, flaky, SECRET)
        body = click()
        async with TestClient(TestServer(app)) as http:
            first = await http.post("/slack/actions", data=body, headers=signed(body))
            again = await http.post("/slack/actions", data=body, headers={**signed(body), "X-Slack-Retry-Num": "1"})
            return first.status, first.headers.get("Retry-After"), again.status
    assert asyncio.run(go()) == (503, "5", 200)
    assert len(attempts) == 2
