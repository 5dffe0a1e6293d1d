"""Every playbook in the catalog passes ansible-lint (production profile) and ansible-playbook --syntax-check."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.runbooks import DEFAULT_CATALOG, load_catalog

PLAYBOOKS = DEFAULT_CATALOG.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: pip install -e '.[test]' installs it")
    return found


def test_every_runbook_names_a_playbook_that_exists():
    for runbook in load_catalog().runbooks:
        assert (PLAYBOOKS / runbook.playbook).is_file(), runbook.id


def test_syntax_check_passes_on_every_playbook():
    playbooks = sorted(p.name for p in PLAYBOOKS.glob("*.yml"))
    done = subprocess.run([tool("ansible-playbook"), "--syntax-check", "-i", "localhost,", *playbooks],
                          cwd=PLAYBOOKS, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("playbook: ") == len(playbooks) == 5


def test_ansible_lint_passes_on_every_playbook():
    playbooks = sorted(p.name for p in PLAYBOOKS.glob("*.yml"))
    done = subprocess.run([tool("ansible-lint"), "--offline", "--nocolor", "--profile", "production", *playbooks],
                          cwd=PLAYBOOKS, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
