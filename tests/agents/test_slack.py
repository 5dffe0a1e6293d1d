"""The Slack sink against a local Slack Web API, through slack-sdk for real: one post, then updates and replies."""

import asyncio
import json

import pytest

from agents.sinks import Backoff
from agents.slack import MemoryRefs, SlackCalls, SlackFatal, SlackSink, client, utcnow
from pipeline.actions import Approval
from pipeline.config import NotifyConfig, SlackConfig
from pipeline.runbooks import load_catalog
from pipeline.slack import blockkit as bk
from pipeline.slack.lifecycle import POST, MessageRef
from tests.local_parts import TOKEN, pagerduty_api, slack_api, webhook_receiver  # noqa: F401 (fixtures)
from tests.pages import storm, thirty_alert_storm
from tests.timeline import at

STORM = thirty_alert_storm()
CATALOG = load_catalog()


def sink(api, refs=None, config=NotifyConfig(), token=TOKEN):
    calls = SlackCalls(client(token, api.base_url), Backoff(first=0.05, cap=0.2))
    return SlackSink(calls, refs if refs is not None else MemoryRefs(), config, CATALOG)


def deliver(target, diagnoses):
    async def go():
        for d in diagnoses:
            await target.handle(d)
    asyncio.run(go())


def methods(api):
    return [(c.method, "thread" if c.params.get("thread_ts") else "") for c in api.calls]


def test_a_storm_of_30_alerts_is_one_post_then_updates_and_thread_replies(slack_api):
    deliver(sink(slack_api), STORM)
    assert methods(slack_api)[0] == ("chat.postMessage", "")
    assert methods(slack_api).count(("chat.postMessage", "")) == 1
    replies = [c.params["text"] for c in slack_api.of("chat.postMessage") if c.params.get("thread_ts")]
    assert [r.split(" ")[0] for r in replies] == ["Root", "Resolved"]  # the root moved to db; then it resolved
    assert len(slack_api.of("chat.update")) == len(STORM) - 1
    [page] = [m for m in slack_api.posts("#incidents") if "thread_ts" not in m]
    assert page["blocks"][0]["text"]["text"].startswith("✅ RESOLVED db: DBConnectionPoolExhausted")


def test_a_redelivered_storm_changes_nothing(slack_api):
    target = sink(slack_api)
    deliver(target, STORM)
    before = len(slack_api.calls)
    deliver(target, STORM[5:] + STORM[:3])
    assert len(slack_api.calls) == before
    assert target.counts["stale"] + target.counts["duplicate"] == len(STORM) - 5 + 3


def test_429_waits_the_retry_after_and_loses_or_doubles_nothing(slack_api):
    slack_api.rate_limit(count=4, retry_after=1)  # more than slack-sdk's own retries: this module's loop waits too
    target = sink(slack_api)
    deliver(target, STORM[:3])
    calls = slack_api.calls
    limited = [i for i, c in enumerate(calls) if c.status == 429]
    assert limited == [0, 1, 2, 3]
    for i in limited:
        assert calls[i + 1].at - calls[i].at >= 1.0  # each retry came after the Retry-After
    assert [c.method for c in calls if c.status == 200] == [
        "chat.postMessage", "chat.update", "chat.update", "chat.postMessage"]
    assert len(slack_api.posts()) == 2  # the page and the root-cause reply, each once
    assert target.calls.counts["rate_limited"] >= 1


def test_a_post_that_failed_after_slack_took_it_is_found_not_doubled(slack_api):
    slack_api.fail("chat.postMessage", status=500, after_effect=True)
    target = sink(slack_api)
    deliver(target, STORM[:2])
    assert len([m for m in slack_api.posts() if "thread_ts" not in m]) == 1
    assert target.calls.counts["found_after_failure"] == 1
    assert [c.method for c in slack_api.calls] == ["chat.postMessage", "conversations.history", "chat.update"]


def test_a_restart_between_post_and_save_finds_the_post_in_slack(slack_api):
    first = sink(slack_api)
    deliver(first, STORM[:1])
    ref = first.refs.get(STORM[0].incident_id)
    # what the store held if the notifier died after Slack took the post, before the reference was saved
    crashed = MessageRef(key=ref.key, channel="#incidents").begun(POST, utcnow()).showing(STORM[0])
    restarted = sink(slack_api, MemoryRefs({ref.key: crashed}))
    deliver(restarted, STORM[:2])
    assert len([m for m in slack_api.posts() if "thread_ts" not in m]) == 1
    assert restarted.counts["recovered_found"] == 1
    assert restarted.refs.get(ref.key).ts == ref.ts


def test_a_deleted_message_is_posted_again(slack_api):
    target = sink(slack_api)
    deliver(target, STORM[:1])
    slack_api.messages.clear()
    deliver(target, STORM[1:2])
    assert target.counts["reposted_gone"] == 1 and len(slack_api.posts()) == 1


def test_a_refused_message_is_counted_and_the_next_goes_on(slack_api):
    slack_api.fail("chat.postMessage", error="channel_not_found")
    target = sink(slack_api)
    deliver(target, STORM[:2])
    assert target.counts["refused_channel_not_found"] == 1
    assert len([m for m in slack_api.posts() if "thread_ts" not in m]) == 1  # v2 posted the page


def test_a_bad_token_stops_the_notifier(slack_api):
    with pytest.raises(SlackFatal, match="invalid_auth"):
        deliver(sink(slack_api, token="xoxb-wrong"), STORM[:1])


def test_a_3000_alert_storm_is_accepted_by_slack_whole(slack_api):
    d = storm(3000)
    deliver(sink(slack_api), [d])
    [call] = slack_api.of("chat.postMessage")
    assert call.status == 200 and call.response["ok"]
    blocks = call.params["blocks"]
    assert bk.problems(blocks, call.params["text"]) == [] and len(json.dumps(blocks)) < 40_000


def test_an_approval_shows_on_the_page_once(slack_api):
    target = sink(slack_api)
    deliver(target, STORM[:3])
    approval = Approval(incident_id=STORM[0].incident_id, version=3, user_id="U024BE7LH", user_name="ana",
                        at=at(200), request_id="slack:T1:trigger-1", runbook="RB-DB-001")

    async def click_twice():
        await target.handle_act(approval)
        await target.handle_act(approval)
    asyncio.run(click_twice())
    [update] = slack_api.of("chat.update")[-1:]
    assert "Approved `RB-DB-001` by <@U024BE7LH>" in json.dumps(update.params["blocks"], ensure_ascii=False)
    assert target.counts["act_shown"] == 1 and target.counts["act_duplicate"] == 1


def test_warnings_go_to_the_digest_not_the_page_channel(slack_api):
    quiet = [d.model_copy(update={"paged_at": None, "severity": "warning"}) for d in STORM]
    deliver(sink(slack_api, config=NotifyConfig(slack=SlackConfig(notices="digest", notice_channel="#alerts"))),
            quiet)
    assert slack_api.posts("#incidents") == []
    [digest] = slack_api.posts("#alerts")
    assert digest["blocks"][0]["text"]["text"].startswith("🟡 Alerts that did not page")
    assert len(slack_api.of("chat.update")) < len(quiet) - 1  # only when a line changes


def _approve_buttons(api) -> list[dict]:
    return [e for m in api.posts("#incidents") if "thread_ts" not in m for b in m["blocks"] if b["type"] == "actions"
            for e in b["elements"] if e["action_id"].endswith("approve")]


def test_a_runbook_not_in_the_catalog_gets_no_approve_button_and_a_hostile_id_breaks_nothing(slack_api):
    hostile = STORM[0].model_copy(update={"recommended_runbook": "RB-DB-001'; id #<!here>"})
    unknown = STORM[0].model_copy(update={"incident_id": "inc-unknown-runbook", "recommended_runbook": "RB-ZZZ-999"})
    deliver(sink(slack_api), [hostile, unknown, STORM[0].model_copy(update={"incident_id": "inc-known"})])
    assert len(slack_api.posts("#incidents")) == 3
    assert [json.loads(b["value"])["r"] for b in _approve_buttons(slack_api)] == [STORM[0].recommended_runbook]


def test_the_saved_reference_keeps_the_page_but_not_the_storm_s_fingerprints(slack_api):
    refs = MemoryRefs()
    big = STORM[0].model_copy(update={"fingerprints": [f"{i:016x}" for i in range(30_000)]})
    deliver(sink(slack_api, refs), [big])
    [ref] = refs.refs.values()
    assert ref.diagnosis.fingerprints == [] and ref.diagnosis.summary == big.summary
    assert len(MessageRef.model_validate(ref.model_dump()).model_dump_json()) < 100_000
