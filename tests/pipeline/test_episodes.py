"""Episodes of one fingerprint: a newer episode ends the one before it, however Alertmanager tells of it."""

from pipeline.alerts import fingerprint
from tests.timeline import alert, at, driver, graph_of, webhook


def test_a_newer_episode_that_arrives_already_resolved_ends_the_firing_one():
    # Alertmanager keeps one alert per fingerprint: an episode that began and ended between two
    # group_interval ticks replaces the firing one, whose own resolve is then never sent.
    run = driver(graph_of("web>api"))
    run.pipe_webhook(webhook(alert("Slow", "api", starts=0)), at(30))
    run.pipe_webhook(webhook(alert("Slow", "api", status="resolved", starts=200, ends=260)), at(330))
    run.advance(600)
    last = run.read("diagnoses")[-1]
    assert last.status == "resolved"
    assert run.counts()["incidents_closed"] == 1


def test_an_alert_that_fires_as_the_last_one_resolves_does_not_find_it_still_firing():
    # Both arrive at one event time (Alertmanager sends a resolve on its group_interval tick);
    # what ended goes first, so the quiet incident is past its gap and the new alert opens its own.
    old = alert("Slow", "api", starts=0)
    ended = alert("Slow", "api", status="resolved", starts=0, ends=360)
    names = ("HighCpu", "CpuHigh", "Cpu", "HotCpu", "CpuSaturated")
    sides = {fingerprint(alert(n, "api")["labels"]) < fingerprint(old["labels"]) for n in names}
    assert sides == {True, False}  # the new alert sorts before the old one's fingerprint, and after it
    for name in names:
        run = driver(graph_of("web>api"))
        run.pipe_webhook(webhook(old), at(30))
        run.pipe_webhook(webhook(ended, alert(name, "api", starts=400)), at(400))
        run.advance(60)
        assert len({d.incident_id for d in run.read("diagnoses")}) == 2, name
