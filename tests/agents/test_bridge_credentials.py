"""A bridge whose credentials are unusable does not start: it would answer every webhook 401, and Alertmanager
drops a notification for good on a 4xx."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("env, named", [
    ({"STORMDRAIN_BRIDGE_TOKEN_FILE": "{empty}"}, "STORMDRAIN_BRIDGE_TOKEN_FILE"),  # a secret not yet filled in
    ({"STORMDRAIN_BRIDGE_TOKEN_FILE": "{missing}"}, "STORMDRAIN_BRIDGE_TOKEN_FILE"),
    ({"STORMDRAIN_BRIDGE_BASIC_AUTH": "stormdrain"}, "STORMDRAIN_BRIDGE_BASIC_AUTH"),  # no password
    ({"STORMDRAIN_BRIDGE_BASIC_AUTH": ":s3cret"}, "STORMDRAIN_BRIDGE_BASIC_AUTH"),  # no user
])
def test_a_bridge_with_unusable_credentials_stops_at_start_naming_them(tmp_path, env, named):
    empty = tmp_path / "token"
    empty.write_text("\n")
    paths = {"{empty}": str(empty), "{missing}": str(tmp_path / "nope")}
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("STORMDRAIN_BRIDGE_", "SLACK_"))}
    environ.update({k: paths.get(v, v) for k, v in env.items()})
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "bridge", "--bootstrap", "127.0.0.1:9",
                             "--host", "127.0.0.1", "--port", "0"], env=environ, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert f"stormdrain: {named}" in result.stderr and "Traceback" not in result.stderr
