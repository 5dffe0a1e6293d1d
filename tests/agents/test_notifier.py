"""The notifier without a broker: which sinks the configuration builds, and what each sink gets of a batch."""

import asyncio
import io
from types import SimpleNamespace

import pytest

from agents.notifier import CONSUMED, HandledVersions, Notifier, build_sinks, with_webhook
from agents.sinks import PrintSink, WebhookSink
from agents.slack import SlackSink
from pipeline.actions import Feedback
from pipeline.alerts import InputError
from pipeline.config import Config, NotifyConfig
from pipeline.runbooks import load_catalog
from tests.pages import thirty_alert_storm
from tests.timeline import at
from topics.catalog import APPROVALS, DIAGNOSES, FEEDBACK

STORM = thirty_alert_storm()
CATALOG = load_catalog()


def config(*sinks: str, webhook_url: str = "") -> Config:
    return Config(notify=NotifyConfig(sinks=sinks, webhook_url=webhook_url))


def kinds(sinks) -> list[type]:
    return [type(s) for s in sinks]


@pytest.mark.parametrize("sinks, print_pages, expected", [
    ((), False, [PrintSink]),  # no sink configured: the page is printed
    (("webhook",), False, [WebhookSink]),
    (("webhook",), True, [WebhookSink, PrintSink]),  # --print prints as well
    (("slack", "webhook"), False, [SlackSink, WebhookSink]),
])
def test_the_sinks_are_those_the_configuration_names_and_print_when_none_is(sinks, print_pages, expected):
    built = build_sinks(config(*sinks, webhook_url="http://127.0.0.1:9/hook"), CATALOG, refs=None,
                        env={"SLACK_BOT_TOKEN": "xoxb-test"}, print_pages=print_pages)
    assert kinds(built) == expected


def test_webhook_url_adds_the_webhook_sink_once():
    twice = with_webhook(with_webhook(config("slack"), "http://a/hook"), "http://b/hook")
    assert twice.notify.sinks == ("slack", "webhook") and twice.notify.webhook_url == "http://b/hook"
    assert with_webhook(config("slack"), None) == config("slack")


@pytest.mark.parametrize("sinks, missing", [(("slack",), "SLACK_BOT_TOKEN"), (("pagerduty",), "PAGERDUTY_ROUTING_KEY"),
                                            (("webhook",), "notify.webhook_url")])
def test_a_sink_without_its_secret_or_url_stops_the_notifier_at_start_naming_it(sinks, missing):
    with pytest.raises(InputError) as error:
        build_sinks(config(*sinks), CATALOG, refs=None, env={})
    assert error.value.field == missing


class Recorder:
    """A sink that records what it was handed."""

    def __init__(self, every_version: bool):
        self.every_version = every_version
        self.got: list = []

    async def handle(self, diagnosis) -> None:
        self.got.append(diagnosis.version)

    async def handle_act(self, act) -> None:
        self.got.append(act.verdict)

    async def close(self) -> None:
        return None


class Saved:
    """A producer that keeps what the handled-versions topic would get."""

    def __init__(self):
        self.sent: list = []

    async def send_and_wait(self, topic, value, key):
        self.sent.append((key.decode(), DIAGNOSES_HANDLED.decode(value).version))


DIAGNOSES_HANDLED = HandledVersions("", None).topic


def record(topic, value: bytes, offset: int = 0):
    return SimpleNamespace(topic=topic.name, value=value, partition=0, offset=offset)


def handle(notifier: Notifier, records) -> None:
    asyncio.run(notifier.handle(records))


def test_each_new_version_once_in_order_or_only_the_newest_for_a_living_page_then_the_clicks():
    every, living, producer = Recorder(every_version=True), Recorder(every_version=False), Saved()
    handled = HandledVersions("", producer)
    notifier = Notifier([every, living], handled, CONSUMED)
    verdict = Feedback(incident_id=STORM[0].incident_id, version=2, user_id="U1", at=at(60), request_id="r-1",
                       verdict="confirmed")
    first = [record(DIAGNOSES, DIAGNOSES.encode(d)) for d in STORM[:3]]
    handle(notifier, [first[2], first[0], first[1], first[1], record(FEEDBACK, FEEDBACK.encode(verdict))])
    handle(notifier, [*first, record(DIAGNOSES, DIAGNOSES.encode(STORM[3]))])  # a redelivery, then version 4
    assert every.got == [1, 2, 3, "confirmed", 4]
    assert living.got == [3, "confirmed", 4]
    assert notifier.counts["already_handled"] == 1 + 3  # the repeat in the batch, then the redelivered three
    assert producer.sent == [(STORM[0].incident_id, 3), (STORM[0].incident_id, 4)]


def test_an_unreadable_record_is_counted_by_topic_and_the_rest_goes_on():
    sink = Recorder(every_version=True)
    notifier = Notifier([sink], HandledVersions("", Saved()), CONSUMED)
    handle(notifier, [record(DIAGNOSES, b"{not json"), record(APPROVALS, b'{"kind": "approval"}'),
                      record(DIAGNOSES, DIAGNOSES.encode(STORM[0]))])
    assert sink.got == [1]
    assert (notifier.counts[f"malformed_{DIAGNOSES.name}"], notifier.counts[f"malformed_{APPROVALS.name}"]) == (1, 1)


def test_the_print_sink_prints_the_page_and_who_clicked():
    out = io.StringIO()
    verdict = Feedback(incident_id=STORM[0].incident_id, version=1, user_id="U1", at=at(60), request_id="r-1",
                       verdict="not_actionable")

    async def go():
        sink = PrintSink(CATALOG, out)
        await sink.handle(STORM[0])
        await sink.handle_act(verdict)
    asyncio.run(go())
    text = out.getvalue()
    assert text.startswith(f"PAGE {STORM[0].incident_id} v1 [critical]")
    assert text.rstrip().endswith(f"feedback on {STORM[0].incident_id} (version 1 seen): not actionable by U1")


class Unshowable(Recorder):
    """A sink that cannot show one incident: its page fails its own checks, as a hostile record's would."""

    async def handle(self, diagnosis) -> None:
        if diagnosis.incident_id == "inc-poison":
            from pipeline.slack.page import ButtonValue
            ButtonValue(action="approve", incident_id=diagnosis.incident_id, version=1, runbook="RB-x'; id")
        await super().handle(diagnosis)


def test_a_record_no_sink_can_show_is_logged_and_skipped_and_the_pages_after_it_go_out(caplog):
    sink = Unshowable(every_version=True)
    notifier = Notifier([sink], HandledVersions("", Saved()), CONSUMED)
    poison = STORM[0].model_copy(update={"incident_id": "inc-poison"})
    handle(notifier, [record(DIAGNOSES, DIAGNOSES.encode(poison)), record(DIAGNOSES, DIAGNOSES.encode(STORM[0]))])
    assert sink.got == [1] and notifier.counts["unshowable"] == 1
    assert "cannot show inc-poison v1, skipped" in caplog.text
