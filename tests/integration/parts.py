"""Real parts for integration tests, or a clear skip (a failure under CI=true) when one is missing."""

from pipeline.bench.parts import local_prometheus
from tests.timeline import require_ci_part


def prometheus_part():
    """`deploy/local/prometheus.py` with Debian's binaries in place (installed when running as root)."""
    localprom = local_prometheus()
    try:
        localprom.ensure_installed()
    except localprom.NotInstalled as exc:
        require_ci_part(str(exc))
    return localprom
