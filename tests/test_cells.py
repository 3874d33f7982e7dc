"""RNN, GRU and LSTM gradients against central finite differences (float64).

Every weight, the input sequence and the initial states are perturbed one
entry at a time. A gradient matches when ||a - b|| <= 1e-6 ||b|| +
1e-9 sqrt(n), the project's float64 convention.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import lightnet_graph as lg
from lightnet_graph import cells
from lightnet_graph.gradcheck import compare

BATCH, FEATURES, HIDDEN = 2, 3, 4
EPS, RTOL, ATOL = 1e-6, 1e-6, 1e-9

# Each entry makes a cell for a given input size.
CELLS: dict[str, Callable[[int], cells.Cell]] = {
    "rnn-lambda0": lambda size: cells.RNN(size, HIDDEN, skip=0.0),
    "rnn-lambda0.5": lambda size: cells.RNN(size, HIDDEN, skip=0.5),
    "rnn-lambda1": lambda size: cells.RNN(size, HIDDEN, skip=1.0),
    "rnn-relu-lambda0.5": lambda size: cells.RNN(
        size, HIDDEN, skip=0.5, activation="relu"
    ),
    "gru-reset-before": lambda size: cells.GRU(size, HIDDEN),
    "gru-reset-after": lambda size: cells.GRU(size, HIDDEN, reset_after=True),
    "lstm": lambda size: cells.LSTM(size, HIDDEN),
}


def numeric_gradient(loss_at: Callable[[], float], array: np.ndarray) -> np.ndarray:
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


def gradient_errors(
    loss: lg.Tensor, feeds: dict[str, np.ndarray]
) -> dict[str, tuple[float, bool]]:
    """Compare compiled gradients of every parameter and float input with differences."""
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
    return {
        name: compare(
            computed[f"grad/{name}"], numeric_gradient(loss_at, array), RTOL, ATOL
        )
        for name, array in arrays.items()
    }


def cell_loss(
    make: Callable[[int], cells.Cell],
    steps: int,
    seed: int = 0,
    layers: int = 1,
) -> tuple[lg.Tensor, dict[str, np.ndarray]]:
    """A loss over every output and the final states of the cells run for ``steps``."""
    rng = np.random.default_rng(seed)
    g = lg.Graph("cell", dtype="float64", seed=seed)
    xs = g.input("xs", (steps, BATCH, FEATURES))
    layer_cells = [make(FEATURES if k == 0 else HIDDEN) for k in range(layers)]
    initial = [
        tuple(g.input(f"l{k}.{s}0", (BATCH, HIDDEN)) for s in cell.state_names)
        for k, cell in enumerate(layer_cells)
    ]
    outputs, finals = cells.stack(layer_cells, xs, name="cell", initial_states=initial)
    loss = (lg.tanh(outputs) * g.constant(rng.standard_normal(outputs.shape))).sum()
    for states in finals:
        for state in states:
            loss = loss + (state * g.constant(rng.standard_normal(state.shape))).sum()
    feeds = {"xs": rng.standard_normal(xs.shape)}
    for states in initial:
        for state in states:
            feeds[state.name] = 0.5 * rng.standard_normal(state.shape)
    return loss, feeds


@pytest.mark.parametrize("steps", [1, 2, 7])
@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_cell_gradients_match_differences(cell_name: str, steps: int) -> None:
    loss, feeds = cell_loss(CELLS[cell_name], steps)
    errors = gradient_errors(loss, feeds)
    cell = CELLS[cell_name](FEATURES)
    expected = {f"cell.{key}" for key in cell.parameter_shapes()}
    expected |= {"xs"} | {f"l0.{state}0" for state in cell.state_names}
    assert set(errors) == expected
    for name, (error, passed) in errors.items():
        assert passed, (
            f"{cell_name}, T={steps}: gradient of {name} is off by {error:.2e}"
        )


@pytest.mark.parametrize("cell_name", ["rnn-lambda0.5", "gru-reset-before", "lstm"])
def test_two_layer_gradients_match_differences(cell_name: str) -> None:
    loss, feeds = cell_loss(CELLS[cell_name], steps=3, layers=2)
    errors = gradient_errors(loss, feeds)
    assert any(name.startswith("cell.l1.") for name in errors)
    for name, (error, passed) in errors.items():
        assert passed, (
            f"{cell_name}, 2 layers: gradient of {name} is off by {error:.2e}"
        )


def test_cell_parameter_shapes() -> None:
    g = lg.Graph("names", dtype="float64")
    xs = g.input("xs", (5, BATCH, FEATURES))
    cells.gru(xs, HIDDEN, name="enc", reset_after=True, layers=2)
    shapes = {p.name: p.shape for p in g.parameters}
    assert shapes["enc.l0.weight_ih"] == (3 * HIDDEN, FEATURES)
    assert shapes["enc.l1.weight_ih"] == (3 * HIDDEN, HIDDEN)
    assert shapes["enc.l1.weight_hh"] == (3 * HIDDEN, HIDDEN)
    assert shapes["enc.l1.bias"] == (3 * HIDDEN,)
    assert shapes["enc.l1.bias_hn"] == (HIDDEN,)


def test_helper_seed_fixes_weights() -> None:
    values = []
    for graph_seed in (1, 2):
        g = lg.Graph("seeded", dtype="float64", seed=graph_seed)
        xs = g.input("xs", (2, BATCH, FEATURES))
        cells.lstm(xs, HIDDEN, seed=7)
        values.append(g.nx.nodes[g["lstm.weight_hh"].node]["value"])
    np.testing.assert_array_equal(values[0], values[1])


def test_sequence_cross_entropy_reductions() -> None:
    rng = np.random.default_rng(3)
    steps, classes = 4, 5
    logits = rng.standard_normal((steps, BATCH, classes))
    targets = rng.integers(0, classes, (steps, BATCH))
    g = lg.Graph("ce", dtype="float64")
    x = g.input("logits", logits.shape)
    y = g.input("targets", targets.shape, dtype="int64")
    program = lg.compile(
        {
            "sum": cells.sequence_cross_entropy(x, y, "sum"),
            "mean": cells.sequence_cross_entropy(x, y, "mean"),
        }
    )
    values = program.run(logits=logits, targets=targets)
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    per_step = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0].mean(axis=1)
    np.testing.assert_allclose(values["sum"], per_step.sum(), rtol=1e-12)
    np.testing.assert_allclose(values["mean"], per_step.mean(), rtol=1e-12)


def test_unknown_activation_rejected() -> None:
    with pytest.raises(ValueError, match="activation 'softsign' is not supported"):
        cells.RNN(FEATURES, HIDDEN, activation="softsign")
