"""History: a recurring incident says so, and gains confidence only from confirmed diagnoses."""

from pipeline.actions import Feedback, RemediationEvent
from pipeline.config import Config
from pipeline.embedded import Embedded
from pipeline.history import lookup, open_store, signature_key
from pipeline.runbooks import load_catalog
from tests.timeline import alert, at, format_time, graph_of, webhook

GRAPH = graph_of("web>orders", "orders>db", kinds={"db": "datastore"})


def _storm(run, start, confirm=None, runbook=None):
    """One pool-exhaustion storm from `start`; optionally confirmed and closed by a runbook."""
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders", starts=start),
                             alert("HighErrorRate", "web", starts=start + 20)), at(start + 30))
    run.advance(60)
    first = run.read("diagnoses")[-1]
    act = {"incident_id": first.incident_id, "version": first.version, "user_id": "U1", "at": format_time(at(start + 90)),
           "request_id": f"r{start}"}
    if confirm is not None:
        run.remediate(Feedback.model_validate({**act, "verdict": confirm}))
    if runbook:
        run.remediate(RemediationEvent.model_validate({"incident_id": first.incident_id, "runbook": runbook,
                                                       "run_id": f"run{start}", "step": "finished",
                                                       "at": format_time(at(start + 95)), "by": "U1"}))
    run.pipe_webhook(webhook(alert("PoolExhausted", "orders", status="resolved", starts=start, ends=start + 100),
                             alert("HighErrorRate", "web", status="resolved", starts=start + 20, ends=start + 100)),
                     at(start + 110))
    run.advance(400)
    return first


def _engine(history=None):
    return Embedded(Config(), GRAPH, load_catalog(), history=history)


def test_a_recurring_confirmed_incident_says_so_and_gains_confidence():
    plain = _storm(_engine(), 0)
    run = _engine()
    _storm(run, 0, confirm="confirmed", runbook="RB-DB-001")
    again = _storm(run, 7200)
    assert again.root_cause.service == "orders"
    facts = " ".join(c for c in again.candidates[0].reasons)
    assert "seen 1 time(s) before" in facts and "by RB-DB-001" in facts and "confirmed 1x" in facts
    assert again.confidence > plain.confidence


def test_an_unconfirmed_past_is_mentioned_but_adds_no_confidence():
    plain = _storm(_engine(), 0)
    run = _engine()
    _storm(run, 0)
    again = _storm(run, 7200)
    assert "never confirmed" in " ".join(again.candidates[0].reasons)
    assert again.confidence == plain.confidence


def test_a_verdict_after_close_still_counts_and_history_survives_a_restart(tmp_path):
    store = open_store(tmp_path / "history")
    run = _engine(store)
    first = _storm(run, 0)
    late = {"incident_id": first.incident_id, "version": first.version, "user_id": "U2",
            "at": format_time(at(5000)), "request_id": "late", "verdict": "wrong_root", "root_service": "db"}
    run.remediate(Feedback.model_validate(late))
    store.close()
    reopened = open_store(tmp_path / "history")
    past = lookup(reopened, signature_key("orders", "PoolExhausted"))
    assert (past.seen, past.wrong, past.confirmed) == (1, 1, 0)
    reopened.close()
