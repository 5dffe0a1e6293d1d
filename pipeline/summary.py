"""What a replay did, in numbers: webhooks, alerts, unique alerts, incidents, pages, dedup ratio."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pipeline.alerts import InputError
from pipeline.diagnose import Diagnosis


@dataclass
class ReplaySummary:
    lines: Counter = field(default_factory=Counter)
    alerts: int = 0
    errors: int = 0
    cut_at: int | None = None  # the line where the input broke off, if it did
    error_fields: Counter = field(default_factory=Counter)
    dead_letters: Counter = field(default_factory=Counter)
    latest: dict[str, Diagnosis] = field(default_factory=dict)
    versions: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def line(self, kind: str, records: int) -> None:
        self.lines[kind] += 1
        self.alerts += records

    def error(self, error: InputError) -> None:
        self.errors += 1
        self.error_fields[error.reason[:80]] += 1

    def dead_letter(self, dead) -> None:
        self.dead_letters[dead.reason] += 1

    def diagnosis(self, diagnosis: Diagnosis) -> None:
        self.versions += 1
        self.latest[diagnosis.incident_id] = diagnosis

    @property
    def unique_alerts(self) -> int:
        return sum(self.counts.get(f"dedupe_{r}", 0) for r in ("new", "refire", "flapping"))

    @property
    def incidents(self) -> int:
        return len(self.latest)

    @property
    def pages(self) -> int:
        return sum(1 for d in self.latest.values() if d.paged_at is not None)

    def paging(self, versions: list[Diagnosis]) -> list[Diagnosis]:
        """The version of each paging incident to show: its last while still firing, else its last."""
        shown: dict[str, Diagnosis] = {}
        for d in versions:
            if d.paged_at is not None and (d.status == "firing" or d.incident_id not in shown):
                shown[d.incident_id] = d
        return list(shown.values())

    def headline(self) -> str:
        return (f"{self.alerts} alerts ({self.unique_alerts} unique) from {self.webhooks} webhooks "
                f"-> {self.incidents} incident(s), {self.pages} page(s)")

    @property
    def webhooks(self) -> int:
        return self.lines["webhook"] + self.lines["envelope"]

    def report(self) -> str:
        ratio = self.alerts / max(self.pages, 1)
        rows = [
            ("webhooks", self.webhooks),
            ("records", self.lines["record"]),
            ("alerts", self.alerts),
            ("unique alerts", self.unique_alerts),
            ("incidents", self.incidents),
            ("pages", self.pages),
            ("diagnosis versions", self.versions),
            ("dedup ratio", f"{ratio:.1f} alerts per page"),
            ("late records", self.counts.get("late", 0)),
            ("lines skipped", self.errors),
        ]
        if self.cut_at is not None:
            rows.append(("input broke off", f"at line {self.cut_at}: what followed was not read (exit status 1)"))
        text = "\n".join(f"{name:>20}  {value}" for name, value in rows)
        for reason, n in self.error_fields.most_common(5):
            text += f"\n{'':>20}  {n} x {reason}"
        for reason, n in self.dead_letters.items():
            text += f"\n{'dead letters':>20}  {n} {reason}"
        return text
