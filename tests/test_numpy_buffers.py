"""Buffer reuse and statement order in the generated NumPy module."""

from __future__ import annotations

import numpy as np

import lightnet_graph as lg
from lightnet_graph.models_recurrent import char_lstm


def test_view_keeps_its_buffer_alive():
    g = lg.Graph("views", dtype="float64")
    x = g.input("x", (3, 4))
    flat = lg.reshape(lg.tanh(x), (4, 3))
    # exp(x) has tanh(x)'s shape and would take its buffer if the reshape
    # did not keep it alive.
    later = lg.reshape(lg.exp(x), (4, 3))
    program = lg.compile(outputs={"y": flat + later})
    value = np.arange(12.0).reshape(3, 4) / 10
    expected = np.tanh(value).reshape(4, 3) + np.exp(value).reshape(4, 3)
    np.testing.assert_allclose(program.run(x=value)["y"], expected)


def test_unrolled_steps_share_buffers():
    model = char_lstm(hidden=8, batch=2, seq_len=16)
    plan = lg.compile(loss=model.loss).memory_plan()
    assert plan.peak_bytes < 0.6 * plan.peak_bytes_without_reuse


def test_buffers_list_their_values():
    model = char_lstm(hidden=8, batch=2, seq_len=6)
    plan = lg.compile(loss=model.loss).memory_plan()
    shared = [b for b in plan.buffers if len(b.values) > 1]
    assert shared
    assert sum(len(b.values) for b in plan.buffers) > len(plan.buffers)


def test_repeated_runs_give_the_same_result():
    model = char_lstm(hidden=8, batch=2, seq_len=6)
    program = lg.compile(loss=model.loss)
    feeds = model.make_feeds(np.random.default_rng(0))
    first = program.run(feeds)
    second = program.run(feeds)
    for name, value in first.items():
        np.testing.assert_array_equal(second[name], value)
