"""Episodes of one fingerprint: a newer episode ends the one before it, however Alertmanager tells of it."""

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
