"""Service graphs load from the contract's JSON or YAML and from edge CSVs; bad ones say where."""

import json

import pytest

from pipeline.alerts import InputError
from pipeline.graph import load_graph
from tests.timeline import SHARED, graph_of


def test_reach_follows_call_edges_to_the_link_depth():
    graph = graph_of("a>b", "b>c", "c>d", depth=2)
    assert graph.reach["a"] == {"a": 0, "b": 1, "c": 2}
    assert graph.reach["d"] == {"d": 0}


def test_json_and_yaml_files_load(tmp_path):
    data = {"nodes": ["web", "db"], "edges": [{"from": "web", "to": "db"}], "kinds": {"db": "datastore"}}
    (tmp_path / "g.json").write_text(json.dumps(data))
    (tmp_path / "g.yaml").write_text("nodes: [web, db]\nedges:\n  - {from: web, to: db}\nkinds: {db: datastore}\n")
    for name in ("g.json", "g.yaml"):
        graph = load_graph(tmp_path / name)
        assert graph.edges == [("web", "db")]
        assert graph.kind("db") == "datastore"


@pytest.mark.parametrize("name", ["online_boutique.csv", "train_ticket.csv", "sock_shop.csv",
                                  "hotel_reservation.csv", "social_network.csv"])
def test_the_shared_service_graphs_load(name):
    graph = load_graph(SHARED / "data/service-graphs" / name)
    assert len(graph) >= 8


def test_names_match_ignoring_case():
    graph = graph_of("Web>DB")
    assert graph.node_for("web") == "Web"
    assert graph.node_for("unknown") is None


@pytest.mark.parametrize(
    "content, suffix, field",
    [
        ('{"nodes": "web"}', ".json", "nodes"),
        ('{"edges": [{"from": "a"}]}', ".json", "edges.0.to"),
        ('{"edges": [], "kinds": {"a": "mainframe"}}', ".json", "kinds.a"),
        ('{"edges": [], "colour": "red"}', ".json", "colour"),
        ("[1, 2]", ".json", ""),
        ("{not json", ".json", ""),
        ("a: &x [1]\nb: *x\n", ".yaml", ""),  # aliases are refused: no billion laughs
        ('{"nodes": ' + "[" * 100_000 + "]" * 100_000 + "}", ".json", ""),  # nested past the parser's depth
        ("source,target\na,\"" + "b" * 200_000 + "\"\n", ".csv", ""),  # a field over the CSV reader's limit
    ],
)
def test_a_bad_graph_file_names_file_and_field(tmp_path, content, suffix, field):
    path = tmp_path / f"graph{suffix}"
    path.write_text(content)
    with pytest.raises(InputError) as caught:
        load_graph(path)
    assert str(path) in caught.value.field
    assert caught.value.field.endswith(field)


def test_a_bad_csv_row_is_named_by_its_line_and_column(tmp_path):
    path = tmp_path / "graph.csv"
    path.write_text("source,target\nweb,orders\nweb,\n")
    with pytest.raises(InputError) as caught:
        load_graph(path)
    assert caught.value.field == f"{path}: line 3, column target"


def test_an_oversized_graph_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.json"
    with path.open("w") as f:
        f.truncate(17 << 20)
    with pytest.raises(InputError, match="limit"):
        load_graph(path)


def test_a_csv_without_edge_columns_is_refused(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="source,target"):
        load_graph(path)
