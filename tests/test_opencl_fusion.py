"""Fusion of recurrent cells: one kernel per step for the gate math, either way.

The forward gate math of one step is the gate nonlinearities and the state
updates, and its backward counterpart the derivatives of those ops. Each
must run as one launch per step, for the built-in LSTM and GRU (in
PyTorch's reset-after form) and for a cell declared here that the library
has never seen. An LSTM training step must build the same distinct kernels
whatever the sequence length, and a GRU whatever the batch size.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from opencl_support import import_pyopencl, opencl_backend

import lightnet_graph as lg
from lightnet_graph import cells
from lightnet_graph.gradcheck import compare
from lightnet_graph.graph import OP
from lightnet_graph.models import load_model

import_pyopencl()

GATE_OPS = {"sigmoid", "tanh", "leaky_relu", "exp"}


def _gate_math(program, recurrence: str, steps: int):
    """Per step: the forward gate ops and the backward ops that read their outputs."""
    graph = program.graph
    forward_nodes = set(program.stages["unrolled"].nx)
    nodes = graph.nx.nodes
    forward = {t: set() for t in range(steps)}
    backward = {t: set() for t in range(steps)}
    pattern = re.compile(rf"^{re.escape(recurrence)}\.(.+)@(\d+)$")
    step_of = {}
    for node, data in graph.nx.nodes(data=True):
        match = pattern.match(data["name"])
        if data["kind"] == OP and match and data["op"].name in GATE_OPS:
            forward[int(match.group(2))].add(data["name"])
            step_of[node] = int(match.group(2))
    for node, data in graph.nx.nodes(data=True):
        if data["kind"] != OP or node in forward_nodes:
            continue
        steps_read = {step_of[n] for n in graph.operands(node) if n in step_of}
        if len(steps_read) == 1 and data["op"].name in ("mul", "sub", "add"):
            backward[steps_read.pop()].add(nodes[node]["name"])
    return forward, backward


def _launches_covering(program, names: set[str]) -> list[int]:
    return [i for i, launch in enumerate(program.schedule) if names & set(launch.nodes)]


def _assert_one_kernel_per_step(program, recurrence: str, steps: int) -> None:
    forward, backward = _gate_math(program, recurrence, steps)
    schedule = program.schedule
    for direction, per_step in (("forward", forward), ("backward", backward)):
        used = []
        for t in range(steps):
            assert per_step[t], f"{direction} step {t} found no gate ops"
            launches = _launches_covering(program, per_step[t])
            assert len(launches) == 1, f"{direction} step {t}: launches {launches}"
            launch = schedule[launches[0]]
            assert per_step[t] <= set(launch.nodes), f"{direction} step {t}"
            assert launch.kernel.startswith("pointwise_"), launch.kernel
            used.append(launches[0])
        assert len(set(used)) == steps, f"{direction}: one launch per step"


def _check_against_numpy(loss: lg.Tensor, program, feeds: dict) -> None:
    expected = lg.compile(loss=loss).run(feeds)
    actual = program.run(feeds)
    for name, reference in expected.items():
        error, passed = compare(actual[name], reference, 1e-4, 1e-6)
        assert passed, f"{name}: relative error {error:.3g}"


def test_lstm_step_gate_math_one_kernel():
    steps = 5
    model = load_model("char-lstm", batch=3, hidden=8, seq_len=steps)
    program = lg.compile(loss=model.loss, backend=opencl_backend())
    _assert_one_kernel_per_step(program, "lstm", steps)
    _check_against_numpy(
        model.loss, program, model.make_feeds(np.random.default_rng(1))
    )


def test_gru_step_gate_math_one_kernel():
    steps = 4
    graph = lg.Graph("gru")
    xs = graph.input("xs", (steps, 3, 5))
    outputs, _ = cells.gru(xs, 6, name="gru", reset_after=True)
    loss = lg.sum(outputs * outputs)
    program = lg.compile(loss=loss, backend=opencl_backend())
    _assert_one_kernel_per_step(program, "gru", steps)
    feeds = {"xs": np.random.default_rng(2).uniform(-1, 1, xs.shape).astype(np.float32)}
    _check_against_numpy(loss, program, feeds)


def test_gru_reset_before_product_takes_two_kernels():
    # The default GRU multiplies R * h by a weight between its gates, so the
    # elementwise math before and after that product runs as two kernels.
    steps = 4
    graph = lg.Graph("gru")
    xs = graph.input("xs", (steps, 3, 5))
    outputs, _ = cells.gru(xs, 6, name="gru")
    program = lg.compile(loss=lg.sum(outputs * outputs), backend=opencl_backend())
    forward, backward = _gate_math(program, "gru", steps)
    for t in range(steps):
        assert len(_launches_covering(program, forward[t])) == 2, f"forward step {t}"
        assert len(_launches_covering(program, backward[t])) == 2, f"backward step {t}"


def _novel_cell(hidden: int):
    def step(params, state, x):
        (h,) = state
        pre = lg.linear(x, params["w_x"], params["b"]) + lg.linear(h, params["w_h"])
        keep = lg.sigmoid(pre[:, :hidden])
        proposal = lg.tanh(pre[:, hidden : 2 * hidden])
        damping = lg.leaky_relu(pre[:, 2 * hidden :], 0.1)
        h_new = keep * h + (1.0 - keep) * proposal * lg.exp(-damping * damping)
        return (h_new,), h_new

    return step


def test_user_defined_cell_fuses_like_builtin_cells():
    steps, hidden = 6, 5
    graph = lg.Graph("novel")
    xs = graph.input("xs", (steps, 4, 3))
    rng = np.random.default_rng(3)
    params = {
        "w_x": graph.parameter("w_x", (3 * hidden, 3), init=lg.init.xavier_uniform),
        "w_h": graph.parameter(
            "w_h", (3 * hidden, hidden), init=lg.init.xavier_uniform
        ),
        "b": graph.parameter("b", (3 * hidden,), init=lg.init.normal(0.1)),
    }
    h0 = graph.constant(np.zeros((4, hidden), np.float32))
    outputs, _ = lg.recurrence(_novel_cell(hidden), xs, h0, params, name="novel")
    loss = lg.mean(outputs * outputs)
    program = lg.compile(loss=loss, backend=opencl_backend())
    _assert_one_kernel_per_step(program, "novel", steps)
    feeds = {"xs": rng.uniform(-1, 1, xs.shape).astype(np.float32)}
    _check_against_numpy(loss, program, feeds)


def test_lstm_kernels_same_at_8_and_256():
    kernels = {}
    for steps in (8, 256):
        model = load_model("char-lstm", batch=2, hidden=8, seq_len=steps)
        program = lg.compile(loss=model.loss, backend=opencl_backend())
        kernels[steps] = {info.name: info.source for info in program.kernels}
    assert kernels[8] == kernels[256]
    assert len(kernels[8]) <= 20


def test_kernels_do_not_depend_on_batch_size():
    kernels = {}
    for batch in (8, 13):
        model = load_model("char-gru", batch=batch, hidden=8, seq_len=3)
        program = lg.compile(loss=model.loss, backend=opencl_backend())
        kernels[batch] = {info.name for info in program.kernels}
    assert kernels[8] == kernels[13]
