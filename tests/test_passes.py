"""The simplify pass: constant folding, identities, CSE and DCE."""

from __future__ import annotations

import numpy as np

import lightnet_graph as lg
from lightnet_graph.graph import CONSTANT, OP


def _op_names(program: lg.Executable, stage: str = "optimized") -> list[str]:
    graph = program.stages[stage]
    return [data["op"].name for _, data in graph.nx.nodes(data=True) if data["kind"] == OP]


def test_cse_merges_repeated_subexpressions() -> None:
    g = lg.Graph("cse", dtype="float64")
    x = g.input("x", (3,))
    y = lg.tanh(x) + lg.tanh(x)
    program = lg.compile(y)
    assert _op_names(program).count("tanh") == 1
    values = np.array([0.1, -0.2, 0.3])
    assert np.allclose(program.run(x=values)["add"], 2 * np.tanh(values))


def test_constant_subgraphs_fold() -> None:
    g = lg.Graph("fold", dtype="float64")
    x = g.input("x", (2,))
    scale = lg.exp(g.constant(np.array([0.0, 1.0])))
    program = lg.compile(x * scale)
    assert _op_names(program) == ["mul"]
    assert np.allclose(program.run(x=np.ones(2))["mul"], [1.0, np.e])


def test_identities_remove_neutral_ops() -> None:
    g = lg.Graph("identity", dtype="float64")
    x = g.input("x", (2, 2))
    y = -(-((x * 1.0 + 0.0) / 1.0))
    program = lg.compile({"y": lg.tanh(y)})
    assert _op_names(program) == ["tanh"]


def test_dead_code_is_removed() -> None:
    g = lg.Graph("dce", dtype="float64")
    x = g.input("x", (2,))
    unused = lg.exp(x) * 3.0
    program = lg.compile({"y": lg.tanh(x)})
    graph = program.stages["optimized"]
    assert unused.node not in graph.nx
    assert _op_names(program) == ["tanh"]
    assert all(kind != CONSTANT for _, kind in graph.nx.nodes(data="kind"))


def test_compile_leaves_declared_graph_unchanged() -> None:
    g = lg.Graph("pure", dtype="float64")
    x = g.input("x", (2,))
    w = g.parameter("w", (2,), init=0.5)
    loss = lg.sum(lg.tanh(x * w))
    nodes_before = set(g.nx.nodes)
    lg.compile(loss=loss)
    assert set(g.nx.nodes) == nodes_before


def test_generated_source_names_buffers_after_values() -> None:
    g = lg.Graph("names", dtype="float64")
    x = g.input("x-in put", (2,))
    hidden = g.parameter("class", (2,))
    program = lg.compile({"out": lg.tanh(x * hidden)})
    source = program.source
    assert "x_in_put = inputs['x-in put']" in source
    assert "class_ = parameters['class']" in source
    assert "np.tanh(" in source
    compile(source, "<generated>", "exec")


def test_hostile_names_cannot_inject_code() -> None:
    name = 'x"""\nraise SystemExit  # '
    g = lg.Graph('g"""\nimport os', dtype="float64")
    x = g.input(name, (2,))
    program = lg.compile({'out"""\n': lg.tanh(x)})
    values = program.run({name: np.array([0.5, -0.5])})
    assert np.allclose(values['out"""\n'], np.tanh([0.5, -0.5]))
