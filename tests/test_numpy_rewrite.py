"""The NumPy backend's rewrites of unslice sums and of sums of products."""

from __future__ import annotations

import numpy as np
import pytest
from lightnet_graph.backends.numpy.rewrite import _exact_cover

import lightnet_graph as lg
from lightnet_graph.ops import kernels

ROWS, COLUMNS = 4, 6


def _calls(program: lg.Executable, function: str) -> int:
    return program.source.count(function + "(")


def _compare(loss: lg.Tensor, feeds: dict) -> lg.Executable:
    program = lg.compile(loss=loss)
    reference = lg.compile(loss=loss, optimize=False)
    expected = reference.run(feeds)
    values = program.run(feeds)
    for name, value in expected.items():
        np.testing.assert_allclose(values[name], value, rtol=1e-12, atol=1e-12)
    return program


def test_gate_gradients_are_assembled():
    g = lg.Graph("gates", dtype="float64", seed=1)
    x = g.input("x", (ROWS, 3 * COLUMNS))
    w = g.parameter("w", (3 * COLUMNS, 3 * COLUMNS), init=lg.init.xavier_uniform)
    pre = lg.matmul(x, w)
    parts = [lg.sigmoid(pre[:, k * COLUMNS : (k + 1) * COLUMNS]) for k in range(3)]
    loss = lg.sum(parts[0] * parts[1] + parts[2])
    feeds = {"x": np.random.default_rng(0).standard_normal((ROWS, 3 * COLUMNS))}
    program = _compare(loss, feeds)
    assert _calls(program, "k.assemble") == 1
    assert _calls(program, "k.unslice") == 0


def test_overlapping_slices_are_added():
    g = lg.Graph("overlap", dtype="float64", seed=1)
    x = g.parameter("x", (ROWS, COLUMNS), init=lg.init.xavier_uniform)
    loss = lg.sum(lg.tanh(x[:, 0:4])) + lg.sum(lg.sigmoid(x[:, 2:6]))
    program = _compare(loss, {})
    assert "exact_cover=False" in program.source


def test_products_over_steps_are_one_product():
    g = lg.Graph("products", dtype="float64", seed=1)
    xs = g.input("xs", (5, ROWS, COLUMNS))
    w = g.parameter("w", (COLUMNS, COLUMNS), init=lg.init.xavier_uniform)
    h = xs[0]
    for t in range(1, 5):
        h = lg.tanh(lg.matmul(h, w) + xs[t])
    feeds = {"xs": np.random.default_rng(0).standard_normal((5, ROWS, COLUMNS))}
    program = _compare(lg.sum(h), feeds)
    assert _calls(program, "np.concatenate") == 2
    products = [line for line in program.source.splitlines() if "np.matmul(" in line]
    # Four forward products, three backward ones for h, one for w.
    assert len(products) == 8


@pytest.mark.parametrize(
    "indices, expected",
    [
        ((((0, 4, 1), (0, 3, 1)), ((0, 4, 1), (3, 6, 1))), True),
        ((((0, 4, 1), (0, 3, 1)), ((0, 4, 1), (2, 6, 1))), False),
        ((((0, 4, 1), (0, 3, 1)),), False),
        ((((0, 4, 2), (0, 6, 1)),), False),
        (tuple((t, (0, 6, 1)) for t in range(4)), True),
    ],
)
def test_exact_cover(indices, expected):
    assert _exact_cover((ROWS, COLUMNS), indices) is expected


def test_assemble_kernel_adds_where_slices_overlap():
    values = (np.ones((2, 3)), np.full((2, 3), 2.0))
    indices = ((slice(0, 2), slice(0, 3)), (slice(0, 2), slice(1, 4)))
    out = kernels.assemble(values, (2, 4), indices, exact_cover=False)
    np.testing.assert_array_equal(out, [[1, 3, 3, 2], [1, 3, 3, 2]])


def test_rewrites_leave_the_optimized_graph_alone():
    g = lg.Graph("kept", dtype="float64", seed=1)
    x = g.input("x", (ROWS, 3 * COLUMNS))
    w = g.parameter("w", (3 * COLUMNS, 3 * COLUMNS), init=lg.init.xavier_uniform)
    pre = lg.matmul(x, w)
    parts = [lg.sigmoid(pre[:, k * COLUMNS : (k + 1) * COLUMNS]) for k in range(3)]
    program = lg.compile(loss=lg.sum(parts[0] * parts[1] + parts[2]))

    def ops(graph: lg.Graph) -> set[str]:
        return {op.name for _, op in graph.nx.nodes(data="op") if op is not None}

    assert program.graph is program.stages["optimized"]
    assert "unslice" in ops(program.graph)
    assert "unslice" not in ops(program.module.graph)
    assert program.module.graph is not program.graph
