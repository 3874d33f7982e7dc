"""The batch-steps pass: every step's input projection as one matrix product."""

from __future__ import annotations

import numpy as np
import pytest

import lightnet_graph as lg
from lightnet_graph import cells

STEPS, BATCH, FEATURES, HIDDEN = 5, 3, 4, 6


def _sequence_loss(layer: str) -> tuple[lg.Tensor, dict[str, np.ndarray]]:
    g = lg.Graph(f"batch-steps-{layer}", dtype="float64", seed=3)
    xs = g.input("xs", (STEPS, BATCH, FEATURES))
    make = {"lstm": cells.lstm, "gru": cells.gru, "rnn": cells.rnn}[layer]
    outputs, _ = make(xs, HIDDEN)
    loss = lg.sum(lg.tanh(outputs))
    rng = np.random.default_rng(0)
    return loss, {"xs": rng.standard_normal((STEPS, BATCH, FEATURES))}


def _op_count(program: lg.Executable, stage: str, name: str) -> int:
    graph = program.stages[stage]
    return sum(
        1 for _, op in graph.nx.nodes(data="op") if op is not None and op.name == name
    )


@pytest.mark.parametrize("layer", ["lstm", "gru", "rnn"])
def test_input_projection_is_one_linear(layer):
    loss, _ = _sequence_loss(layer)
    batched = lg.compile(loss=loss)
    plain = lg.compile(loss=loss, optimize=False)
    assert _op_count(plain, "unrolled", "linear") == STEPS
    assert _op_count(batched, "unrolled", "linear") == 1


@pytest.mark.parametrize("layer", ["lstm", "gru", "rnn"])
def test_batched_gradients_match_unbatched(layer):
    loss, feeds = _sequence_loss(layer)
    batched = lg.compile(loss=loss).run(feeds)
    plain = lg.compile(loss=loss, optimize=False).run(feeds)
    assert set(batched) == set(plain)
    for name, value in plain.items():
        np.testing.assert_allclose(batched[name], value, rtol=1e-12, atol=1e-12)


def test_products_over_some_steps_stay_apart():
    g = lg.Graph("some-steps", dtype="float64")
    xs = g.input("xs", (3, BATCH, FEATURES))
    w = g.parameter("w", (HIDDEN, FEATURES), init=lg.init.xavier_uniform)
    b = g.parameter("b", (HIDDEN,))
    # Steps 0 and 1 only: batching would compute a row block nobody reads.
    loss = lg.sum(lg.linear(xs[0], w, b) + lg.linear(xs[1], w, b))
    program = lg.compile(loss=loss)
    assert _op_count(program, "unrolled", "linear") == 2


def test_named_wrt_value_is_kept():
    loss, feeds = _sequence_loss("rnn")
    program = lg.compile(loss=loss, wrt=["rnn.h@2"])
    assert program.run(feeds)["grad/rnn.h@2"].shape == (BATCH, HIDDEN)
