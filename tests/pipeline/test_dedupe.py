"""Dedupe decisions, one named reason per case, keyed on fingerprint plus startsAt."""

from dataclasses import replace

import pytest

from pipeline.config import DedupeConfig
from pipeline.dedupe import Reason, decide
from tests.timeline import alert, record

AM0, AM1 = "http://am-0:9093", "http://am-1:9093"
FIRING = alert("PoolExhausted", "orders", starts=0)
RESOLVED = alert("PoolExhausted", "orders", status="resolved", starts=0, ends=300)


def _edit(body, **changes):
    return {**body, **changes}


CASES = [
    # (what the case is, earlier notifications, the notification, expected reason)
    ("first firing opens", [], record(FIRING, 30), Reason.NEW),
    ("the other replica of an HA pair sends the same", [record(FIRING, 30, AM0)], record(FIRING, 33, AM1),
     Reason.HA_DUPLICATE),
    ("the same replica posts again soon: a retry", [record(FIRING, 30)], record(FIRING, 45), Reason.RETRY),
    ("repeat_interval re-sends it hours later", [record(FIRING, 30)], record(FIRING, 4 * 3600 + 30), Reason.REPEAT),
    ("a record delivered twice (a replay, a restart)", [record(FIRING, 30)], record(FIRING, 30), Reason.REDELIVERED),
    ("a resolve after a firing", [record(FIRING, 30)], record(RESOLVED, 330), Reason.RESOLVED),
    ("a resolve for an alert never seen firing", [], record(RESOLVED, 330), Reason.RESOLVE_UNSEEN),
    ("a firing that arrives after its resolve", [record(RESOLVED, 330)], record(FIRING, 340),
     Reason.RESOLVED_BEFORE_FIRING),
    ("a stale firing after the resolve was seen", [record(FIRING, 30), record(RESOLVED, 330)],
     record(FIRING, 340, AM1), Reason.STALE_FIRING),
    ("only the annotations change: an update", [record(FIRING, 30)],
     record(_edit(FIRING, annotations={"summary": "now 100/100"}), 60), Reason.ANNOTATIONS_CHANGED),
    ("fires again soon after resolving: flapping", [record(FIRING, 30), record(RESOLVED, 330)],
     record(alert("PoolExhausted", "orders", starts=400), 430), Reason.FLAPPING),
    ("fires again after a quiet hour: a new episode", [record(FIRING, 30), record(RESOLVED, 330)],
     record(alert("PoolExhausted", "orders", starts=4000), 4030), Reason.REFIRE),
    ("a notification about an older episode", [record(alert("PoolExhausted", "orders", starts=4000), 4030)],
     record(FIRING, 4040), Reason.OLD_EPISODE),
    ("a resolve repeated by the other replica", [record(FIRING, 30), record(RESOLVED, 330, AM0)],
     record(RESOLVED, 333, AM1), Reason.HA_DUPLICATE),
]


@pytest.mark.parametrize("case, earlier, notification, reason", CASES, ids=[c[0] for c in CASES])
def test_each_notification_gets_a_named_reason(case, earlier, notification, reason):
    config = DedupeConfig()
    state = None
    for past in earlier:
        state, _ = decide(state, past, config)
    _, decision = decide(state, notification, config)
    assert decision.reason is reason


def test_only_new_alerts_and_new_episodes_open_anything():
    opening = {r for r in Reason if r.opens}
    assert opening == {Reason.NEW, Reason.REFIRE, Reason.FLAPPING}


def test_flapping_keeps_the_incident_of_the_previous_episode():
    config = DedupeConfig()
    state, _ = decide(None, record(FIRING, 30), config)
    state = replace(state, incident_id="inc-1")
    state, _ = decide(state, record(RESOLVED, 330), config)
    state, decision = decide(state, record(alert("PoolExhausted", "orders", starts=400), 430), config)
    assert decision.reason is Reason.FLAPPING
    assert state.incident_id == "inc-1"
    assert state.flaps == 1
