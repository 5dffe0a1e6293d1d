"""Playbook parameters: values from the catalog and the diagnosis, checked before any playbook sees them.

A label value is whatever an alert said, so it is hostile until proven
otherwise: it must have the declared type, fit the allowed values or the
pattern, stay within its length and hold no control characters. A value that
fails is rejected with the parameter's name and the reason, and never
echoed in full.
"""

from __future__ import annotations

import math
import re

from pipeline.diagnose import Diagnosis
from pipeline.runbooks import Parameter, Runbook, Scalar

INTEGER = re.compile(r"[+-]?\d{1,18}")
NUMBER = re.compile(r"[+-]?(\d{1,18}(\.\d{0,18})?|\.\d{1,18})([eE][+-]?\d{1,3})?")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
PREVIEW = 40


class ParameterError(ValueError):
    """A parameter value that may not reach a playbook; `name` is the parameter, `reason` says why."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"parameter {name}: {reason}")
        self.name = name
        self.reason = reason


def resolve(runbook: Runbook, diagnosis: Diagnosis) -> dict[str, Scalar]:
    """Every parameter of the runbook, from the catalog and the diagnosis, checked; ParameterError otherwise."""
    return {name: _value(name, spec, diagnosis) for name, spec in sorted(runbook.parameters.items())}


def _value(name: str, spec: Parameter, diagnosis: Diagnosis) -> Scalar:
    raw = _from_diagnosis(spec.source, diagnosis) if spec.source else None
    if raw is None:
        if spec.default is None:
            raise ParameterError(name, f"{spec.source} is not in the diagnosis and there is no default")
        raw = spec.default
    return check(name, spec, raw)


def _from_diagnosis(source: str, diagnosis: Diagnosis) -> str | None:
    root = diagnosis.root_cause
    if source == "root.service":
        return root.service
    if source == "root.alert":
        return root.alert
    if source == "incident.id":
        return diagnosis.incident_id
    return root.labels.get(source.removeprefix("label."))


def check(name: str, spec: Parameter, raw: Scalar) -> Scalar:
    """One value, coerced to the parameter's type and checked against its rules."""
    text = str(raw)
    if len(text) > spec.max_length:
        raise ParameterError(name, f"{len(text)} characters, more than the {spec.max_length} allowed")
    if CONTROL.search(text):
        raise ParameterError(name, f"control characters in {_preview(text)}")
    value = _coerce(name, spec.type, raw)
    if spec.allowed is not None and value not in [_coerce(name, spec.type, a) for a in spec.allowed]:
        raise ParameterError(name, f"{_preview(text)} is not one of the allowed values")
    if spec.pattern is not None and not re.fullmatch(spec.pattern, text):
        raise ParameterError(name, f"{_preview(text)} does not match {spec.pattern}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _bounds(name, spec, value)
    return value


def _coerce(name: str, kind: str, raw: Scalar) -> Scalar:
    """The value as its declared type; strings from labels are parsed strictly, never evaluated."""
    if kind == "string":
        if not isinstance(raw, str):
            raise ParameterError(name, f"{_preview(str(raw))} is not a string")
        return raw
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise ParameterError(name, f"{_preview(str(raw))} is not true or false")
    if isinstance(raw, bool):
        raise ParameterError(name, f"{raw} is not a {kind}")
    if kind == "integer":
        if isinstance(raw, int) or (isinstance(raw, str) and INTEGER.fullmatch(raw)):
            return int(raw)
        raise ParameterError(name, f"{_preview(str(raw))} is not an integer")
    if isinstance(raw, (int, float)) or (isinstance(raw, str) and NUMBER.fullmatch(raw)):
        value = float(raw)
        if math.isfinite(value):
            return value
    raise ParameterError(name, f"{_preview(str(raw))} is not a finite number")


def _bounds(name: str, spec: Parameter, value: float) -> None:
    if spec.min is not None and value < spec.min:
        raise ParameterError(name, f"{value} is below the minimum {spec.min}")
    if spec.max is not None and value > spec.max:
        raise ParameterError(name, f"{value} is above the maximum {spec.max}")


def _preview(text: str) -> str:
    """A short, printable rendering of a value for an error message."""
    shown = text[:PREVIEW].encode("unicode_escape").decode("ascii")
    return repr(shown + ("…" if len(text) > PREVIEW else ""))
