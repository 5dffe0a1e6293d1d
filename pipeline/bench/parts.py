"""The repository's scripts that run real parts on loopback, loaded by path (they are not installed)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from pipeline.alerts import InputError

ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=None)
def local_prometheus() -> ModuleType:
    """`deploy/local/prometheus.py`: Debian's Prometheus and Alertmanager on loopback, and backfill."""
    path = ROOT / "deploy" / "local" / "prometheus.py"
    if not path.exists():
        raise InputError(str(path), "this needs a source checkout: deploy/local/prometheus.py is missing")
    spec = importlib.util.spec_from_file_location("stormdrain_localprom", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
