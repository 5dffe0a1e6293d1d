"""The worker: one faust app running the correlate and diagnose agents and the ticker."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import faust

from agents.app import WorkerSettings, make_app, raw_topic, table
from agents.correlate import Correlate, decode_scope, encode_scope
from agents.diagnose import Diagnose, decode_diagnosis, encode_diagnosis
from agents.keeper import Held, Keeper
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
    held_raw, held_incidents = Held(), Held()
    raw_channel = raw_topic(app, raw)

    async def run(stream, held: Held, agent, keepers: list[Keeper], still_needed) -> None:
        async for events in stream.take_events(settings.batch, settings.batch_within):
            for event in events:
                held.hold(event)
            await _send(sinks, agent.take(events))
            if held.due(settings.save_every, MAX_HELD):
                await app.producer.flush()  # outputs reach the broker before the states that made them
                for keeper in keepers:
                    keeper.save(held.anchors())
                await held.release(stream, still_needed)
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
        gone = {tp.partition for tp in revoked if tp.topic == raw.name}
        scopes.forget(gone), index.forget(gone), held_raw.forget(gone)
        gone = {tp.partition for tp in revoked if tp.topic in (incidents.name, remediations.name)}
        states.forget(gone), held_incidents.forget(gone)

    return app


async def _send(sinks: dict[str, tuple[Topic, Any]], outputs: list) -> None:
    for role, key, value in outputs:
        topic, channel = sinks[role]
        await channel.send(key=key, value=topic.encode(value))
