"""The worker: one faust app running the correlate and diagnose agents and the ticker."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import faust

from agents.app import WorkerSettings, make_app, raw_topic, seek_uncommitted_to_start, table
from agents.correlate import Correlate, decode_scope, encode_scope
from agents.diagnose import Diagnose, decode_diagnosis, encode_diagnosis
from agents.keeper import Held, InOrder, Keeper
from agents.options import Kafka
from agents.ticker import TICK_KEY, tick_value
from pipeline.config import Config
from pipeline.correlate import Correlator
from pipeline.diagnose import Diagnoser
from pipeline.graph import ServiceGraph
from pipeline.runbooks import Catalog
from topics.catalog import (ALERTS_RAW, DEAD_LETTERS, DIAGNOSES, DIAGNOSIS_TABLE, INCIDENTS, REMEDIATIONS,
                            SCOPE_INDEX, SCOPE_TABLE, ScopeIndex, Topic)

MAX_HELD = 50_000
log = logging.getLogger("stormdrain.worker")


def build_worker(kafka: Kafka, settings: WorkerSettings, config: Config, graph: ServiceGraph,
                 catalog: Catalog) -> faust.App:
    """The faust app with both agents, their tables and the ticker wired to the namespace's topics."""
    app = make_app(kafka, settings)
    raw, incidents, remediations = (kafka.topic(t) for t in (ALERTS_RAW, INCIDENTS, REMEDIATIONS))
    outputs = {"incidents": incidents, "diagnoses": kafka.topic(DIAGNOSES), "dead_letters": kafka.topic(DEAD_LETTERS)}
    sinks = {role: (topic, raw_topic(app, topic)) for role, topic in outputs.items()}
    scopes = Keeper(table(app, kafka.topic(SCOPE_TABLE)), decode_scope, encode_scope)
    index = Keeper(table(app, kafka.topic(SCOPE_INDEX)), ScopeIndex.model_validate_json,
                   lambda entry: entry.value.model_dump_json().encode())
    states = Keeper(table(app, kafka.topic(DIAGNOSIS_TABLE)), decode_diagnosis, encode_diagnosis)
    correlate = Correlate(Correlator(config, graph), scopes, index)
    diagnose = Diagnose(Diagnoser(config, graph, catalog), states, {t.name: t for t in (incidents, remediations)})
    held_raw, held_incidents, in_order = Held(), Held(), InOrder(app)
    seek_uncommitted_to_start(app, {raw.name, incidents.name, remediations.name})
    raw_channel = raw_topic(app, raw)

    async def run(stream, held: Held, agent, keepers: list[Keeper], still_needed) -> None:
        async for events in stream.take_events(settings.batch, settings.batch_within):
            Held.keep(events)
            generation = app.consumer_generation_id
            fresh = await in_order.admit([e for e in events if e.message.generation_id == generation])
            if len(fresh) < len(events):
                log.info("%d event(s) out of order or fetched before a rebalance are left to be read again",
                         len(events) - len(fresh))
            if not fresh:
                continue  # never acknowledged, so read again from the committed offset
            for event in fresh:
                held.hold(event)
            if not await _send(app, generation, sinks, agent.take(fresh)):
                continue
            if held.due(settings.save_every, MAX_HELD):
                await _save(app, generation, held, stream, keepers, still_needed)
                states.forget(range(raw.partitions), keep=lambda e: not e.value.closed or e.dirty)

    @app.agent(raw_channel, name="correlate")
    async def correlate_agent(stream):
        await run(stream, held_raw, correlate, [scopes, index], correlate.pending)

    @app.agent(raw_topic(app, incidents, remediations), name="diagnose")
    async def diagnose_agent(stream):
        await run(stream, held_incidents, diagnose, [states], lambda _: set())

    if settings.tick_every > 0:
        @app.timer(settings.tick_every, on_leader=True, name="ticker")
        async def ticker():
            at = datetime.now(timezone.utc)
            for partition in range(raw.partitions):
                await raw_channel.send(key=TICK_KEY, value=tick_value(at), partition=partition,
                                       timestamp=at.timestamp())

    @app.on_partitions_revoked.connect
    async def on_revoked(sender, revoked, **_):
        in_order.forget(revoked)
        gone = {tp.partition for tp in revoked if tp.topic == raw.name}
        scopes.forget(gone), index.forget(gone), held_raw.forget(gone)
        gone = {tp.partition for tp in revoked if tp.topic in (incidents.name, remediations.name)}
        states.forget(gone), held_incidents.forget(gone)

    return app


async def _send(app: faust.App, generation: int, sinks: dict[str, tuple[Topic, Any]], outputs: list) -> bool:
    """Send the outputs in order; False if a rebalance began meanwhile (the batch is then read again)."""
    for role, key, value, headers in outputs:
        if app.consumer_generation_id != generation:
            return False
        topic, channel = sinks[role]
        await channel.send(key=key, value=topic.encode(value), headers=headers or None)
    return app.consumer_generation_id == generation


async def _save(app: faust.App, generation: int, held: Held, stream, keepers: list[Keeper], still_needed) -> None:
    """Outputs delivered, then states written and delivered, then the events they include acknowledged."""
    await _deliver(app)
    if app.consumer_generation_id != generation:
        return
    anchors = held.anchors()
    for keeper in keepers:
        keeper.save(anchors)
    await _deliver(app)
    if app.consumer_generation_id == generation:
        await held.release(stream, still_needed)


async def _deliver(app: faust.App) -> None:
    """Wait until everything sent so far, table changelogs included, is acknowledged by the broker."""
    producer = app.producer
    while producer.buffer.size:  # changelog records wait in faust's buffer first
        await producer.buffer.flush()
    await producer.flush()
