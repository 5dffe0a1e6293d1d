"""`stormdrain bench nezha` on a small recorded day, through a real Prometheus: two faults, with and without labels."""

import json

import pytest

from pipeline.cli import main
from tests.integration.parts import prometheus_part
from tests.nezha_day import FAULTS, write_day

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    prometheus_part()
    return write_day(tmp_path_factory.mktemp("nezha"))


def _bench(day, out, *extra):
    assert main(["bench", "nezha", str(day), "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_each_fault_gets_a_ranked_record_and_the_figures_stand_beside_the_published_ones(day, tmp_path):
    result = _bench(day, tmp_path / "labelled.json")
    records = result["faults"]
    assert [(r["true_service"], r["rank_of_true"], r["fault_class"]) for r in records] == [
        (service, 1, "resource") for service, _ in FAULTS]
    assert all(r["source"] == "diagnosis" and 0 < r["confidence"] <= 1 for r in records)
    assert all(sorted(r["candidates"]) == ["cart", "catalog", "web"] for r in records)
    assert any("CPU" in text and "x its baseline" in text for text in records[0]["evidence"])
    assert result["figures"]["resource"]["as_at_1"] == 1.0
    assert result["published"]["Nezha, metrics+traces+logs"] == [92.86, 96.43, 96.43]


def test_the_reliability_of_the_pages_confidence_is_printed_and_kept_as_the_records_say(day, tmp_path, capsys):
    result = _bench(day, tmp_path / "labelled.json")
    printed = capsys.readouterr().out.split("\n\n")[-1].splitlines()
    paged = [r for r in result["faults"] if r["source"] == "diagnosis"]
    assert printed[0] == f"confidence reliability (the page of each labelled fault: {len(paged)} of 2 faults):"
    assert printed[1].split() == ["confidence", "n", "mean", "conf", "right"]
    rows = result["calibration"]["reliability"]
    assert [line.split() for line in printed[2:-1]] == [
        [row["range"], str(row["n"]), f"{row['mean_confidence']:.3f}", f"{row['right']:.3f}"] for row in rows]
    bins = [row for row in rows if not row["range"].startswith(">=")]
    assert sum(row["n"] for row in bins) == len(paged) == len(FAULTS)
    confidences = [r["confidence"] for r in paged]
    right = [r["rank_of_true"] == 1 for r in paged]
    assert sum(row["n"] * row["mean_confidence"] for row in bins) == pytest.approx(sum(confidences), abs=2e-3)
    assert sum(row["n"] * row["right"] for row in bins) == pytest.approx(sum(right), abs=2e-3)
    brier = sum((c - r) ** 2 for c, r in zip(confidences, right)) / len(paged)
    assert result["calibration"]["brier"] == pytest.approx(brier, abs=1e-4)
    assert printed[-1] == f"Brier score {result['calibration']['brier']}"


def test_the_ranking_is_the_same_when_the_fault_list_carries_times_only(day, tmp_path):
    times = tmp_path / "times.txt"
    times.write_text("".join(f"{at:%Y-%m-%d %H:%M:%S}\n" for _, at in FAULTS))
    labelled = _bench(day, tmp_path / "labelled.json")
    bare = _bench(day, tmp_path / "bare.json", "--faults", str(times))
    assert [r["candidates"] for r in bare["faults"]] == [r["candidates"] for r in labelled["faults"]]
    assert [r["confidence"] for r in bare["faults"]] == [r["confidence"] for r in labelled["faults"]]
    assert all(r["true_service"] is None and r["rank_of_true"] is None for r in bare["faults"])
    assert bare["figures"] == {} and bare["calibration"] == {}
