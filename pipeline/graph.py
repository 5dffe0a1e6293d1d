"""The service graph: who calls whom, and which failures explain which symptoms.

An edge A -> B means A calls B: when B fails, A suffers. So a candidate root
explains an alerting service when the root is reachable from it along call
edges (or is the service itself).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any, Literal

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.alerts import InputError, validation_error
from pipeline.config import read_structured

MAX_GRAPH_BYTES = 16 << 20
MAX_NODES = 100_000
Kind = Literal["service", "datastore", "queue"]


class Edge(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    caller: str = Field(alias="from", min_length=1, max_length=253)
    callee: str = Field(alias="to", min_length=1, max_length=253)


class GraphFile(BaseModel):
    """The graph file format: nodes, edges from caller to callee, optional kinds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nodes: list[str] = Field(default_factory=list, max_length=MAX_NODES)
    edges: list[Edge] = Field(default_factory=list, max_length=MAX_NODES * 10)
    kinds: dict[str, Kind] = Field(default_factory=dict)

    @field_validator("nodes")
    @classmethod
    def _names(cls, nodes: list[str]) -> list[str]:
        for node in nodes:
            if not node or len(node) > 253:
                raise ValueError(f"node names must have 1 to 253 characters, got {node[:40]!r}")
        return nodes


class ServiceGraph:
    """Call edges with reach sets precomputed to a link depth, for O(1) lookups per alert."""

    def __init__(self, graph: GraphFile | None = None, depth: int = 4):
        graph = graph or GraphFile()
        self.kinds: dict[str, str] = dict(graph.kinds)
        self._calls = nx.DiGraph()
        self._calls.add_nodes_from(graph.nodes)
        self._calls.add_edges_from((e.caller, e.callee) for e in graph.edges if e.caller != e.callee)
        self._folded = {node.lower(): node for node in self._calls.nodes}
        self.depth = depth
        # reach[s][c] = call hops from s down to c: s suffers when c fails.
        self._callers = {node: sorted(self._calls.predecessors(node)) for node in self._calls.nodes}
        self.reach: dict[str, dict[str, int]] = {
            node: nx.single_source_shortest_path_length(self._calls, node, cutoff=depth)
            for node in self._calls.nodes
        }
        self._upstream: dict[str, dict[str, int]] = {node: {} for node in self._calls.nodes}
        for caller, down in self.reach.items():
            for node, hops in down.items():
                if hops:
                    self._upstream[node][caller] = hops

    def __contains__(self, service: str | None) -> bool:
        return service is not None and service in self.reach

    def __len__(self) -> int:
        return len(self.reach)

    @property
    def nodes(self) -> list[str]:
        return sorted(self.reach)

    @property
    def edges(self) -> list[tuple[str, str]]:
        return sorted(self._calls.edges)

    def node_for(self, service: str | None) -> str | None:
        """The graph node of a service name, matched exactly or ignoring case."""
        if service is None:
            return None
        if service in self.reach:
            return service
        return self._folded.get(service.lower())

    def kind(self, node: str) -> str:
        return self.kinds.get(node, "service")

    def callers(self, node: str) -> list[str]:
        return self._callers.get(node, [])

    def upstream(self, node: str) -> dict[str, int]:
        """Every service that reaches this one within the link depth, with its hop count."""
        return self._upstream.get(node, {})

    def callees(self, node: str) -> list[str]:
        return sorted(self._calls.successors(node)) if node in self._calls else []

    def shared_callee(self, a: str, b: str) -> str | None:
        """A service both call directly, if any: the first in name order."""
        both = set(self._calls.successors(a)) & set(self._calls.successors(b))
        return min(both) if both else None

    def with_depth(self, depth: int) -> "ServiceGraph":
        """The same graph with reach sets cut at another link depth."""
        if depth == self.depth:
            return self
        return ServiceGraph(self.to_file(), depth)

    def to_file(self) -> GraphFile:
        return GraphFile(
            nodes=self.nodes,
            edges=[Edge(**{"from": a, "to": b}) for a, b in self.edges],
            kinds=self.kinds,
        )


def load_graph(path: str | Path | None, depth: int = 4) -> ServiceGraph:
    """Read a graph file (JSON, YAML, or a source,target CSV); errors name file and field."""
    if path is None:
        return ServiceGraph(depth=depth)
    path = Path(path)
    if path.suffix == ".csv":
        return ServiceGraph(_graph_from_csv(path), depth)
    data = read_structured(path, "graph", MAX_GRAPH_BYTES)
    return ServiceGraph(parse_graph(data, str(path)), depth)


def parse_graph(data: Any, where: str = "graph") -> GraphFile:
    """Validate decoded graph data against the graph file format."""
    if not isinstance(data, dict):
        raise InputError(where, 'graph must be an object with "nodes" and "edges"')
    try:
        return GraphFile.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, prefix=where) from None


def _graph_from_csv(path: Path) -> GraphFile:
    try:
        if path.stat().st_size > MAX_GRAPH_BYTES:
            raise InputError(str(path), f"graph file is over the {MAX_GRAPH_BYTES} byte limit")
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(str(path), f"cannot read graph file: {exc}") from None
    columns = (("source", "target"), ("from", "to"), ("Source", "Target"))
    names = next((pair for pair in columns if rows and set(pair) <= set(rows[0])), None)
    if names is None:
        raise InputError(str(path), "a CSV graph needs source,target (or from,to) columns")
    edges = [{"from": row[names[0]], "to": row[names[1]]} for row in rows]
    # A `kind` column marks edges into backing stores ("datastore", "queue").
    # Other values there (grpc, thrift) name the protocol, not the callee.
    kinds = {row[names[1]]: row["kind"] for row in rows if row.get("kind") in ("datastore", "queue")}
    try:
        return parse_graph({"edges": edges, "kinds": kinds}, str(path))
    except InputError as exc:
        # An edge's index is a CSV line: the header is line 1.
        bad = re.fullmatch(r"(.*)\.edges\.(\d+)\.(from|to)", exc.field)
        if bad is None:
            raise
        column = names[0] if bad[3] == "from" else names[1]
        raise InputError(f"{bad[1]}: line {int(bad[2]) + 2}, column {column}", exc.reason) from None
