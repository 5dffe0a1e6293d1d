"""What people and the executor do about a diagnosis: approvals, feedback, remediation steps.

These are the values of the `approvals`, `feedback` and `remediations` topics.
Each names the incident and the diagnosis version it acted on, and carries a
request id so a retried delivery is recognised as the same act.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.alerts import Time

Name = Field(min_length=1, max_length=200)


INCIDENT_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"  # as the worker names them; nothing a log or shell obeys


class _Act(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident_id: str = Field(pattern=INCIDENT_ID)
    version: int = Field(ge=1)  # the diagnosis version the person saw
    user_id: str = Name
    user_name: str = Field(default="", max_length=200)
    at: Time
    request_id: str = Field(min_length=1, max_length=200)  # the same act delivered twice has the same id
    source: str = "slack"


class Approval(_Act):
    """A person approved running a runbook for an incident."""

    kind: Literal["approval"] = "approval"
    runbook: str = Field(pattern=r"^RB-[A-Z0-9]+-\d{3}$")


class Feedback(_Act):
    """A person's judgement of a diagnosis, for the noise report and for history."""

    kind: Literal["feedback"] = "feedback"
    verdict: Literal["not_actionable", "escalate", "confirmed", "wrong_root", "manual"]  # manual: runs it by hand
    root_service: str | None = Field(default=None, max_length=253)  # the right root, with wrong_root


RemediationStep = Literal[
    "approved", "check", "started", "finished", "failed", "timed_out", "interrupted", "refused", "skipped"
]


class RemediationEvent(BaseModel):
    """One step of a runbook run, as the executor reports it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["remediation"] = "remediation"
    incident_id: str = Field(min_length=1, max_length=64)
    runbook: str
    run_id: str
    step: RemediationStep
    at: Time
    by: str = ""  # who approved, or "auto"
    detail: str = ""
    duration_s: float | None = None
    output_tail: str = Field(default="", max_length=8000)
    diff: str = Field(default="", max_length=16000)

    @property
    def final(self) -> bool:
        return self.step in ("finished", "failed", "timed_out", "interrupted", "refused")
