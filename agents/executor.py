"""The executor's dry run (`stormdrain executor --dry-run`): says which runbook it would run for each new
diagnosis version, and runs nothing. The real runs are agents/remediation.py.
"""

from __future__ import annotations

import sys
from typing import TextIO

from pipeline.diagnose import Diagnosis
from pipeline.remediate import Refused, plan_run
from pipeline.runbooks import Catalog


class Executor:
    """Logs, for one diagnosis version, the runbook it recommends and what running it would take."""

    def __init__(self, catalog: Catalog, out: TextIO = sys.stdout):
        self.catalog = catalog
        self.out = out

    def handle(self, diagnosis: Diagnosis) -> None:
        head = f"executor {diagnosis.incident_id} v{diagnosis.version}"
        runbook_id = diagnosis.recommended_runbook
        if runbook_id is None:
            print(f"{head}: no runbook matches; nothing to run", file=self.out, flush=True)
            return
        runbook = self.catalog.get(runbook_id)
        if runbook is None:
            print(f"{head}: {runbook_id} is not in the catalog; would refuse it", file=self.out, flush=True)
            return
        try:
            plan = plan_run(runbook, diagnosis, "dry-run", "dry-run")  # as a real run is planned
        except Refused as refused:
            print(f"{head}: would refuse {runbook_id}: {refused.why}", file=self.out, flush=True)
            return
        print(f"{head}: would run {runbook_id} ({runbook.title}) against {plan.target} once approved",
              file=self.out, flush=True)
