"""User-defined recurrences: declaration, unrolling and their gradients."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import lightnet_graph as lg
from lightnet_graph import cells
from lightnet_graph.errors import GradientError, GraphError, ShapeError
from lightnet_graph.gradcheck import check_op, compare
from lightnet_graph.interpreter import evaluate
from lightnet_graph.recurrence import Recurrence

BATCH, FEATURES, HIDDEN = 2, 3, 4
EPS, RTOL, ATOL = 1e-6, 1e-6, 1e-9


def gated_step(params, state, x_t):
    """A gated cell whose output y_t = sigmoid(h_t) is not its state."""
    (h,) = state
    gate = lg.sigmoid(
        lg.linear(x_t, params["w_gx"], params["b_g"]) + lg.linear(h, params["w_gh"])
    )
    candidate = lg.tanh(
        lg.linear(x_t, params["w_x"], params["b"]) + lg.linear(gate * h, params["w_h"])
    )
    h_new = h + gate * (candidate - h)
    return (h_new,), lg.sigmoid(h_new)


def gated_params(g: lg.Graph) -> dict[str, lg.Tensor]:
    shapes = {
        "w_gx": (HIDDEN, FEATURES),
        "w_gh": (HIDDEN, HIDDEN),
        "b_g": (HIDDEN,),
        "w_x": (HIDDEN, FEATURES),
        "w_h": (HIDDEN, HIDDEN),
        "b": (HIDDEN,),
    }
    return {
        key: g.parameter(f"cell.{key}", shape, init=lg.init.uniform(0.6))
        for key, shape in shapes.items()
    }


def gated_model(steps: int, outputs: str = "all"):
    g = lg.Graph("gated", dtype="float64", seed=4)
    xs = g.input("xs", (steps, BATCH, FEATURES))
    h0 = g.input("h0", (BATCH, HIDDEN))
    ys, (h_final,) = lg.recurrence(
        gated_step,
        xs,
        h0,
        gated_params(g),
        name="cell",
        outputs=outputs,
        state_names=["h"],
    )
    rng = np.random.default_rng(steps)
    feeds = {
        "xs": rng.standard_normal(xs.shape),
        "h0": 0.5 * rng.standard_normal(h0.shape),
    }
    return g, ys, h_final, feeds


def numeric_gradient(loss_at, array: np.ndarray) -> np.ndarray:
    """Central differences of ``loss_at()`` in every entry of ``array`` (changed in place)."""
    gradient = np.zeros_like(array)
    for i in range(array.size):
        original = array.flat[i]
        array.flat[i] = original + EPS
        plus = loss_at()
        array.flat[i] = original - EPS
        minus = loss_at()
        array.flat[i] = original
        gradient.flat[i] = (plus - minus) / (2 * EPS)
    return gradient


def assert_gradients_match_finite_differences(loss: lg.Tensor, feeds: dict) -> None:
    graph = loss.graph
    float_inputs = [x for x in graph.inputs if x.dtype.kind == "f"]
    program = lg.compile(loss=loss, wrt=[*graph.parameters, *float_inputs])
    forward = lg.compile({"loss": loss})
    computed = program.run(feeds)
    parameters = program.get_parameters()

    def loss_at() -> float:
        forward.set_parameters(parameters)
        return float(forward.run(feeds)["loss"])

    arrays = {**parameters, **{x.name: feeds[x.name] for x in float_inputs}}
    for name, array in arrays.items():
        error, passed = compare(
            computed[f"grad/{name}"], numeric_gradient(loss_at, array), RTOL, ATOL
        )
        assert passed, f"gradient of {name} is off by {error:.2e}"


# -- declaration ----------------------------------------------------------------


def test_zero_steps_rejected() -> None:
    g = lg.Graph("empty", dtype="float64")
    xs = g.input("xs", (0, BATCH, FEATURES))
    h0 = g.input("h0", (BATCH, HIDDEN))
    with pytest.raises(ShapeError, match=r"recurrence 'encoder'.*T >= 1"):
        lg.recurrence(gated_step, xs, h0, gated_params(g), name="encoder")


def bad_step(params, state, x_t):
    (h,) = state
    wrong = lg.matmul(x_t, params["w"])  # the shape error
    return (h + wrong,), h


def test_shape_error_names_op_and_line() -> None:
    g = lg.Graph("bad", dtype="float64")
    xs = g.input("xs", (3, BATCH, FEATURES))
    h0 = g.input("h0", (BATCH, HIDDEN))
    w = g.parameter("w", (HIDDEN, HIDDEN))
    lines = Path(__file__).read_text().splitlines()
    line = next(
        i + 1 for i, text in enumerate(lines) if text.endswith("# the shape error")
    )
    with pytest.raises(ShapeError) as caught:
        lg.recurrence(bad_step, xs, h0, {"w": w}, name="bad")
    message = str(caught.value)
    assert "recurrence 'bad'" in message
    assert "matmul" in message
    assert f"{os.path.basename(__file__)}:{line}" in message


def test_closure_over_graph_rejected() -> None:
    g = lg.Graph("closure", dtype="float64")
    xs = g.input("xs", (3, BATCH, FEATURES))
    h0 = g.input("h0", (BATCH, HIDDEN))
    w = g.parameter("w", (HIDDEN, FEATURES))

    def step(params, state, x_t):
        return (lg.linear(x_t, w),), state[0]

    with pytest.raises(GraphError, match="pass weights through params"):
        lg.recurrence(step, xs, h0, name="closure")


def test_state_shape_change_rejected() -> None:
    g = lg.Graph("grow", dtype="float64")
    xs = g.input("xs", (3, BATCH, FEATURES))
    h0 = g.input("h0", (BATCH, HIDDEN))

    def step(params, state, x_t):
        return (x_t,), x_t

    with pytest.raises(ShapeError, match="state 'state0' is float64\\[2, 4\\]"):
        lg.recurrence(step, xs, h0, name="grow")


def test_parameter_in_step_rejected() -> None:
    g = lg.Graph("declares", dtype="float64")
    xs = g.input("xs", (3, BATCH, FEATURES))
    h0 = g.input("h0", (BATCH, HIDDEN))

    def step(params, state, x_t):
        w = x_t.graph.parameter("w", (HIDDEN, FEATURES))
        return (lg.linear(x_t, w) + state[0],), state[0]

    with pytest.raises(GraphError, match="declares the parameter 'w'"):
        lg.recurrence(step, xs, h0, name="declares")


def test_duplicate_recurrence_name_rejected() -> None:
    g, *_ = gated_model(3)
    with pytest.raises(GraphError, match="give this recurrence another name"):
        lg.recurrence(
            gated_step,
            g["xs"],
            g["h0"],
            {k: g[f"cell.{k}"] for k in ("w_gx", "w_gh", "b_g", "w_x", "w_h", "b")},
            name="cell",
            state_names=["h"],
        )


def test_declared_stage_keeps_recurrence() -> None:
    g = lg.Graph("stages", dtype="float64")
    xs = g.input("xs", (6, BATCH, FEATURES))
    outputs, [(h, c)] = cells.lstm(xs, HIDDEN)
    program = lg.compile({"outputs": outputs, "h": h, "c": c})
    declared = program.stages["declared"]
    recurrences = [
        data["op"]
        for _, data in declared.nx.nodes(data=True)
        if isinstance(data.get("op"), Recurrence)
    ]
    assert sorted(str(op.select) for op in recurrences) == ["0", "1", "outputs"]
    assert len({id(op.step) for op in recurrences}) == 1
    assert recurrences[0].step.steps == 6
    assert "over T = 6 steps" in recurrences[0].step.describe()


# -- unrolling ------------------------------------------------------------------


def test_unrolled_stage_has_t_copies() -> None:
    steps = 5
    g = lg.Graph("copies", dtype="float64")
    xs = g.input("xs", (steps, BATCH, FEATURES))
    outputs, [(h, c)] = cells.lstm(xs, HIDDEN)
    program = lg.compile({"outputs": outputs, "h": h, "c": c})
    unrolled = program.stages["unrolled"]
    names = {data["name"] for _, data in unrolled.nx.nodes(data=True)}
    ops = [
        data["op"].name
        for _, data in unrolled.nx.nodes(data=True)
        if data["kind"] == "op"
    ]
    assert "recurrence" not in ops
    # Three values select from one recurrence, which is unrolled once.
    assert sorted(n for n in names if ".x@" in n) == [
        f"lstm.x@{t}" for t in range(steps)
    ]
    assert {f"lstm.h@{t}" for t in range(steps)} <= names
    assert {f"lstm.c@{t}" for t in range(steps)} <= names


def test_unrolled_size_linear_in_t() -> None:
    sizes = {}
    for steps in (4, 8, 16):
        g = lg.Graph("linear", dtype="float64")
        xs = g.input("xs", (steps, BATCH, FEATURES))
        outputs, _ = cells.gru(xs, HIDDEN)
        program = lg.compile(loss=outputs.sum())
        sizes[steps] = {
            stage: program.stages[stage].nx.number_of_nodes()
            for stage in ("unrolled", "backward", "optimized")
        }
    for stage in ("unrolled", "backward", "optimized"):
        assert sizes[16][stage] - sizes[8][stage] == 2 * (
            sizes[8][stage] - sizes[4][stage]
        )


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("outputs", ["all", "last"])
def test_compiled_matches_reference_evaluation(steps: int, outputs: str) -> None:
    g, ys, h_final, feeds = gated_model(steps, outputs)
    program = lg.compile({"ys": ys, "h": h_final})
    values = program.run(feeds)
    # The interpreter runs the traced step graph T times through each op's forward.
    reference = evaluate(g, [ys.node, h_final.node], feeds)
    expected_shape = (steps, BATCH, HIDDEN) if outputs == "all" else (BATCH, HIDDEN)
    assert values["ys"].shape == expected_shape
    np.testing.assert_allclose(values["ys"], reference[ys.node], rtol=1e-13)
    np.testing.assert_allclose(values["h"], reference[h_final.node], rtol=1e-13)


@pytest.mark.parametrize("steps", [1, 2, 7])
def test_user_cell_gradients_match_differences(steps: int) -> None:
    g, ys, h_final, feeds = gated_model(steps)
    readout = np.random.default_rng(9).standard_normal(ys.shape)
    loss = (ys * g.constant(readout)).sum() + (h_final * h_final).sum()
    assert_gradients_match_finite_differences(loss, feeds)


def test_loss_reading_final_states() -> None:
    steps, classes = 4, 3
    rng = np.random.default_rng(11)
    g = lg.Graph("final-states", dtype="float64", seed=11)
    xs = g.input("xs", (steps, BATCH, FEATURES))
    h0 = g.input("h0", (BATCH, HIDDEN))
    c0 = g.input("c0", (BATCH, HIDDEN))
    labels = g.input("labels", (steps, BATCH), dtype="int64")
    outputs, [(h_final, c_final)] = cells.lstm(xs, HIDDEN, initial_states=[(h0, c0)])
    readout = g.parameter("readout", (classes, HIDDEN), init=lg.init.uniform(1.0))
    per_step = cells.sequence_cross_entropy(lg.linear(outputs, readout), labels, "sum")
    loss = (
        per_step
        + (h_final * g.constant(rng.standard_normal(h_final.shape))).sum()
        + (lg.tanh(c_final) * g.constant(rng.standard_normal(c_final.shape))).sum()
    )
    feeds = {
        "xs": rng.standard_normal(xs.shape),
        "h0": 0.5 * rng.standard_normal(h0.shape),
        "c0": 0.5 * rng.standard_normal(c0.shape),
        "labels": rng.integers(0, classes, labels.shape),
    }
    assert_gradients_match_finite_differences(loss, feeds)


def test_passthrough_state_named() -> None:
    g = lg.Graph("passthrough", dtype="float64")
    xs = g.input("xs", (3, BATCH, FEATURES))
    h0 = g.input("h0", (BATCH, HIDDEN))
    k0 = g.input("k0", (BATCH, HIDDEN))
    w = g.parameter("w", (HIDDEN, FEATURES), init=lg.init.uniform(1.0))

    def step(params, state, x_t):
        h, k = state
        h_new = lg.tanh(lg.linear(x_t, params["w"]) + h * k)
        return (h_new, k), h_new

    ys, _ = lg.recurrence(
        step, xs, (h0, k0), {"w": w}, name="r", state_names=["h", "k"]
    )
    loss = (ys * ys).sum()
    program = lg.compile(loss=loss, wrt=["r.k@1", "r.h@1"])
    rng = np.random.default_rng(2)
    feeds = {
        "xs": rng.standard_normal(xs.shape),
        "h0": rng.standard_normal(h0.shape),
        "k0": rng.standard_normal(k0.shape),
    }
    values = program.run(feeds)
    assert values["grad/r.k@1"].shape == (BATCH, HIDDEN)
    # k after step 1 is read only by step 2 (and passed on unchanged to nothing that
    # the loss reads), so its gradient is step 2's: dz/dh_3 (1 - h_3^2) h_2.
    h = feeds["h0"]
    hs = []
    for t in range(3):
        h = np.tanh(feeds["xs"][t] @ program.get_parameters()["w"].T + h * feeds["k0"])
        hs.append(h)
    expected = 2 * hs[2] * (1 - hs[2] ** 2) * hs[1]
    np.testing.assert_allclose(values["grad/r.k@1"], expected, rtol=1e-12)


def test_truncated_bptt_carries_state() -> None:
    steps = 3
    rng = np.random.default_rng(5)
    sequence = rng.standard_normal((2 * steps, BATCH, FEATURES))

    def build(length: int, carried: bool):
        g = lg.Graph("tbptt", dtype="float64", seed=8)
        xs = g.input("xs", (length, BATCH, FEATURES))
        h0 = (
            g.state("h0", (BATCH, HIDDEN))
            if carried
            else g.constant(np.zeros((BATCH, HIDDEN)))
        )
        ys, (h_final,) = lg.recurrence(
            gated_step, xs, h0, gated_params(g), name="cell", state_names=["h"]
        )
        if carried:
            g.assign(h0, lg.stop_gradient(h_final))
        return lg.compile({"ys": ys}, loss=(ys * ys).sum())

    whole = build(2 * steps, carried=False).run(xs=sequence)
    chunked = build(steps, carried=True)
    first = chunked.run(xs=sequence[:steps])
    second = chunked.run(xs=sequence[steps:])
    np.testing.assert_allclose(first["ys"], whole["ys"][:steps], rtol=1e-13)
    np.testing.assert_allclose(second["ys"], whole["ys"][steps:], rtol=1e-13)
    assert not np.array_equal(chunked.get_states()["h0"], np.zeros((BATCH, HIDDEN)))


# -- errors after declaration -----------------------------------------------------


def test_autodiff_before_unroll_raises() -> None:
    g, ys, _, _ = gated_model(3)
    with pytest.raises(GradientError, match="no gradient rule of its own"):
        lg.grad(ys.sum(), [g["cell.w_x"]])


def test_unknown_wrt_name_raises() -> None:
    g, ys, _, _ = gated_model(3)
    with pytest.raises(GraphError, match=r"wrt names 'cell.h@3'.*RECURRENCE.STATE@t"):
        lg.compile(loss=ys.sum(), wrt=["cell.h@3"])


def test_per_step_names_resolve() -> None:
    g, ys, h_final, feeds = gated_model(3)
    program = lg.compile(
        {"ys": ys, "h": h_final},
        loss=ys.sum(),
        wrt=["cell.h@2", "cell.y@0", "cell.h@0"],
    )
    values = program.run(feeds)
    # y_t = sigmoid(h_t) and nothing reads y_t but the loss, so dz/dy_t = 1.
    np.testing.assert_array_equal(values["grad/cell.y@0"], np.ones((BATCH, HIDDEN)))
    y_last = values["ys"][-1]
    np.testing.assert_allclose(
        values["grad/cell.h@2"], y_last * (1 - y_last), rtol=1e-13
    )
    assert values["grad/cell.h@0"].shape == (BATCH, HIDDEN)


def test_gradcheck_op_check_covers_recurrence() -> None:
    # gradcheck checks each op of the declared graph on its own after a
    # failure; for a recurrence that runs the step graph through forward().
    g, ys, _, feeds = gated_model(3)
    values = evaluate(g, [ys.node], feeds)
    operands = [values[t.node] for t in ys.inputs]
    error, passed = check_op(ys.op, operands, np.random.default_rng(0))
    assert passed, f"recurrence gradient is off by {error:.2e}"
