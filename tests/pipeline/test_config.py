"""A bad configuration stops the command with the file and the field, never a traceback."""

import json

import pytest

from pipeline.alerts import InputError
from pipeline.config import load_config


@pytest.mark.parametrize("config, field", [
    ({"identity": {"ignore_values": "(exporter"}}, "identity.ignore_values"),
    ({"incidents": {"hold": "99999999999d"}}, "incidents.hold"),  # past what a time can hold
    ({"incidents": {"quiet": "3000000d"}}, "incidents.quiet"),  # 8,000 years: no event time survives it
    ({"dedupe": {"retention": float("inf")}}, "dedupe.retention"),
    ({"rank": {"root_lag": 0}}, "rank.root_lag"),  # a divisor of the ranking
    ({"evidence": {"step": "0s"}}, "evidence.step"),
    ({"rank": {"calibration": {"intercept": float("nan")}}}, "rank.calibration.intercept"),
    ({"rank": {"calibration": {"slope": float("inf")}}}, "rank.calibration.slope"),
    ({"rank": {"p_noise": float("nan")}}, "rank.p_noise"),
    ({"rank": {"layers": {"database": float("inf")}}}, "rank.layers.database"),
])
def test_a_bad_value_names_the_file_and_the_field(tmp_path, config, field):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(InputError) as error:
        load_config(path)
    assert error.value.field == f"{path}.{field}"


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"incidents": ' * 10_000 + "{}" + "}" * 10_000])
def test_a_file_nested_too_deeply_is_refused_by_name(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(InputError, match="nested too deeply") as error:
        load_config(path)
    assert error.value.field == str(path)


def test_a_duration_of_years_is_still_taken(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("dedupe:\n  retention: 365d\n")
    assert load_config(path).dedupe.retention.days == 365


def test_one_page_severity_may_be_written_alone(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("page:\n  severities: critical\n")
    assert load_config(path).page.severities == ("critical",)
