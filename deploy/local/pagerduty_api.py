#!/usr/bin/env python3
"""A local server that speaks PagerDuty's Events API v2 (``POST /v2/enqueue``) and records every call.

Stdlib only. It validates events as PagerDuty documents them (routing key,
``event_action`` trigger / acknowledge / resolve, ``dedup_key``, and for a
trigger a payload with summary, source and severity), answers 202 with the
dedup key, 400 with the errors, and keeps each alert's state by dedup key so a
test can see what a person on call would. Faults on demand (429, 5xx) come
from the recorder.

Command line::

    python deploy/local/pagerduty_api.py [--port 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import uuid
from pathlib import Path
from typing import Any

# The recorder beside this file, loaded by path as the tests load these scripts.
_spec = importlib.util.spec_from_file_location("stormdrain_local_recorder", Path(__file__).with_name("recorder.py"))
recorder = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
if not hasattr(recorder, "Recorder"):
    _spec.loader.exec_module(recorder)
Answer = recorder.Answer

ACTIONS = {"trigger": "triggered", "acknowledge": "acknowledged", "resolve": "resolved"}
SEVERITIES = {"critical", "error", "warning", "info"}


class PagerDutyAPI(recorder.Recorder):
    """PagerDuty's Events API v2, in memory: alerts by dedup key with their state and log."""

    name = "pagerduty-api"

    def __init__(self, port: int = 0):
        super().__init__(port)
        self.alerts: dict[str, dict] = {}  # dedup key -> {"status", "summary", "log": [actions]}

    @property
    def events_url(self) -> str:
        return self.url + "/v2/enqueue"

    def fault_answer(self, fault) -> Answer:
        answer = super().fault_answer(fault)
        return Answer(answer.status, {"status": "error", "message": answer.body["error"]}, answer.headers)

    def call(self, method: str, params: dict, headers: dict) -> Answer:
        if method != "v2/enqueue":
            return Answer(404, {"status": "error", "message": "not found"})
        errors = _errors(params)
        if errors:
            return Answer(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})
        key = params.get("dedup_key") or uuid.uuid4().hex
        with self.lock:
            alert = self.alerts.setdefault(key, {"status": None, "summary": "", "log": []})
            if params["event_action"] != "trigger" and alert["status"] in (None, "resolved"):
                alert["log"].append(params["event_action"] + " (ignored: no open alert)")
            else:
                alert["status"] = ACTIONS[params["event_action"]]
                alert["summary"] = (params.get("payload") or {}).get("summary", alert["summary"])
                alert["log"].append(params["event_action"])
        return Answer(202, {"status": "success", "message": "Event processed", "dedup_key": key})


def _errors(event: dict) -> list[str]:
    """What makes an event invalid, in PagerDuty's words."""
    errors = []
    if not isinstance(event.get("routing_key"), str) or len(event["routing_key"]) != 32:
        errors.append("'routing_key' must be a 32 character integration key")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' must be one of trigger, acknowledge, resolve")
    key = event.get("dedup_key")
    if action in ("acknowledge", "resolve") and not key:
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if key is not None and (not isinstance(key, str) or len(key) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action == "trigger":
        errors += _payload_errors(event.get("payload"))
    return errors


def _payload_errors(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is required for trigger"]
    errors = [f"'payload.{k}' is required" for k in ("summary", "source", "severity") if not payload.get(k)]
    if len(str(payload.get("summary", ""))) > 1024:
        errors.append("'payload.summary' must be at most 1024 characters")
    if payload.get("severity") and payload["severity"] not in SEVERITIES:
        errors.append("'payload.severity' must be one of critical, error, warning, info")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local PagerDuty Events API v2 that records every call.")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    return recorder.serve_forever(PagerDutyAPI(args.port), "PagerDuty Events API v2 (POST /v2/enqueue)")


if __name__ == "__main__":
    sys.exit(main())
