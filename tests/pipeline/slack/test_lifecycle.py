"""One living message per incident: post once, update after, reply for what matters; routing to channels."""

import json
from datetime import timedelta

import pytest

from pipeline.actions import Approval, Feedback
from pipeline.alerts import InputError
from pipeline.config import Route, SlackConfig, load_config
from pipeline.diagnose import Evidence, RootCause
from pipeline.slack.digest import render_digest, window_start
from pipeline.slack.lifecycle import MessageRef, decide, merge
from pipeline.slack.routing import route, targets
from pipeline.slack import blockkit as bk
from tests.pages import demo_page
from tests.timeline import T0, at

BASE = demo_page()


def version(n, **changes):
    return BASE.model_copy(update={"version": n, **changes})


def shown(n, **changes):
    d = version(n, **changes)
    return MessageRef(key=d.incident_id, channel="C1", ts="1.000100").showing(d)


REMEDIATION = Evidence(kind="remediation", text="RB-DB-001 finished after 42s (approved by ana)")


@pytest.mark.parametrize("ref, new, reason, post, update, replies", [
    # nothing posted yet: the first paging version is posted
    (None, version(3), "first", True, False, []),
    # a post begun and never confirmed is still a post to make (the client looks for it first)
    (MessageRef(key="i", channel="#incidents", pending="post"), version(3), "first", True, False, []),
    # a later version updates the same message
    (shown(3), version(4), "newer", False, True, []),
    # a redelivered version changes nothing; an older one neither
    (shown(4), version(4), "duplicate", False, False, []),
    (shown(4), version(2), "stale", False, False, []),
    # significant changes add one reply each
    (shown(4), version(5, root_cause=RootCause(service="payment-service", alert="HighErrorRate")),
     "new_root", False, True, ["v5:new_root"]),
    (shown(4), version(5, status="resolved"), "resolved", False, True, ["v5:resolved"]),
    (shown(4, status="resolved"), version(5), "reopened", False, True, ["v5:reopened"]),
    (shown(4), version(5, evidence=[*BASE.evidence, REMEDIATION]), "remediation", False, True, ["v5:remediation"]),
    (shown(4, paged_at=None), version(5), "paged", False, True, ["v5:paged"]),
    # a reply already sent for this version is not sent again
    (shown(4).replied("v5:resolved"), version(5, status="resolved"), "resolved", False, True, []),
])
def test_the_lifecycle_step(ref, new, reason, post, update, replies):
    decision = decide(ref, new)
    assert (decision.reason, decision.post, decision.update) == (reason, post, update)
    assert [r.token for r in decision.replies] == replies


def test_replies_are_short_and_say_what_changed():
    d = version(5, status="resolved", updated_at=BASE.opened_at + timedelta(minutes=12, seconds=30))
    [reply] = decide(shown(4), d).replies
    assert reply.text.startswith("Resolved after 12m30s:")
    [reply] = decide(shown(4), version(5, evidence=[*BASE.evidence, REMEDIATION])).replies
    assert reply.text == "Remediation: RB-DB-001 finished after 42s (approved by ana)"


def test_thread_replies_can_be_turned_off():
    assert decide(shown(4), version(5, status="resolved"), thread_replies=False).replies == ()


def test_a_reference_round_trips_through_its_topic_encoding():
    ref = shown(4).with_act(Approval(incident_id=BASE.incident_id, version=4, user_id="U1", at=at(9),
                                     request_id="r1", runbook="RB-DB-001")).replied("v4:new_root")
    assert MessageRef.model_validate_json(ref.model_dump_json()) == ref


def test_two_writers_merge_into_the_newer_content_with_every_act():
    approval = Approval(incident_id=BASE.incident_id, version=4, user_id="U1", at=at(9), request_id="r1",
                        runbook="RB-DB-001")
    feedback = Feedback(incident_id=BASE.incident_id, version=4, user_id="U2", at=at(10), request_id="r2",
                        verdict="escalate")
    newer = shown(6).replied("v6:resolved").with_act(feedback)
    older = shown(4).with_act(approval)
    for merged in (merge(older, newer), merge(newer, older)):
        assert merged.version == 6 and merged.ts == "1.000100"
        assert [a.request_id for a in merged.acts] == ["r1", "r2"] and merged.replies == ["v6:resolved"]


def test_a_confirmed_post_wins_over_a_pending_one():
    pending = MessageRef(key="i", channel="#incidents").begun("post", at(1))
    merged = merge(shown(3), pending)
    assert merged.ts == "1.000100" and merged.pending == ""


# -- routing -------------------------------------------------------------------

ROUTES = SlackConfig(channel="#incidents", routes=(
    Route(channel="#payments-oncall", labels={"team": "payments"}),
    Route(channel="#db-oncall", service="order-.*", severity="critical"),
    Route(channel="#staging", scope="cluster=staging.*"),
), notices="digest", notice_channel="#alerts")


@pytest.mark.parametrize("changes, channel", [
    ({"root_cause": BASE.root_cause.model_copy(update={"labels": {"team": "payments"}})}, "#payments-oncall"),
    ({}, "#db-oncall"),  # the root service and the severity
    ({"severity": "warning", "scope": "cluster=staging-2"}, "#staging"),
    ({"severity": "warning"}, "#incidents"),  # nothing matches: the default channel
])
def test_pages_are_routed_by_owner_service_severity_and_scope(changes, channel):
    assert route(version(1, **changes), ROUTES) == channel


def test_an_incident_that_does_not_page_goes_to_the_digest_and_stays_there_once_it_pages():
    quiet = version(1, paged_at=None, severity="warning")
    [digest] = targets(quiet, ROUTES, {})
    assert digest.kind == "digest" and digest.channel == "#alerts"
    assert digest.key == "digest:#alerts:" + f"{window_start(BASE.opened_at, timedelta(hours=1)):%Y-%m-%dT%H:%MZ}"
    noticed = MessageRef(key=digest.key, kind="digest", channel="C9", ts="1.1").showing(quiet)
    assert [t.kind for t in targets(version(2), ROUTES, {digest.key: noticed})] == ["page", "digest"]
    assert [t.kind for t in targets(version(2), ROUTES, {})] == ["page"]


def test_notices_go_to_a_quiet_channel_or_nowhere_by_configuration():
    quiet = version(1, paged_at=None)
    assert [(t.key, t.channel) for t in targets(quiet, SlackConfig(notices="channel"), {})] == [
        (f"notice:{BASE.incident_id}", "#alerts")]
    assert targets(quiet, SlackConfig(notices="drop"), {}) == []


def test_a_digest_is_one_message_updated_only_when_a_line_changes():
    digest = MessageRef(key="digest:#alerts:x", kind="digest", channel="C9")
    first = version(1, paged_at=None, severity="warning")
    assert decide(digest, first).post
    digest = digest.posted("C9", "2.2").showing(first)
    assert decide(digest, version(2, paged_at=None, severity="warning", alert_count=99)).reason == "unchanged"
    assert decide(digest, version(3, paged_at=None, severity="warning", status="resolved")).update
    other = version(1, incident_id="inc-other", paged_at=None)
    assert decide(digest, other).update
    many = digest
    for i in range(2000):
        many = many.showing(version(1, incident_id=f"inc-{i:04}-支付-🔥", paged_at=None))
    message = render_digest(many.entries, T0, timedelta(hours=1))
    assert bk.problems(message.blocks, message.text) == [] and "more" in message.blocks[1]["text"]["text"]


@pytest.mark.parametrize("notify, field", [
    ({"slack": {"routes": [{"channel": "#x", "labels": {"team": "(["}}]}}, "notify.slack.routes.0.labels"),
    ({"slack": {"routes": [{"scope": "prod"}]}}, "notify.slack.routes.0.channel"),
    ({"slack": {"notices": "email"}}, "notify.slack.notices"),
    ({"sinks": ["slack", "carrier-pigeon"]}, "notify.sinks.1"),
    ({"slack": {"digest_window": "soon"}}, "notify.slack.digest_window"),
])
def test_a_bad_notify_section_names_the_field(notify, field, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"notify": notify}))
    with pytest.raises(InputError, match=field.replace(".", r"\.")):
        load_config(path)
