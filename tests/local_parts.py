"""The local stand-ins for Slack and PagerDuty (deploy/local), loaded by path as scripts, with fixtures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

LOCAL = Path(__file__).resolve().parents[1] / "deploy" / "local"
TOKEN = "xoxb-local-test"


def load_local(name: str):
    """A script of deploy/local as a module (each loaded once)."""
    key = f"stormdrain_local_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, LOCAL / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


@pytest.fixture
def slack_api():
    """A local Slack Web API on a free port, accepting TOKEN."""
    with load_local("slack_api").SlackAPI(token=TOKEN).start() as api:
        yield api


@pytest.fixture
def pagerduty_api():
    with load_local("pagerduty_api").PagerDutyAPI().start() as api:
        yield api


@pytest.fixture
def webhook_receiver():
    with load_local("recorder").Recorder().start() as api:
        yield api
