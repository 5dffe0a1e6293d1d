"""The worker: one faust app running the correlate and diagnose agents and the ticker."""

from __future__ import annotations

from datetime import datetime, timezone

import faust

from agents.app import WorkerSettings, global_table, make_app, raw_topic, seek_uncommitted_to_start, table
from agents.correlate import Correlate, decode_scope, encode_scope
from agents.delivery import hand_over_at_once
from agents.diagnose import Diagnose, decode_diagnosis, encode_diagnosis
from agents.evidence import EvidenceAsker
from agents.history import HistoryTable
from agents.keeper import InOrder, Keeper
from agents.options import Kafka
from agents.runner import Runner
from agents.ticker import TICK_KEY, tick_value
from pipeline.config import Config
from pipeline.correlate import Correlator
from pipeline.diagnose import Diagnoser
from pipeline.evidence import EvidenceProvider
from pipeline.graph import ServiceGraph
from pipeline.runbooks import Catalog
from topics.catalog import (ALERTS_RAW, DEAD_LETTERS, DIAGNOSES, DIAGNOSIS_TABLE, EVIDENCE, FEEDBACK, HISTORY_TABLE,
                            INCIDENTS, REMEDIATIONS, SCOPE_INDEX, SCOPE_TABLE, ScopeIndex)

DIAGNOSE_SOURCES = (INCIDENTS, REMEDIATIONS, FEEDBACK, EVIDENCE)  # co-partitioned, keyed by incident id


def build_worker(kafka: Kafka, settings: WorkerSettings, config: Config, graph: ServiceGraph,
                 catalog: Catalog, evidence: EvidenceProvider | None = None) -> faust.App:
    """The faust app with both agents, their tables and the ticker wired to the namespace's topics."""
    app = make_app(kafka, settings)
    raw = kafka.topic(ALERTS_RAW)
    sources = [kafka.topic(t) for t in DIAGNOSE_SOURCES]
    outputs = {"incidents": sources[0], "diagnoses": kafka.topic(DIAGNOSES), "dead_letters": kafka.topic(DEAD_LETTERS)}
    sinks = {role: (topic, raw_topic(app, topic)) for role, topic in outputs.items()}
    in_order = InOrder(app)
    seek_uncommitted_to_start(app, {raw.name, *(t.name for t in sources)})
    hand_over_at_once(app.consumer)
    correlate = _correlate(app, kafka, config, graph, sinks, in_order)
    diagnose = _diagnose(app, kafka, config, graph, catalog, sinks, in_order, evidence)
    raw_channel = raw_topic(app, raw)

    @app.agent(raw_channel, name="correlate")
    async def correlate_agent(stream):
        await correlate.run(stream, settings.batch, settings.batch_within, settings.save_every)

    @app.agent(raw_topic(app, *sources), name="diagnose")
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
        diagnose.forget({tp.partition for tp in revoked if tp.topic in {t.name for t in sources}})

    return app


def _correlate(app: faust.App, kafka: Kafka, config: Config, graph: ServiceGraph, sinks: dict,
               in_order: InOrder) -> Runner:
    scopes = Keeper(table(app, kafka.topic(SCOPE_TABLE)), decode_scope, encode_scope)
    index = Keeper(table(app, kafka.topic(SCOPE_INDEX)), ScopeIndex.model_validate_json,
                   lambda entry: entry.value.model_dump_json().encode())
    agent = Correlate(Correlator(config, graph), scopes, index)
    return Runner(app, agent, [scopes, index], sinks, in_order, still_needed=agent.pending)


def _diagnose(app: faust.App, kafka: Kafka, config: Config, graph: ServiceGraph, catalog: Catalog, sinks: dict,
              in_order: InOrder, evidence: EvidenceProvider | None) -> Runner:
    states = Keeper(table(app, kafka.topic(DIAGNOSIS_TABLE)), decode_diagnosis, encode_diagnosis)
    history = HistoryTable(global_table(app, kafka.topic(HISTORY_TABLE)))
    sources = {t.name: t for t in (kafka.topic(s) for s in DIAGNOSE_SOURCES)}
    asker = _evidence_asker(app, kafka, config, evidence) if evidence is not None else None
    agent = Diagnose(Diagnoser(config, graph, catalog, history), states, sources, history,
                     asker.after_version if asker else None)

    def drop_closed() -> None:  # a closed incident's entry is saved; it need not stay in memory
        states.forget(range(kafka.topic(INCIDENTS).partitions), keep=lambda e: not e.value.closed or e.dirty)

    return Runner(app, agent, [states], sinks, in_order, after_save=drop_closed)


def _evidence_asker(app: faust.App, kafka: Kafka, config: Config, provider: EvidenceProvider) -> EvidenceAsker:
    """Answers go to the evidence topic, keyed like the incident, so they reach the partition that asked."""
    topic = kafka.topic(EVIDENCE)
    channel = raw_topic(app, topic)

    async def publish(incident_id: str, answer) -> None:
        await channel.send(key=incident_id.encode(), value=topic.encode(answer))

    asker = EvidenceAsker(provider, publish, config.evidence.refresh)

    @app.on_before_shutdown.connect
    async def stop_asking(sender, **_) -> None:
        asker.close()

    return asker
