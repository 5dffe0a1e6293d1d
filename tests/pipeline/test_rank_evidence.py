"""How metric evidence enters the ranking: a service's ratio added to its log-likelihood, callers that moved are
not quiet."""

from pipeline.config import Config
from pipeline.embedded import Embedded
from pipeline.evidence import IncidentEvidence, SignalEvidence
from pipeline.runbooks import load_catalog
from tests.timeline import alert, at, graph_of, webhook

# web calls catalog directly and through recommend; only web alerts.
GRAPH = graph_of("web>catalog", "web>recommend", "recommend>catalog")


class _Answer:
    """An evidence provider that answers from a table of abnormal series."""

    def __init__(self, items):
        self.items = items

    def gather(self, request):
        items = [SignalEvidence(service=s, signal=k, llr=llr, onset_at=at(-30), text=f"{s} {k} moved")
                 for s, k, llr in self.items]
        scores = {s: llr for s, _, llr in self.items if s == "catalog"}
        return IncidentEvidence(incident_id=request.incident_id, revision=request.revision, at=request.as_of,
                                items=items, scores=scores)


def _top(items):
    run = Embedded(Config(), GRAPH, load_catalog(), evidence=_Answer(items))
    run.pipe_webhook(webhook(alert("HighLatency", "web", severity="critical")), at(30))
    run.advance(31)
    return run.read("diagnoses")[-1].candidates[0]


def test_a_caller_whose_metrics_moved_is_not_a_quiet_caller():
    # recommend sits between catalog and web's symptoms: quiet, it speaks against catalog; moved, it does not.
    assert _top([("catalog", "cpu", 1.0)]).service == "web"
    top = _top([("catalog", "cpu", 1.0), ("recommend", "latency", 0.5)])
    assert top.service == "catalog"
    assert "catalog cpu moved" in top.reasons and not any("not alerting" in r for r in top.reasons)


class _Moved:
    """An evidence provider whose services' metrics left their baseline at the given times (seconds)."""

    def __init__(self, moved):
        self.moved = moved

    def gather(self, request):
        items = [SignalEvidence(service=s, signal="latency", llr=1.0, onset_at=at(t), text=f"{s} latency moved")
                 for s, t in self.moved.items()]
        return IncidentEvidence(incident_id=request.incident_id, revision=request.revision, at=request.as_of,
                                items=items, scores={s: 1.0 for s in self.moved})


def _ranked_after_a_blip(moved):
    """web's alert fires at 0, five minutes before catalog's; both are ranked with the given metric onsets."""
    run = Embedded(Config(), GRAPH, load_catalog(), evidence=_Moved(moved))
    run.pipe_webhook(webhook(alert("HighLatency", "web", severity="warning", starts=0),
                             alert("HighLatency", "catalog", severity="warning", starts=300)), at(310))
    run.advance(30)
    return {c.service: c for c in run.read("diagnoses")[-1].candidates}


def test_an_alert_that_fired_before_its_service_s_metrics_moved_does_not_make_it_first():
    # web's metrics moved with catalog's, minutes after web's alert: that alert was a blip, not the first symptom.
    blip = _ranked_after_a_blip({"web": 300, "catalog": 280})
    assert "first to fire, at 03:59:00, with web" in blip["catalog"].reasons
    assert blip["catalog"].score > blip["web"].score
    # web's metrics moved when its alert fired: catalog came five minutes after it and pays for that.
    early = _ranked_after_a_blip({"web": 0, "catalog": 280})
    assert "fired 300s after web" in early["catalog"].reasons
    assert early["catalog"].score < blip["catalog"].score
