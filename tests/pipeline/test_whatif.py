"""The what-if report: a config change with a known effect shows that effect, and the page stands alone."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from pipeline.alerts import fingerprint
from pipeline.config import Config
from pipeline.identity import Identity
from pipeline.tune import Job, Variant, run_jobs
from pipeline.whatif import compare, read_history, summary
from pipeline.whatif_html import render
from tests.pipeline.test_tune import FIRST, SECOND, write_history
from tests.timeline import alert

NARROW = {"incidents": {"gap": "1m"}}
WIDE = {"incidents": {"gap": "10m"}}


def _compare(history: str, current: dict, proposed: dict):
    jobs = [Job(history, None, None, Variant(name, Config.model_validate(data).model_dump()), keep_versions=True)
            for name, data in (("current", current), ("proposed", proposed))]
    return compare(*run_jobs(jobs, 1), read_history(history, Identity(Config().identity)))


@pytest.fixture
def history(tmp_path):
    return write_history(tmp_path / "storm.ndjson", FIRST, SECOND)


def _fingerprints(*bursts) -> set[str]:
    return {fingerprint(a["labels"]) for burst in bursts for a in burst}


def test_a_longer_gap_merges_the_two_bursts_and_the_report_lists_their_alerts(history):
    comparison = _compare(history, NARROW, WIDE)
    [merged] = comparison.of_kind("merged")
    assert (len(merged.current), len(merged.proposed)) == (2, 1)
    assert {a.fingerprint for a in merged.alerts} == _fingerprints(FIRST, SECOND)
    assert comparison.of_kind("split", "regrouped", "root changed") == []
    text = summary(comparison, ("narrow", "wide"))
    assert re.search(r"incidents\s+2\s+1\s+-1", text)
    page = render(comparison, ("narrow", "wide"), "UTC")
    section = page.split("Incidents that changed (1)")[1]
    assert "merged" in section and all(fp in section for fp in _fingerprints(FIRST, SECOND))


def test_the_same_change_the_other_way_is_a_split(history):
    comparison = _compare(history, WIDE, NARROW)
    [split] = comparison.of_kind("split")
    assert (len(split.current), len(split.proposed)) == (1, 2)


def test_paging_on_warnings_shows_as_more_pages(history):
    comparison = _compare(history, NARROW, {**NARROW, "page": {"severities": ["critical", "warning"]}})
    assert (comparison.current.pages, comparison.proposed.pages) == (1, 2)
    assert re.search(r"pages\s+1\s+2\s+\+1", summary(comparison, ("a", "b")))


def test_a_new_root_for_the_same_alerts_is_a_root_change(tmp_path):
    history = write_history(tmp_path / "storm.ndjson", [alert("PoolExhausted", "orders"),
                                                        alert("HighErrorRate", "web", starts=20,
                                                              root_cause_candidate="true")])
    # a pool exhausted reads as a cause; the label claims the root: the ratios decide between them
    comparison = _compare(history, {"rank": {"label_ratio": 1.0, "cause_ratio": 50}},
                          {"rank": {"label_ratio": 50, "cause_ratio": 1.0}})
    [change] = comparison.changes
    assert change.kind == "root changed"
    assert (change.current[0].root_cause.service, change.proposed[0].root_cause.service) == ("orders", "web")


def test_the_page_is_self_contained_with_its_plots_inline(history):
    page = render(_compare(history, NARROW, WIDE), ("narrow", "wide"), "Europe/Berlin")
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', page)) >= 2
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page, re.I)
    assert "<script" not in page and "<link" not in page and "@import" not in page


def test_names_and_labels_are_escaped(tmp_path):
    history = write_history(tmp_path / "storm.ndjson", [alert("<script>alert(1)</script>", "web")])
    page = render(_compare(history, {}, {}), ("<b>x</b>", "y"), "UTC")
    assert "<script>alert" not in page and "<b>x</b>" not in page


def test_the_report_command_writes_the_page_and_prints_the_summary(history, tmp_path):
    (tmp_path / "narrow.yaml").write_text("incidents: {gap: 1m}\n")
    (tmp_path / "wide.yaml").write_text("incidents: {gap: 10m}\n")
    out = tmp_path / "report.html"
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "report", "whatif", "--history", history,
                             "--current", str(tmp_path / "narrow.yaml"), "--proposed", str(tmp_path / "wide.yaml"),
                             "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.search(r"incidents\s+2\s+1\s+-1", result.stdout) and "1 merged" in result.stdout
    assert out.read_text().startswith("<!doctype html>")


def test_a_bad_proposed_config_stops_the_report_with_a_message(history, tmp_path):
    (tmp_path / "bad.yaml").write_text("incidents: {gap: soon}\n")
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "report", "whatif", "--history", history,
                             "--proposed", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "r.html")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "incidents.gap" in result.stderr and "Traceback" not in result.stderr
