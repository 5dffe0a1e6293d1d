"""The Slack page: what it shows, within every Block Kit limit whatever the storm (golden: --regen-golden)."""

import json
from urllib.parse import unquote

import pytest

from pipeline.render import confidence
from pipeline.actions import Approval, Feedback
from pipeline.runbooks import load_catalog
from pipeline.slack import blockkit as bk
from pipeline.slack.page import ButtonValue, Links, manual_command, prometheus_link, render_message
from pipeline.slack.text import to_text
from tests.pages import demo_page, storm
from tests.timeline import alert, at, driver, graph_of, webhook

CATALOG = load_catalog()
HOSTILE = "<!channel> & <https://evil.example|click> `x` *y*"


def mrkdwn_texts(blocks):
    """Every mrkdwn text of a message: the texts Slack parses for mentions and links."""
    for block in blocks:
        objects = [block.get("text")] + block.get("fields", []) + block.get("elements", [])
        yield from (o["text"] for o in objects if isinstance(o, dict) and o.get("type") == "mrkdwn")


def test_the_demo_page_reads_as_it_should(golden):
    message = render_message(demo_page(), CATALOG, Links(prometheus="http://prometheus:9090"))
    assert bk.problems(message.blocks, message.text) == []
    golden("slack-demo-page.txt", to_text(message.blocks))


def test_the_demo_page_carries_what_a_person_needs():
    d = demo_page()
    text = to_text(render_message(d, CATALOG).blocks)
    for fact in ["order-service: DBConnectionPoolExhausted", confidence(d.confidence), "72 alerts, 1 page", "api-gateway",
                 "RB-DB-001 Raise the database connection pool", "ansible-playbook playbooks/rb-db-001",
                 "http://alertmanager-0.monitoring:9093/#/alerts", "[ Approve fix ]", "[ Run manually ]",
                 "[ Escalate ]", "[ Not actionable ]"]:
        assert fact in text, fact


def test_a_storm_of_3000_alerts_renders_within_every_block_kit_limit():
    d = storm(3000)
    assert d.unique_alerts == 3000 and len(d.affected_services) == 3000
    message = render_message(d, CATALOG, Links(prometheus="http://prom.example"))
    assert bk.problems(message.blocks, message.text) == []
    affected = message.blocks[2]["text"]["text"]
    shown = affected.count("svc-")
    assert 0 < shown < 3000 and affected.endswith(f"and {3000 - shown} more")
    assert "支付服务-🔥👩🏽‍💻" in affected  # label values in any script arrive whole
    assert len(json.dumps(message.blocks)) < 40_000


def test_hostile_label_values_are_escaped_everywhere():
    d = storm(3, name=lambda i: f"{HOSTILE}{i}")
    message = render_message(d, CATALOG)
    for text in mrkdwn_texts(message.blocks):
        assert "<!channel>" not in text and "<https://evil" not in text
    assert HOSTILE in message.blocks[0]["text"]["text"]  # plain text is not parsed: shown as it is
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in message.blocks[2]["text"]["text"]
    assert "<!channel>" not in message.text


def test_buttons_carry_the_incident_the_version_and_the_runbook():
    d = demo_page()
    [buttons] = [b for b in render_message(d, CATALOG).blocks if b["type"] == "actions"]
    values = {b["action_id"]: ButtonValue.model_validate_json(b["value"]) for b in buttons["elements"]}
    assert values["stormdrain.approve"] == ButtonValue(action="approve", incident_id=d.incident_id,
                                                       version=d.version, runbook="RB-DB-001")
    assert values["stormdrain.escalate"].runbook is None
    manual = next(b for b in buttons["elements"] if b["action_id"] == "stormdrain.manual")
    assert "ansible-playbook" in manual["confirm"]["text"]["text"]


def test_a_resolved_page_offers_no_fix_and_says_how_long_it_lasted():
    d = demo_page().model_copy(update={"status": "resolved"})
    message = render_message(d, CATALOG)
    [buttons] = [b for b in message.blocks if b["type"] == "actions"]
    assert [b["action_id"] for b in buttons["elements"]] == ["stormdrain.not_actionable"]
    assert "✅ RESOLVED" in message.blocks[0]["text"]["text"]
    assert "Resolved after 15m" in to_text(message.blocks)


def test_the_page_shows_who_approved_and_who_escalated():
    d = demo_page()
    acts = [Approval(incident_id=d.incident_id, version=7, user_id="U024BE7LH", user_name="ana", at=at(300),
                     request_id="r1", runbook="RB-DB-001"),
            Feedback(incident_id=d.incident_id, version=8, user_id="<!here>", user_name="<!here>", at=at(360),
                     request_id="r2", verdict="escalate")]
    text = to_text(render_message(d, CATALOG, acts=acts).blocks)
    assert "✅ Approved RB-DB-001 by @U024BE7LH at 03:59 UTC (saw v7)" in text
    assert "📣 Escalated by <!here> at 04:00 UTC (saw v8)" in text  # shown as text, escaped on the wire
    context = render_message(d, CATALOG, acts=acts).blocks[5]["elements"][1]["text"]
    assert "&lt;!here&gt;" in context


def test_a_double_click_on_approve_is_one_line_on_the_page():
    d = demo_page()
    clicks = [Approval(incident_id=d.incident_id, version=7, user_id="U024BE7LH", at=at(300 + i), request_id=f"r{i}",
                       runbook="RB-DB-001") for i in range(2)]
    text = to_text(render_message(d, CATALOG, acts=clicks).blocks)
    assert text.count("✅ Approved RB-DB-001 by @U024BE7LH") == 1


@pytest.mark.parametrize("service", ["x; rm -rf /", "{{ lookup('pipe','id') }}", "a" * 300, "$(id)", "a b"])
def test_no_command_is_offered_for_a_service_name_that_is_not_safe(service):
    d = demo_page()
    d = d.model_copy(update={"root_cause": d.root_cause.model_copy(update={"service": service})})
    assert manual_command(d, CATALOG.get("RB-DB-001")) is None
    elements = [b for b in render_message(d, CATALOG).blocks if b["type"] == "actions"][0]["elements"]
    assert "stormdrain.manual" not in [b["action_id"] for b in elements]


def test_a_warning_incident_is_a_notice_without_a_page():
    run = driver(graph_of("web>api"))
    run.pipe_webhook(webhook(alert("SlowRequests", "api", severity="warning")), at(30))
    run.advance(60)
    [d] = run.read("diagnoses")
    assert render_message(d, CATALOG).blocks[0]["text"]["text"].startswith("🟡 NOTICE")
    assert "no page" in to_text(render_message(d, CATALOG).blocks)


def test_slack_preview_prints_each_incidents_page_and_names_a_bad_line(tmp_path, capsys):
    from pipeline.cli import main
    path = tmp_path / "diagnoses.ndjson"
    path.write_text(demo_page().model_dump_json() + "\n")
    assert main(["slack-preview", str(path)]) == 0
    assert "🔴 PAGE order-service: DBConnectionPoolExhausted" in capsys.readouterr().out
    path.write_text(demo_page().model_dump_json() + "\n" + '{"incident_id": "<script>"}\n')
    assert main(["slack-preview", str(path), "--json"]) == 2
    assert f"{path}:2: not a diagnosis" in capsys.readouterr().err


@pytest.mark.parametrize("alert, selector", [
    ("DBConnectionPoolExhausted", 'ALERTS{alertname="DBConnectionPoolExhausted"}'),
    ("(no alertname)", 'ALERTS{alertstate="firing"}'),  # pushed through the API: no rule, no ALERTS series of it
    (None, 'ALERTS{alertstate="firing"}'),  # an inferred root has no alert
])
def test_the_prometheus_link_graphs_the_root_alerts_series_when_it_has_one(alert, selector):
    page = demo_page()
    page = page.model_copy(update={"root_cause": page.root_cause.model_copy(update={"alert": alert})})
    link = prometheus_link("http://prometheus:9090/", page)
    assert unquote(link) == f"http://prometheus:9090/graph?g0.expr={selector}&g0.tab=0"
