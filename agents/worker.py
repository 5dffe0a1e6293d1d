"""The worker: one faust app running the correlate and diagnose agents and the ticker."""

from __future__ import annotations

from datetime import datetime, timezone

import faust

from agents.app import WorkerSettings, make_app, raw_topic, seek_uncommitted_to_start, table
from agents.correlate import Correlate, decode_scope, encode_scope
from agents.diagnose import Diagnose, decode_diagnosis, encode_diagnosis
from agents.keeper import InOrder, Keeper
from agents.options import Kafka
from agents.runner import Runner
from agents.ticker import TICK_KEY, tick_value
from pipeline.config import Config
from pipeline.correlate import Correlator
from pipeline.diagnose import Diagnoser
from pipeline.graph import ServiceGraph
from pipeline.runbooks import Catalog
from topics.catalog import (ALERTS_RAW, DEAD_LETTERS, DIAGNOSES, DIAGNOSIS_TABLE, INCIDENTS, REMEDIATIONS,
                            SCOPE_INDEX, SCOPE_TABLE, ScopeIndex)


def build_worker(kafka: Kafka, settings: WorkerSettings, config: Config, graph: ServiceGraph,
                 catalog: Catalog) -> faust.App:
    """The faust app with both agents, their tables and the ticker wired to the namespace's topics."""
    app = make_app(kafka, settings)
    raw, incidents, remediations = (kafka.topic(t) for t in (ALERTS_RAW, INCIDENTS, REMEDIATIONS))
    outputs = {"incidents": incidents, "diagnoses": kafka.topic(DIAGNOSES), "dead_letters": kafka.topic(DEAD_LETTERS)}
    sinks = {role: (topic, raw_topic(app, topic)) for role, topic in outputs.items()}
    in_order = InOrder(app)
    seek_uncommitted_to_start(app, {raw.name, incidents.name, remediations.name})
    correlate = _correlate(app, kafka, config, graph, sinks, in_order)
    diagnose = _diagnose(app, kafka, config, graph, catalog, sinks, in_order)
    raw_channel = raw_topic(app, raw)

    @app.agent(raw_channel, name="correlate")
    async def correlate_agent(stream):
        await correlate.run(stream, settings.batch, settings.batch_within, settings.save_every)

    @app.agent(raw_topic(app, incidents, remediations), name="diagnose")
    async def diagnose_agent(stream):
        await diagnose.run(stream, settings.batch, settings.batch_within, settings.save_every)

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
        correlate.forget({tp.partition for tp in revoked if tp.topic == raw.name})
        diagnose.forget({tp.partition for tp in revoked if tp.topic in (incidents.name, remediations.name)})

    return app


def _correlate(app: faust.App, kafka: Kafka, config: Config, graph: ServiceGraph, sinks: dict,
               in_order: InOrder) -> Runner:
    scopes = Keeper(table(app, kafka.topic(SCOPE_TABLE)), decode_scope, encode_scope)
    index = Keeper(table(app, kafka.topic(SCOPE_INDEX)), ScopeIndex.model_validate_json,
                   lambda entry: entry.value.model_dump_json().encode())
    agent = Correlate(Correlator(config, graph), scopes, index)
    return Runner(app, agent, [scopes, index], sinks, in_order, still_needed=agent.pending)


def _diagnose(app: faust.App, kafka: Kafka, config: Config, graph: ServiceGraph, catalog: Catalog, sinks: dict,
              in_order: InOrder) -> Runner:
    states = Keeper(table(app, kafka.topic(DIAGNOSIS_TABLE)), decode_diagnosis, encode_diagnosis)
    sources = [kafka.topic(t) for t in (INCIDENTS, REMEDIATIONS)]
    agent = Diagnose(Diagnoser(config, graph, catalog), states, {t.name: t for t in sources})

    def drop_closed() -> None:  # a closed incident's entry is saved; it need not stay in memory
        states.forget(range(sources[0].partitions), keep=lambda e: not e.value.closed or e.dirty)

    return Runner(app, agent, [states], sinks, in_order, after_save=drop_closed)
