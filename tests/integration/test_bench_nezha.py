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


def test_the_ranking_is_the_same_when_the_fault_list_carries_times_only(day, tmp_path):
    times = tmp_path / "times.txt"
    times.write_text("".join(f"{at:%Y-%m-%d %H:%M:%S}\n" for _, at in FAULTS))
    labelled = _bench(day, tmp_path / "labelled.json")
    bare = _bench(day, tmp_path / "bare.json", "--faults", str(times))
    assert [r["candidates"] for r in bare["faults"]] == [r["candidates"] for r in labelled["faults"]]
    assert [r["confidence"] for r in bare["faults"]] == [r["confidence"] for r in labelled["faults"]]
    assert all(r["true_service"] is None and r["rank_of_true"] is None for r in bare["faults"])
    assert bare["figures"] == {}
