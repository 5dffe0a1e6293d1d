"""`stormdrain executor --dry-run`: says what a real run would do, refusals included, and runs nothing."""

import io

from agents.executor import Executor
from pipeline.diagnose import RootCause
from pipeline.runbooks import load_catalog
from tests.pages import thirty_alert_storm

PAGE = thirty_alert_storm()[-1].model_copy(update={"status": "firing", "recommended_runbook": "RB-DB-001"})


def said(diagnosis) -> str:
    out = io.StringIO()
    Executor(load_catalog(), out).handle(diagnosis)
    return out.getvalue().strip()


def with_namespace(namespace: str):
    root = PAGE.root_cause
    return PAGE.model_copy(update={"root_cause": RootCause(service=root.service, alert=root.alert,
                                                           labels={**root.labels, "namespace": namespace})})


def test_a_runbook_a_real_run_would_take_is_would_run():
    assert said(with_namespace("shop")).endswith(f"would run RB-DB-001 (Raise the database connection pool and roll "
                                                 f"the service) against {PAGE.root_cause.service} once approved")


def test_a_hostile_label_or_an_unknown_runbook_is_would_refuse_as_a_real_run_refuses_it():
    assert "would refuse RB-DB-001: parameter k8s_namespace:" in said(with_namespace("../../etc"))
    assert said(PAGE.model_copy(update={"recommended_runbook": "RB-ZZZ-999"})).endswith(
        "RB-ZZZ-999 is not in the catalog; would refuse it")
