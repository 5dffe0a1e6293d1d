"""Pages are golden files: the five lines for each storm timeline (regenerate with --regen-golden)."""

from pipeline.cli import replay
from pipeline.bench import demo
from pipeline.config import Config
from pipeline.embedded import Embedded
from pipeline.graph import load_graph
from pipeline.render import render_page
from pipeline.runbooks import load_catalog
from tests.timeline import alert, at, driver, graph_of, webhook

CATALOG = load_catalog()


def _pages(run):
    return "\n\n".join(render_page(d, CATALOG) for d in run.read("diagnoses")) + "\n"


def test_the_demo_page(golden):
    engine = Embedded(Config(), load_graph(demo.GRAPH), CATALOG)
    versions = []
    with open(demo.STORM, "rb") as stream:
        summary = replay(stream, engine, versions.append)
    [page] = summary.paging(versions)
    golden("demo-page.txt", render_page(page, CATALOG) + "\n")


def test_a_silent_cache_storm_from_first_page_to_resolved(golden):
    run = driver(graph_of("cart>cache", "checkout>cache", "web>cart", "web>checkout", kinds={"cache": "datastore"}))
    run.pipe_webhook(webhook(alert("HighLatency", "cart"), alert("HighLatency", "checkout", starts=4)), at(30))
    run.advance(30)
    run.pipe_webhook(webhook(alert("HighErrorRate", "web", starts=50)), at(80))
    run.pipe_webhook(webhook(alert("HighLatency", "cart", status="resolved", ends=200),
                             alert("HighLatency", "checkout", status="resolved", starts=4, ends=200),
                             alert("HighErrorRate", "web", status="resolved", starts=50, ends=210)), at(220))
    run.advance(10)
    golden("silent-cache-storm.txt", _pages(run))


def test_a_warning_only_storm_is_a_notice_not_a_page(golden):
    run = driver(graph_of("web>api"))
    run.pipe_webhook(webhook(alert("SlowRequests", "api", severity="warning"),
                             alert("SlowRequests", "web", severity="warning", starts=3)), at(30))
    run.advance(60)
    text = _pages(run)
    assert "PAGE" not in text and "NOTICE" in text
    golden("warning-notice.txt", text)


def test_a_label_value_cannot_drive_the_terminal_or_break_the_five_lines():
    run = driver(graph_of("web>api"))
    run.pipe_webhook(webhook(alert("Down", "api\x1b[31m\x00\nrm", severity="critical")), at(30))
    run.advance(60)
    [page] = [render_page(d) for d in run.read("diagnoses")][-1:]
    assert "\x1b" not in page and "\x00" not in page and "api\ufffd[31m\ufffd\ufffdrm" in page
    assert len(page.splitlines()) == 5
