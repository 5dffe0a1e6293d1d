"""How records reach the agents: batches taken straight from faust's queues, with no task per record.

Faust hands each record to its stream in a new task raced against three
others (`Service.wait_first`), and then walks each event one by one through
the stream's iterator and a buffering processor before `take()` gives a
batch. Under a storm that machinery cost the worker more than the agents'
own work. Here the consumer runs each hand-over at once when it can finish
without waiting (it only waits when flow is suspended or a buffer is full:
then faust's own race runs), and an agent takes its events from the
channel's queue in batches: it waits for the first and takes every event
already queued with it, so a batch is as large as the backlog and a record
that comes alone is not kept waiting.

Events are tracked and acknowledged as faust's stream would: the runner
acknowledges each through `stream.ack` once a saved state includes it.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any, AsyncIterator, Coroutine

import faust
from mode.services import WaitResults


def hand_over_at_once(consumer: Any) -> None:
    """Make the consumer run a record's hand-over to its streams inline when it does not need to wait.

    The consumer's fetch loop is faust's only caller of `wait_first`; a
    hand-over that must wait (flow suspended, a full buffer), or a consumer
    stopping, takes faust's race as before.
    """
    race = consumer.wait_first

    async def wait_first(*coros: Any, timeout: float | None = None) -> WaitResults:
        first, *others = coros
        if not asyncio.iscoroutine(first) or _busy(consumer):
            return await race(*coros, timeout=timeout)
        try:
            waiting_on = first.send(None)
        except BaseException as ended:  # finished, or failed: the others are not needed
            for other in others:
                if asyncio.iscoroutine(other):
                    other.close()
            if isinstance(ended, StopIteration):
                return WaitResults([first], [ended.value], False)
            raise
        return await race(_carry_on(first, waiting_on), *others, timeout=timeout)

    consumer.wait_first = wait_first


def _busy(consumer: Any) -> bool:
    return consumer.suspend_flow.is_set() or consumer._stopped.is_set() or consumer._crashed.is_set()


async def _carry_on(coro: Coroutine, waiting_on: Any) -> Any:
    """Carry on, in a task, a coroutine that was started by hand and is waiting on `waiting_on`."""
    return await _resume(coro, waiting_on)


@types.coroutine
def _resume(coro: Coroutine, waiting_on: Any):
    while True:
        try:
            sent = yield waiting_on
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - thrown in by the task (a cancel): pass it on
            try:
                waiting_on = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting_on = coro.send(sent)
            except StopIteration as done:
                return done.value


async def batches(stream: faust.StreamT, most: int, within: float = 0.0) -> AsyncIterator[list[faust.EventT]]:
    """The stream's events, a batch at a time: the first to come and what is queued behind it, `most` at most.

    With `within` above 0 a batch also waits up to that long after its first
    event for more. Events that faust would skip (fetched while flow was
    suspended for a rebalance) are left out unacknowledged, to be read again.
    """
    await stream.maybe_start()
    channel = aiter(stream.channel)  # subscribes the stream's topics, as iterating the stream does
    app = stream.app
    track = _Tracker(app)
    loop = asyncio.get_running_loop()
    try:
        while not stream.should_stop:
            try:
                events = await _batch(channel, most, loop.time() + within)
            except StopAsyncIteration:  # the channel is closing: the worker stops
                return
            if not app.flow_control.is_active():  # the batch was fetched while flow was suspended
                continue
            taken = [e for e in events if isinstance(e, faust.EventT)]
            track(taken)
            if taken:
                yield taken
    finally:
        stream._channel_stop_iteration(channel)


async def _batch(channel: faust.ChannelT, most: int, deadline: float) -> list:
    events = [await channel.__anext__()]
    queue, loop = channel.queue, asyncio.get_running_loop()
    while len(events) < most:
        if not queue.empty():
            events.append(queue.get_nowait())
        elif loop.time() < deadline:
            try:
                events.append(await asyncio.wait_for(channel.__anext__(), deadline - loop.time()))
            except asyncio.TimeoutError:
                break
        else:
            break
    return events


class _Tracker:
    """Registers taken events with the consumer as unacknowledged, as faust's stream iterator does."""

    def __init__(self, app: faust.App):
        self.acking = app.topics.acking_topics
        self.unacked = app.consumer.unacked
        self.on_message_in = app.sensors.on_message_in

    def __call__(self, events: list[faust.EventT]) -> None:
        for event in events:
            message = event.message
            if message.topic in self.acking and not message.tracked:
                message.tracked = True
                self.unacked.add(message)
                self.on_message_in(message.tp, message.offset, message)
