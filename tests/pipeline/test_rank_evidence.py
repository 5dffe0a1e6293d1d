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
