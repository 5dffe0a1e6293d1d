"""The loop every agent runs: take a batch, send what the operator makes of it, save now and then.

The agent itself (`Correlate`, `Diagnose`) only decodes and calls its operator;
this loop owns the Kafka side: which events are taken (whole partitions, in
order, of the current rebalance generation), sending the outputs, saving the
states and acknowledging what the saved states include.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import faust

from agents.delivery import batches
from agents.keeper import Held, InOrder, Keeper
from topics.catalog import Topic

log = logging.getLogger("stormdrain.worker")
MAX_HELD = 50_000


@dataclass
class Runner:
    """Runs one agent over its stream: `agent.take(events)` returns (role, key, value, headers) outputs."""

    app: faust.App
    agent: Any
    keepers: list[Keeper]
    sinks: dict[str, tuple[Topic, Any]]  # role -> (catalog topic, faust channel)
    in_order: InOrder
    still_needed: Callable[[int], set[int]] = lambda _: set()
    after_save: Callable[[], None] = lambda: None
    held: Held = field(default_factory=Held)

    async def run(self, stream: faust.StreamT, batch: int, within: float, save_every: float) -> None:
        async for events in batches(stream, batch, within):
            generation = self.app.consumer_generation_id
            fresh = await self.in_order.admit([e for e in events if e.message.generation_id == generation])
            if len(fresh) < len(events):
                log.info("%d event(s) out of order or fetched before a rebalance are left to be read again",
                         len(events) - len(fresh))
            if not fresh:
                continue  # never acknowledged, so read again from the committed offset
            for event in fresh:
                self.held.hold(event)
            if await self._send(generation, self.agent.take(fresh)) and self.held.due(save_every, MAX_HELD):
                await self._save(generation, stream)

    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked: their live states and held events are another worker's now."""
        for keeper in self.keepers:
            keeper.forget(partitions)
        self.held.forget(partitions)

    async def _send(self, generation: int, outputs: list) -> bool:
        """Send the outputs in order; False if a rebalance began meanwhile (the batch is then read again)."""
        for role, key, value, headers in outputs:
            if self.app.consumer_generation_id != generation:
                return False
            topic, channel = self.sinks[role]
            await channel.send(key=key, value=topic.encode(value), headers=headers or None)
        return self.app.consumer_generation_id == generation

    async def _save(self, generation: int, stream: faust.StreamT) -> None:
        """Outputs delivered, then states written and delivered, then the events they include acknowledged."""
        await _deliver(self.app)
        if self.app.consumer_generation_id != generation:
            return
        anchors = self.held.anchors()
        for keeper in self.keepers:
            keeper.save(anchors)
        await _deliver(self.app)
        if self.app.consumer_generation_id == generation:
            await self.held.release(stream, self.still_needed)
            self.after_save()


async def _deliver(app: faust.App) -> None:
    """Wait until everything sent so far, table changelogs included, is acknowledged by the broker."""
    producer = app.producer
    while producer.buffer.size:  # changelog records wait in faust's buffer first
        await producer.buffer.flush()
    await producer.flush()
