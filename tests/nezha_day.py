"""A small recorded day in the Nezha layout, written for tests: three services, two CPU faults.

web calls cart and catalog. Each fault saturates one pod's CPU for three minutes,
and web's p90 latency rises while it lasts; everything else wobbles around its
level. Faults are 20 minutes apart, after an hour of calm.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

START = datetime(2022, 8, 22, 3, 0, 0, tzinfo=timezone.utc)
PODS = {"web": "web-579b9bff58-t2dbm", "cart": "cart-579f59597d-wc2lz", "catalog": "catalog-668d5f85fb-wckp8"}
FAULTS = [("cart", START + timedelta(minutes=62, seconds=5)), ("catalog", START + timedelta(minutes=82, seconds=5))]
COLUMNS = ["Time", "TimeStamp", "PodName", "CpuUsage(m)", "CpuUsageRate(%)", "MemoryUsage(Mi)", "MemoryUsageRate(%)",
           "PodClientLatencyP90(s)", "PodServerLatencyP90(s)", "PodWorkload(Ops)", "PodSuccessRate(%)"]


def write_day(root: Path, minutes: int = 110) -> Path:
    """Write the day under root/<system>/<day>/ and return that directory."""
    day = root / "online-boutique" / "2022-08-22"
    (day / "metric").mkdir(parents=True)
    for service, pod in PODS.items():
        rows = [_row(service, pod, START + timedelta(minutes=m, seconds=19)) for m in range(minutes)]
        _write_csv(day / "metric" / f"{pod}_metric.csv.gz", COLUMNS, rows)
    _write_csv(day / "metric" / "dependency.csv.gz", ["Source", "Target", "Weight"],
               [["web", "cart", 1], ["web", "catalog", 1], ["web", "10.0.0.7", 1]])
    faults = {f"{at:%H}": [] for _, at in FAULTS}
    for service, at in FAULTS:
        faults[f"{at:%H}"].append({"inject_time": f"{at:%Y-%m-%d %H:%M:%S}",
                                   "inject_timestamp": str(int(at.timestamp())),
                                   "inject_pod": PODS[service], "inject_type": "cpu_contention"})
    (day / "fault_list.json").write_text(json.dumps(faults, indent=1))
    return day


def _row(service: str, pod: str, at: datetime) -> list:
    minute = (at - START).total_seconds() / 60
    wobble = 1 + 0.05 * math.sin(minute)
    hot = any(s == service and timedelta(0) <= at - f < timedelta(minutes=3) for s, f in FAULTS)
    slow = any(timedelta(0) <= at - f < timedelta(minutes=3) for _, f in FAULTS) and service == "web"
    cpu_pct = 97.0 if hot else 10.0 * wobble
    latency = 0.8 if slow else 0.05 * wobble
    return [f"{at:%Y-%m-%d %H:%M:%S}.5 +0000 UTC m=+{minute * 60:.1f}", int(at.timestamp()), pod,
            cpu_pct * 0.2, cpu_pct, 40 * wobble, 31.25 * wobble, 0.004 * wobble, latency, 5 * wobble, 0]


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(gzip.compress(text.getvalue().encode()))
