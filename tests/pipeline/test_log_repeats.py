"""The command line's log says a repeated message once in a while, with how often it was said meanwhile."""

from __future__ import annotations

import logging

from pipeline.cli import Repeats


def record(text: str, at: float) -> logging.LogRecord:
    made = logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, text, (), None)
    made.created = at
    return made


def test_a_message_said_again_within_the_time_is_dropped_and_counted_in_the_next_one_let_through():
    repeats = Repeats(30)
    down = "Unable connect to node with id 1: [Errno 111] Connect call failed"
    let_through = [r.getMessage() for r in (record(down, t) for t in (0, 0.03, 0.06, 10, 31, 32, 70))
                   if repeats.filter(r)]
    assert let_through == [down, f"{down} (repeated 3 times since it was last logged)",
                           f"{down} (repeated 1 times since it was last logged)"]


def test_different_messages_are_each_let_through():
    repeats = Repeats(30)
    assert all(repeats.filter(record(f"refused a Slack action from U{i}", 0)) for i in range(5))
