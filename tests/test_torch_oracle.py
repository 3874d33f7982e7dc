"""Recurrent cells against PyTorch's nn.RNN, nn.GRU and nn.LSTM (float64).

PyTorch keeps two biases per gate where lightnet-graph keeps their sum, and
its GRU update gate is z = 1 - U, so mapping a GRU negates the z rows of
both weights and the z biases. Outputs, final states and every weight
gradient must match to rtol 1e-9 (atol 1e-9 sqrt(n)).
"""

from __future__ import annotations

import numpy as np
import pytest

import lightnet_graph as lg
from lightnet_graph import cells
from lightnet_graph.gradcheck import compare

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.oracle

STEPS, BATCH, FEATURES, HIDDEN = 6, 3, 4, 5
RTOL, ATOL = 1e-9, 1e-9


def run_torch(
    module,
    xs: np.ndarray,
    initial: tuple[np.ndarray, ...],
    weights: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Outputs, final states and weight gradients of ``module`` under the test loss."""
    module = module.double()
    x = torch.tensor(xs, requires_grad=True)
    states = tuple(torch.tensor(s[None]) for s in initial)
    out, finals = module(x, states if len(states) > 1 else states[0])
    finals = finals if isinstance(finals, tuple) else (finals,)
    loss = (out * torch.tensor(weights["outputs"])).sum()
    for k, final in enumerate(finals):
        loss = loss + (final[0] * torch.tensor(weights[f"state{k}"])).sum()
    loss.backward()
    result = {"outputs": out.detach().numpy(), "grad/xs": x.grad.numpy()}
    for k, final in enumerate(finals):
        result[f"state{k}"] = final[0].detach().numpy()
    for name, parameter in module.named_parameters():
        result[name] = parameter.detach().numpy()
        result[f"grad/{name}"] = parameter.grad.numpy()
    return result


def run_ours(
    cell: cells.Cell,
    xs: np.ndarray,
    initial: tuple[np.ndarray, ...],
    weights: dict[str, np.ndarray],
    parameters: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The same loss compiled by lightnet-graph, with ``parameters`` by key."""
    g = lg.Graph("oracle", dtype="float64")
    x = g.input("xs", xs.shape)
    states = tuple(
        g.input(f"{name}0", s.shape)
        for name, s in zip(cell.state_names, initial, strict=True)
    )
    outputs, [finals] = cells.stack([cell], x, name="cell", initial_states=[states])
    loss = (outputs * g.constant(weights["outputs"])).sum()
    for k, final in enumerate(finals):
        loss = loss + (final * g.constant(weights[f"state{k}"])).sum()
    named = {"outputs": outputs, **{f"state{k}": f for k, f in enumerate(finals)}}
    program = lg.compile(named, loss=loss, wrt=[*g.parameters, x])
    program.set_parameters({f"cell.{key}": value for key, value in parameters.items()})
    feeds = {
        "xs": xs,
        **{f"{name}0": s for name, s in zip(cell.state_names, initial, strict=True)},
    }
    return program.run(feeds)


def random_case(
    states: int, seed: int
) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict]:
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((STEPS, BATCH, FEATURES))
    initial = tuple(0.5 * rng.standard_normal((BATCH, HIDDEN)) for _ in range(states))
    weights = {"outputs": rng.standard_normal((STEPS, BATCH, HIDDEN))}
    weights.update(
        {f"state{k}": rng.standard_normal((BATCH, HIDDEN)) for k in range(states)}
    )
    return xs, initial, weights


def assert_matches(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    error, passed = compare(ours, theirs, RTOL, ATOL)
    assert passed, f"{what} differs from PyTorch by {error:.2e}"


def assert_values_match(ours: dict, theirs: dict, states: int) -> None:
    assert_matches(ours["outputs"], theirs["outputs"], "outputs")
    assert_matches(ours["grad/xs"], theirs["grad/xs"], "gradient of xs")
    for k in range(states):
        assert_matches(ours[f"state{k}"], theirs[f"state{k}"], f"final state {k}")


def test_lstm_matches_torch() -> None:
    torch.manual_seed(0)
    module = torch.nn.LSTM(FEATURES, HIDDEN)
    xs, initial, weights = random_case(2, seed=0)
    theirs = run_torch(module, xs, initial, weights)
    parameters = {
        "weight_ih": theirs["weight_ih_l0"],
        "weight_hh": theirs["weight_hh_l0"],
        "bias": theirs["bias_ih_l0"] + theirs["bias_hh_l0"],
    }
    ours = run_ours(cells.LSTM(FEATURES, HIDDEN), xs, initial, weights, parameters)
    assert_values_match(ours, theirs, 2)
    assert_matches(
        ours["grad/cell.weight_ih"], theirs["grad/weight_ih_l0"], "dz/dweight_ih"
    )
    assert_matches(
        ours["grad/cell.weight_hh"], theirs["grad/weight_hh_l0"], "dz/dweight_hh"
    )
    # Each PyTorch bias has the gradient of their sum.
    assert_matches(ours["grad/cell.bias"], theirs["grad/bias_ih_l0"], "dz/dbias_ih")
    assert_matches(ours["grad/cell.bias"], theirs["grad/bias_hh_l0"], "dz/dbias_hh")


def test_gru_reset_after_matches_torch() -> None:
    torch.manual_seed(1)
    module = torch.nn.GRU(FEATURES, HIDDEN)
    xs, initial, weights = random_case(1, seed=1)
    theirs = run_torch(module, xs, initial, weights)
    # Rows are r, z, n in both; U = 1 - z, so the update rows change sign.
    mirror = np.concatenate([np.ones(HIDDEN), -np.ones(HIDDEN), np.ones(HIDDEN)])
    b_ih, b_hh = theirs["bias_ih_l0"], theirs["bias_hh_l0"]
    parameters = {
        "weight_ih": theirs["weight_ih_l0"] * mirror[:, None],
        "weight_hh": theirs["weight_hh_l0"] * mirror[:, None],
        "bias": np.concatenate(
            [b_ih[: 2 * HIDDEN] + b_hh[: 2 * HIDDEN], b_ih[2 * HIDDEN :]]
        )
        * mirror,
        "bias_hn": b_hh[2 * HIDDEN :],
    }
    ours = run_ours(
        cells.GRU(FEATURES, HIDDEN, reset_after=True), xs, initial, weights, parameters
    )
    assert_values_match(ours, theirs, 1)
    assert_matches(
        ours["grad/cell.weight_ih"] * mirror[:, None],
        theirs["grad/weight_ih_l0"],
        "dz/dweight_ih",
    )
    assert_matches(
        ours["grad/cell.weight_hh"] * mirror[:, None],
        theirs["grad/weight_hh_l0"],
        "dz/dweight_hh",
    )
    bias = ours["grad/cell.bias"] * mirror
    assert_matches(bias, theirs["grad/bias_ih_l0"], "dz/dbias_ih")
    assert_matches(
        bias[: 2 * HIDDEN],
        theirs["grad/bias_hh_l0"][: 2 * HIDDEN],
        "dz/dbias_hh (r, z)",
    )
    assert_matches(
        ours["grad/cell.bias_hn"],
        theirs["grad/bias_hh_l0"][2 * HIDDEN :],
        "dz/dbias_hn",
    )


def test_rnn_without_skip_matches_torch() -> None:
    torch.manual_seed(2)
    module = torch.nn.RNN(FEATURES, HIDDEN, nonlinearity="tanh")
    xs, initial, weights = random_case(1, seed=2)
    theirs = run_torch(module, xs, initial, weights)
    parameters = {
        "weight_ih": theirs["weight_ih_l0"],
        "weight_hh": theirs["weight_hh_l0"],
        "bias": theirs["bias_ih_l0"] + theirs["bias_hh_l0"],
    }
    ours = run_ours(
        cells.RNN(FEATURES, HIDDEN, skip=0.0), xs, initial, weights, parameters
    )
    assert_values_match(ours, theirs, 1)
    assert_matches(
        ours["grad/cell.weight_ih"], theirs["grad/weight_ih_l0"], "dz/dweight_ih"
    )
    assert_matches(
        ours["grad/cell.weight_hh"], theirs["grad/weight_hh_l0"], "dz/dweight_hh"
    )
    assert_matches(ours["grad/cell.bias"], theirs["grad/bias_ih_l0"], "dz/dbias_ih")
    assert_matches(ours["grad/cell.bias"], theirs["grad/bias_hh_l0"], "dz/dbias_hh")


def test_two_layer_lstm_matches_torch() -> None:
    torch.manual_seed(3)
    module = torch.nn.LSTM(FEATURES, HIDDEN, num_layers=2).double()
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((STEPS, BATCH, FEATURES))
    readout = rng.standard_normal((STEPS, BATCH, HIDDEN))

    x = torch.tensor(xs)
    out, _ = module(x)
    (out * torch.tensor(readout)).sum().backward()
    theirs = {name: p for name, p in module.named_parameters()}

    g = lg.Graph("oracle2", dtype="float64")
    inputs = g.input("xs", xs.shape)
    outputs, _ = cells.lstm(inputs, HIDDEN, name="lstm", layers=2)
    program = lg.compile(
        {"outputs": outputs}, loss=(outputs * g.constant(readout)).sum()
    )
    mapped = {}
    for k in range(2):
        mapped[f"lstm.l{k}.weight_ih"] = theirs[f"weight_ih_l{k}"].detach().numpy()
        mapped[f"lstm.l{k}.weight_hh"] = theirs[f"weight_hh_l{k}"].detach().numpy()
        mapped[f"lstm.l{k}.bias"] = (
            (theirs[f"bias_ih_l{k}"] + theirs[f"bias_hh_l{k}"]).detach().numpy()
        )
    program.set_parameters(mapped)
    ours = program.run(xs=xs)

    assert_matches(ours["outputs"], out.detach().numpy(), "outputs")
    for k in range(2):
        for key in ("weight_ih", "weight_hh"):
            assert_matches(
                ours[f"grad/lstm.l{k}.{key}"],
                theirs[f"{key}_l{k}"].grad.numpy(),
                f"dz/d{key} of layer {k}",
            )
        assert_matches(
            ours[f"grad/lstm.l{k}.bias"],
            theirs[f"bias_ih_l{k}"].grad.numpy(),
            f"dz/dbias of layer {k}",
        )
