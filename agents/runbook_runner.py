"""Run one planned runbook through ansible-runner: check mode first when asked, within its timeout.

Parameters reach Ansible only through a vars file that this module writes,
with every string tagged `!unsafe`, so Ansible never renders a value as a
template, even one that got past the catalog's checks. Nothing goes through a
shell. The functions here block for the length of a playbook: the Kafka
runtime calls them in a worker thread, never in its consume loop.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline.remediate import RunPlan, RunResult
from pipeline.runbooks import Scalar

TAIL = 4000
DIFF_LIMIT = 16000
SAFE_ID = re.compile(r"[A-Za-z0-9._/-]{1,200}")
ENV = {
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_FORCE_COLOR": "0",
    "ANSIBLE_RETRY_FILES_ENABLED": "0",
    "ANSIBLE_LOCALHOST_WARNING": "0",
    "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    "ANSIBLE_DEPRECATION_WARNINGS": "0",
}


@dataclass(frozen=True)
class Phase:
    """How one ansible-playbook invocation ended."""

    status: str  # successful, failed, timeout, canceled
    rc: int | None
    stdout: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "successful"


@dataclass(frozen=True)
class Workspace:
    """Where runs happen: the playbook folders, a work folder for ansible-runner, the demo scratch folder."""

    playbook_dirs: tuple[Path, ...]
    work_dir: Path
    scratch_dir: Path

    def playbook(self, name: str) -> Path:
        """The playbook file by name, from the first folder that has it."""
        for folder in self.playbook_dirs:
            if (folder / name).is_file():
                return folder / name
        raise FileNotFoundError(f"playbook {name} is in none of {', '.join(map(str, self.playbook_dirs))}")


def vars_yaml(values: dict[str, Scalar]) -> str:
    """The vars file: strings tagged !unsafe (never templated), numbers and booleans as plain literals."""
    lines = ["---"]
    for name, value in sorted(values.items()):
        lines.append(f"{name}: {_literal(value)}")
    return "\n".join(lines) + "\n"


def _literal(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a parameter value is not a finite number")
        return repr(value)
    return "!unsafe " + json.dumps(str(value))  # a JSON string is a YAML double-quoted scalar


def run_vars(plan: RunPlan, workspace: Workspace) -> dict[str, Scalar]:
    """The plan's checked parameters plus what every playbook is told: the run, the incident, the scratch folder."""
    for value in (plan.run_id, plan.incident_id):
        if not SAFE_ID.fullmatch(value):
            raise ValueError("run or incident id has characters a playbook should not see")
    return {**plan.parameters, "stormdrain_run_id": plan.run_id, "stormdrain_incident_id": plan.incident_id,
            "stormdrain_scratch": str(workspace.scratch_dir.resolve())}


def run_phase(plan: RunPlan, workspace: Workspace, check: bool, timeout_s: float,
              cancel: threading.Event | None = None) -> Phase:
    """One ansible-playbook invocation of the plan's playbook; blocks until it ends or its timeout stops it."""
    import ansible_runner  # the executor extra; imported here so the command line loads without it

    playbook = workspace.playbook(plan.playbook)
    private = workspace.work_dir / plan.run_id
    private.mkdir(parents=True, exist_ok=True)
    vars_file = private / "stormdrain-vars.yml"
    vars_file.write_text(vars_yaml(run_vars(plan, workspace)))
    workspace.scratch_dir.mkdir(parents=True, exist_ok=True)
    cmdline = f"-e @{shlex.quote(str(vars_file))}" + (" --check --diff" if check else "")
    began = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(private), project_dir=str(playbook.parent), playbook=playbook.name,
        ident=f"{'check' if check else 'run'}-{int(time.time() * 1000)}", inventory=_inventory(),
        cmdline=cmdline, envvars=_environment(), quiet=True, timeout=max(1, math.ceil(timeout_s)),
        cancel_callback=(lambda: cancel.is_set()) if cancel else (lambda: False),
        settings={"pexpect_timeout": 1},  # how often the timeout and the cancel flag are looked at
    )
    stdout = runner.stdout.read() if runner.stdout else ""
    return Phase(status=runner.status, rc=runner.rc, stdout=stdout, seconds=time.monotonic() - began)


def require_ansible() -> None:
    """Stop at start, not at the first run, when ansible-runner or ansible-playbook is missing."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("ansible_runner") is None or not shutil.which(
            "ansible-playbook", path=_environment()["PATH"]):
        raise RuntimeError("the executor needs Ansible: pip install 'stormdrain[executor]'")


def _environment() -> dict[str, str]:
    """Ansible's settings, and the PATH of the executor's own environment first, where ansible-playbook is."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**ENV, "PATH": path}


def _inventory() -> dict:
    """Only localhost, through the executor's own Python, where the kubernetes client is installed."""
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    return {"all": {"hosts": {"localhost": host}}}


def execute(plan: RunPlan, workspace: Workspace, on_check: Callable[[Phase], None],
            cancel: threading.Event | None = None) -> RunResult:
    """The whole run: check mode first when the plan asks (reported through on_check), then the real run."""
    deadline = time.monotonic() + plan.timeout_s
    began = time.monotonic()
    if plan.check_first:
        check = run_phase(plan, workspace, True, plan.timeout_s, cancel)
        on_check(check)
        if not check.ok:
            return _result(plan, check, time.monotonic() - began, "check mode")
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return RunResult(run_id=plan.run_id, step="timed_out", duration_s=time.monotonic() - began,
                         detail=f"check mode used up the {plan.timeout_s:.0f}s timeout")
    real = run_phase(plan, workspace, False, remaining, cancel)
    return _result(plan, real, time.monotonic() - began, "the run")


def _result(plan: RunPlan, phase: Phase, duration: float, what: str) -> RunResult:
    tail = phase.stdout[-TAIL:]
    if phase.ok:
        return RunResult(run_id=plan.run_id, step="finished", duration_s=duration, output_tail=tail,
                         detail=f"{plan.playbook} succeeded")
    if phase.status == "timeout":
        return RunResult(run_id=plan.run_id, step="timed_out", duration_s=duration, output_tail=tail,
                         detail=f"{what} was stopped after the {plan.timeout_s:.0f}s timeout")
    reason = "was cancelled as the executor stopped" if phase.status == "canceled" else f"failed (rc {phase.rc})"
    return RunResult(run_id=plan.run_id, step="failed", duration_s=duration, output_tail=tail,
                     detail=f"{what} {reason}")


def check_diff(phase: Phase) -> str:
    """What check mode would change, as ansible-playbook --diff printed it, bounded."""
    text = phase.stdout
    return text if len(text) <= DIFF_LIMIT else "…" + text[-(DIFF_LIMIT - 1):]
