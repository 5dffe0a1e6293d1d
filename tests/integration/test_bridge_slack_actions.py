"""A real `stormdrain bridge` process with a Slack signing secret: signed clicks land once, forged ones nowhere."""

from __future__ import annotations

import pytest

from tests.agents.test_slack_actions import SECRET, click, signed
from tests.integration.parts import Proc, free_port, post, read_topic, wait_ready
from topics.catalog import APPROVALS, FEEDBACK

pytestmark = pytest.mark.integration


@pytest.fixture
def bridge(kafka, tmp_path):
    """The bridge command, its signing secret read from a file as a mounted secret would be."""
    secret = tmp_path / "signing-secret"
    secret.write_text(SECRET + "\n")
    port = free_port()
    proc = Proc(tmp_path / "bridge.log", "bridge", "--bootstrap", kafka.bootstrap, "--namespace", kafka.namespace,
                "--host", "127.0.0.1", "--port", str(port), env={"SLACK_SIGNING_SECRET_FILE": str(secret)})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        yield url
    finally:
        proc.stop()


def test_a_signed_click_lands_on_approvals_once_though_retried_and_a_forged_one_gets_401(kafka, bridge):
    approve, escalate = click(), click(action_id="stormdrain.escalate", trigger="2.3.escalate")
    forged = click(trigger="9.9.forged")
    statuses = [post(bridge + "/slack/actions", body, headers)[0] for body, headers in [
        (forged, {**signed(forged), "X-Slack-Signature": "v0=" + "1" * 64}),  # signed with another secret
        (forged, signed(forged, secret="not-the-secret")),
        (approve, signed(approve)),
        (approve, {**signed(approve), "X-Slack-Retry-Num": "1"}),  # Slack's retries of the same click
        (approve, {**signed(approve), "X-Slack-Retry-Num": "2"}),
        (escalate, signed(escalate)),
    ]]
    assert statuses == [401, 401, 200, 200, 200, 200]
    approvals = [APPROVALS.decode(m.value) for m in read_topic(kafka.bootstrap, kafka.topic(APPROVALS).name,
                                                               timeout=3)]
    feedback = [FEEDBACK.decode(m.value) for m in read_topic(kafka.bootstrap, kafka.topic(FEEDBACK).name, timeout=3)]
    assert [(a.runbook, a.user_id) for a in approvals] == [("RB-DB-001", "U024BE7LH")]
    assert [f.verdict for f in feedback] == ["escalate"]
    assert "9.9.forged" not in {a.request_id for a in approvals} | {f.request_id for f in feedback}


def test_without_a_signing_secret_the_bridge_has_no_slack_route(kafka, tmp_path):
    port = free_port()
    proc = Proc(tmp_path / "plain.log", "bridge", "--bootstrap", kafka.bootstrap, "--namespace", kafka.namespace,
                "--host", "127.0.0.1", "--port", str(port), env={"SLACK_SIGNING_SECRET": ""})
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        body = click()
        status, _, _ = post(f"http://127.0.0.1:{port}/slack/actions", body, signed(body))
    finally:
        proc.stop()
    assert status == 404
