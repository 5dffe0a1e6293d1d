"""The truth a replay is scored against: which service really was the root of which alerts.

Two sources. A labelled benchmark: the `.truth.json` beside a generated
history, one fault per storm with its root and its alerts' fingerprints. And
people's feedback (the feedback topic's records): `confirmed` says the
diagnosis named the right root, `wrong_root` names the right one; each is
matched to its incident in a replay under the configuration that was live when
people judged it, since a replay gives the same incident ids and versions.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.actions import Feedback
from pipeline.alerts import InputError, Time, validation_error
from pipeline.bench.storms import Fault
from pipeline.config import read_structured
from pipeline.diagnose import Diagnosis
from pipeline.replay import open_input

MAX_TRUTH_BYTES = 256 << 20
MAX_RECORD_LINE = 1 << 20
M = TypeVar("M", bound=BaseModel)


class FaultSpec(BaseModel):
    """One labelled fault: its root service, when it began, and the alerts it caused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str = Field(min_length=1, max_length=253)
    at: Time
    silent: bool = False
    affected: list[str] = Field(default_factory=list, max_length=100_000)
    fingerprints: list[str] = Field(min_length=1, max_length=1_000_000)


class TruthFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    faults: list[FaultSpec] = Field(max_length=1_000_000)


def load_truth(path: str | Path) -> list[Fault]:
    """Read a truth file; an error names the file and the field."""
    data = read_structured(Path(path), "truth", MAX_TRUTH_BYTES)
    try:
        truth = TruthFile.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, prefix=str(path)) from None
    return [Fault(root=f.root, silent=f.silent, at=f.at, affected=list(f.affected), fingerprints=set(f.fingerprints))
            for f in truth.faults]


def read_records(path: str | Path, model: type[M]) -> tuple[list[M], Counter]:
    """Read one JSON record a line (feedback, diagnoses); a bad line is counted by why, and skipped."""
    kept, skipped = [], Counter()
    try:
        stream = open_input(str(path))
    except InputError as exc:
        raise InputError(str(path), exc.reason) from None
    with stream:
        while line := stream.readline(MAX_RECORD_LINE + 1):
            if len(line) > MAX_RECORD_LINE:
                skipped["line over the size limit"] += 1
                while line and not line.endswith(b"\n"):
                    line = stream.readline(1 << 20)
            elif line.strip():
                try:
                    kept.append(model.model_validate_json(line))
                except ValidationError as exc:
                    skipped[f"not a {model.__name__} record: {validation_error(exc)}"[:100]] += 1
    return kept, skipped


def faults_from_feedback(feedback: list[Feedback], versions: list[Diagnosis]) -> tuple[list[Fault], Counter]:
    """One fault per incident people judged on its root; the last word on an incident wins."""
    seen = {(d.incident_id, d.version): d for d in versions}
    latest = {d.incident_id: d for d in versions}
    roots: dict[str, str] = {}
    unused: Counter = Counter()
    for act in sorted(feedback, key=lambda f: f.at):
        judged = seen.get((act.incident_id, act.version))
        if judged is None:
            unused["feedback on an incident version the replay does not have"] += 1
        elif act.verdict == "confirmed" and judged.root_cause.service:
            roots[act.incident_id] = judged.root_cause.service
        elif act.verdict == "wrong_root" and act.root_service:
            roots[act.incident_id] = act.root_service
        else:
            unused[f"{act.verdict} feedback names no root"] += 1
    faults = [Fault(root=root, silent=False, at=latest[i].opened_at, affected=list(latest[i].affected_services),
                    fingerprints=set(latest[i].fingerprints)) for i, root in roots.items()]
    return faults, unused
