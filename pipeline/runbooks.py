"""The runbook catalog, and the choice of a runbook for a diagnosed root cause."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import playbooks
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.alerts import InputError, validation_error
from pipeline.config import check_regex, read_structured

CATALOG_ENV = "STORMDRAIN_RUNBOOKS"
DEFAULT_CATALOG = Path(playbooks.__file__).resolve().parent / "runbooks.yaml"


class Match(BaseModel):
    """What a runbook fixes: regular expressions on the root's alert and labels, or its kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alertname: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    kind: str | None = None

    @field_validator("alertname")
    @classmethod
    def _alertname(cls, value: str | None) -> str | None:
        return check_regex(value) if value is not None else None

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return {k: check_regex(v) for k, v in value.items()}

    def fits(self, alertname: str | None, labels: dict[str, str], kind: str) -> bool:
        if self.kind is not None and self.kind != kind:
            return False
        if self.alertname is not None and not (alertname and re.fullmatch(self.alertname, alertname)):
            return False
        return all(re.fullmatch(p, labels.get(k, "")) for k, p in self.labels.items())


class Runbook(BaseModel):
    """One catalog entry; fields beyond these belong to the executor."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(pattern=r"^RB-[A-Z0-9]+-\d{3}$")
    title: str
    playbook: str = ""
    match: Match = Match()


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    runbooks: list[Runbook] = Field(default_factory=list)

    def choose(self, alertname: str | None, labels: dict[str, str], kind: str) -> Runbook | None:
        """The first runbook whose match fits the root cause, or None."""
        return next((rb for rb in self.runbooks if rb.match.fits(alertname, labels, kind)), None)

    def get(self, runbook_id: str) -> Runbook | None:
        return next((rb for rb in self.runbooks if rb.id == runbook_id), None)


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read the runbook catalog: the given path, $STORMDRAIN_RUNBOOKS, or the bundled one."""
    path = path or os.environ.get(CATALOG_ENV) or DEFAULT_CATALOG
    return parse_catalog(read_structured(path, "runbook catalog"), str(path))


def parse_catalog(data: Any, where: str = "catalog") -> Catalog:
    try:
        return Catalog.model_validate(data or {})
    except ValidationError as exc:
        raise validation_error(exc, prefix=where) from None
