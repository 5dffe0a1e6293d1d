"""Runbooks as programs: the catalog (runbooks.yaml) and one Ansible playbook per runbook."""
