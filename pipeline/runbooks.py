"""The runbook catalog, and the choice of a runbook for a diagnosed root cause."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import playbooks
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.alerts import validation_error
from pipeline.config import Duration, check_regex, read_structured

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


MAX_VALUE_LENGTH = 1024  # no parameter value, however its pattern reads, is longer than this
PARAMETER_NAME = r"^[a-z][a-z0-9_]{0,63}$"  # a plain Ansible variable name
RESERVED = ("ansible_", "stormdrain_")  # connection settings and what the executor passes to every run
SOURCE = r"^(root\.service|root\.alert|incident\.id|label\.[A-Za-z_][A-Za-z0-9_.\-/]{0,127})$"
Scalar = bool | int | float | str


class Parameter(BaseModel):
    """One playbook variable: its type, where its value comes from, and what values are allowed.

    A value comes from the catalog (`default`) or from the diagnosis (`from`:
    `root.service`, `root.alert`, `incident.id` or `label.<name>` of the root
    alert). Every string needs `allowed` values or a `pattern`, so no value
    reaches a playbook unchecked.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: Literal["string", "integer", "number", "boolean"] = "string"
    source: str | None = Field(default=None, alias="from", pattern=SOURCE)
    default: Scalar | None = None
    allowed: list[Scalar] | None = Field(default=None, min_length=1)
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    max_length: int = Field(default=253, ge=1, le=MAX_VALUE_LENGTH)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return check_regex(value) if value is not None else None

    @model_validator(mode="after")
    def _checkable(self) -> "Parameter":
        if self.type == "string" and self.allowed is None and self.pattern is None:
            raise ValueError("a string parameter needs `allowed` values or a `pattern`")
        if self.source is None and self.default is None:
            raise ValueError("a parameter needs a `default` or a `from`")
        for value in ([self.default] if self.default is not None else []) + (self.allowed or []):
            if not _is_type(value, self.type):
                raise ValueError(f"{value!r} is not of type {self.type}")
        return self


def _is_type(value: Scalar, kind: str) -> bool:
    """Whether a catalog value has the parameter's type (a bool is not a number here)."""
    if kind == "boolean" or isinstance(value, bool):
        return kind == "boolean" and isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int)
    return isinstance(value, (int, float)) if kind == "number" else isinstance(value, str)


class Approvers(BaseModel):
    """Who may approve a run: Slack user ids and Slack user group ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)

    @field_validator("users", "groups")
    @classmethod
    def _slack_ids(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"[A-Z0-9]{2,32}", item):
                raise ValueError(f"{item!r} is not a Slack id (upper-case letters and digits)")
        return value


RUNBOOK_ID = re.compile(r"^RB-[A-Z0-9]+-\d{3}$")


class Runbook(BaseModel):
    """One catalog entry: what it fixes, the playbook that fixes it, and how the executor may run it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=RUNBOOK_ID.pattern)
    title: str
    playbook: str = Field(default="", pattern=r"^([A-Za-z0-9_.\-]+\.ya?ml)?$")
    match: Match = Match()
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    target: str = "service"  # the parameter naming what the run changes: one run at a time per target
    approvers: Approvers = Approvers()
    auto_approve: bool = False
    min_confidence: float = Field(default=0.95, ge=0.0, le=1.0)  # auto-approve only above this
    cooldown: Duration = timedelta(minutes=30)
    timeout: Duration = timedelta(minutes=10)
    check_first: bool = True  # run with --check --diff first and publish the diff

    @field_validator("parameters")
    @classmethod
    def _names(cls, value: dict[str, Parameter]) -> dict[str, Parameter]:
        for name in value:
            if not re.fullmatch(PARAMETER_NAME, name):
                raise ValueError(f"{name!r} is not a plain variable name (lower case, digits, underscores)")
            if name.startswith(RESERVED):
                raise ValueError(f"{name!r}: names starting {' or '.join(RESERVED)} belong to Ansible and the executor")
        return value

    @model_validator(mode="after")
    def _target(self) -> "Runbook":
        if self.parameters and self.target not in self.parameters:
            raise ValueError(f"target {self.target!r} is not one of the parameters")
        if self.timeout <= timedelta(0) or self.cooldown < timedelta(0):
            raise ValueError("timeout must be positive and cooldown not negative")
        return self


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
