"""Compiled gradients with respect to every h_t and c_t against hand-written BPTT.

Each test runs a cell forward in NumPy, then carries the backward
recurrence step by step in a plain loop, and compares the result with the
gradients that compile() derives for the unrolled values ``cell.h@t`` and
``cell.c@t`` (the states after step t, h_{t+1} and c_{t+1} below) and for
the initial states. The loss is z = sum_t z_t with z_t the summed softmax
cross-entropy of the logits h_t V^T, so dz_t/dh_t = (softmax(h_t V^T) -
onehot(label_t)) V.

Notation follows the cells: h_0 is the initial state and step t (1..T)
maps h_{t-1} to h_t. For W x^T on a batch of rows, the gradient of
a = h W^T with respect to h is da W.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightnet_graph as lg
from lightnet_graph import cells
from lightnet_graph.gradcheck import compare

BATCH, FEATURES, HIDDEN, CLASSES = 3, 2, 4, 5
# Both sides compute the same sums in other orders, so they differ by
# rounding alone (about 1e-16 here). With atol 0, rtol 1e-10 is the whole test.
RTOL, ATOL = 1e-10, 0.0


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def split(value: np.ndarray, blocks: int) -> list[np.ndarray]:
    return np.split(value, blocks, axis=-1)


class Problem:
    """A compiled cell with its loss, feeds and the gradients compile() returns."""

    def __init__(self, cell: cells.Cell, steps: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        g = lg.Graph("bptt", dtype="float64", seed=seed)
        xs = g.input("xs", (steps, BATCH, FEATURES))
        labels = g.input("labels", (steps, BATCH), dtype="int64")
        initial = tuple(g.input(f"{s}0", (BATCH, HIDDEN)) for s in cell.state_names)
        outputs, _ = cells.stack([cell], xs, name="cell", initial_states=[initial])
        self.readout = rng.standard_normal((CLASSES, HIDDEN))
        logits = lg.linear(outputs, g.constant(self.readout))
        loss = lg.softmax_cross_entropy(logits, labels, "sum")

        self.feeds = {
            "xs": rng.standard_normal(xs.shape),
            "labels": rng.integers(0, CLASSES, (steps, BATCH)),
            **{s.name: 0.5 * rng.standard_normal(s.shape) for s in initial},
        }
        per_step = [f"cell.{s}@{t}" for s in cell.state_names for t in range(steps)]
        program = lg.compile(loss=loss, wrt=[*g.parameters, *initial, *per_step])
        self.parameters = program.get_parameters()
        self.gradients = program.run(self.feeds)
        self.steps = steps

    def weight(self, key: str) -> np.ndarray:
        return self.parameters[f"cell.{key}"]

    def loss_gradient(self, h: np.ndarray, t: int) -> np.ndarray:
        """dz_t/dh_t for the hidden state h = h_t, t = 1..T."""
        logits = h @ self.readout.T
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        p[np.arange(BATCH), self.feeds["labels"][t - 1]] -= 1.0
        return p @ self.readout

    def check(self, state: str, expected: list[np.ndarray]) -> None:
        """Compare dz/d state_t, t = 0..T, with grad/{state}0 and grad/cell.{state}@t."""
        names = [f"{state}0"] + [f"cell.{state}@{t}" for t in range(self.steps)]
        for name, reference in zip(names, expected, strict=True):
            error, passed = compare(
                self.gradients[f"grad/{name}"], reference, RTOL, ATOL
            )
            assert passed, f"dz/d{name} differs from the BPTT recurrence by {error:.2e}"


@pytest.mark.parametrize("steps", [1, 2, 7])
@pytest.mark.parametrize("skip", [0.0, 0.5, 1.0])
def test_rnn_gradient_matches_bptt_recurrence(skip: float, steps: int) -> None:
    problem = Problem(cells.RNN(FEATURES, HIDDEN, skip=skip), steps, seed=1)
    w_ih, w_hh, b = (problem.weight(k) for k in ("weight_ih", "weight_hh", "bias"))
    xs = problem.feeds["xs"]

    # dh_t = tanh(W_hh h_{t-1} + W_ih x_t + b), h_t = lambda h_{t-1} + dh_t
    h, delta = [problem.feeds["h0"]], [None]
    for t in range(1, steps + 1):
        delta.append(np.tanh(xs[t - 1] @ w_ih.T + b + h[t - 1] @ w_hh.T))
        h.append(skip * h[t - 1] + delta[t])

    # dz/dh_T = dz_T/dh_T; dz/dh_{t-1} = dz/dh_t dh_t/dh_{t-1} + dz_{t-1}/dh_{t-1},
    # with dh_t/dh_{t-1} = lambda + d(dh_t)/dh_{t-1}.
    grad = [None] * (steps + 1)
    grad[steps] = problem.loss_gradient(h[steps], steps)
    for t in range(steps, 0, -1):
        through_delta = (grad[t] * (1.0 - delta[t] ** 2)) @ w_hh
        grad[t - 1] = skip * grad[t] + through_delta
        if t - 1 >= 1:
            grad[t - 1] = grad[t - 1] + problem.loss_gradient(h[t - 1], t - 1)
    problem.check("h", grad)


@pytest.mark.parametrize("steps", [1, 2, 7])
@pytest.mark.parametrize("reset_after", [False, True])
def test_gru_gradient_matches_bptt_recurrence(reset_after: bool, steps: int) -> None:
    problem = Problem(
        cells.GRU(FEATURES, HIDDEN, reset_after=reset_after), steps, seed=2
    )
    w_ih, w_hh, b = (problem.weight(k) for k in ("weight_ih", "weight_hh", "bias"))
    w_rh, w_uh, w_nh = split(w_hh.T, 3)
    w_rh, w_uh, w_nh = w_rh.T, w_uh.T, w_nh.T
    b_hn = problem.weight("bias_hn") if reset_after else None
    xs = problem.feeds["xs"]

    h = [problem.feeds["h0"]]
    reset, update, candidate, inner = [None], [None], [None], [None]
    for t in range(1, steps + 1):
        pre_r, pre_u, pre_n = split(xs[t - 1] @ w_ih.T + b, 3)
        r = sigmoid(pre_r + h[t - 1] @ w_rh.T)
        u = sigmoid(pre_u + h[t - 1] @ w_uh.T)
        if reset_after:
            q = h[t - 1] @ w_nh.T + b_hn
            n = np.tanh(pre_n + r * q)
        else:
            q = None
            n = np.tanh(pre_n + (r * h[t - 1]) @ w_nh.T)
        reset.append(r), update.append(u), candidate.append(n), inner.append(q)
        h.append((1.0 - u) * h[t - 1] + u * n)

    # dh_t/dh_{t-1} = (1 - U_t) + (dh_t - h_{t-1}) dU_t/dh_{t-1} + U_t d(dh_t)/dh_{t-1},
    # where d(dh_t)/dh_{t-1} includes the path through the reset gate R_t.
    grad = [None] * (steps + 1)
    grad[steps] = problem.loss_gradient(h[steps], steps)
    for t in range(steps, 0, -1):
        g, r, u, n, prev = grad[t], reset[t], update[t], candidate[t], h[t - 1]
        total = g * (1.0 - u)
        total += (g * (n - prev) * u * (1.0 - u)) @ w_uh
        d_pre_n = g * u * (1.0 - n**2)
        if reset_after:
            total += (d_pre_n * r) @ w_nh
            d_reset = d_pre_n * inner[t]
        else:
            d_reset_h = d_pre_n @ w_nh
            total += d_reset_h * r
            d_reset = d_reset_h * prev
        total += (d_reset * r * (1.0 - r)) @ w_rh
        if t - 1 >= 1:
            total += problem.loss_gradient(h[t - 1], t - 1)
        grad[t - 1] = total
    problem.check("h", grad)


@pytest.mark.parametrize("steps", [1, 2, 7])
def test_lstm_gradient_matches_bptt_recurrence(steps: int) -> None:
    problem = Problem(cells.LSTM(FEATURES, HIDDEN), steps, seed=3)
    w_ih, w_hh, b = (problem.weight(k) for k in ("weight_ih", "weight_hh", "bias"))
    xs = problem.feeds["xs"]

    h, c = [problem.feeds["h0"]], [problem.feeds["c0"]]
    gates = [None]
    for t in range(1, steps + 1):
        pre_i, pre_f, pre_g, pre_o = split(
            xs[t - 1] @ w_ih.T + b + h[t - 1] @ w_hh.T, 4
        )
        i, f, g, o = sigmoid(pre_i), sigmoid(pre_f), np.tanh(pre_g), sigmoid(pre_o)
        gates.append((i, f, g, o))
        c.append(f * c[t - 1] + i * g)
        h.append(o * np.tanh(c[t]))

    # Both states are carried together, and dz/dc_t includes the path through h_t:
    #   dz/dh_{t-1} = dz_{t-1}/dh_{t-1} + sum over gates W_gh^T dz/da_{g,t}
    #   dz/dc_{t-1} = dz/dc_t f_t + dz/dh_{t-1} o_{t-1} (1 - tanh^2 c_{t-1})
    # The initial c_0 reaches the loss only through c_1, since h_0 is an input.
    grad_h = [None] * (steps + 1)
    grad_c = [None] * (steps + 1)
    grad_h[steps] = problem.loss_gradient(h[steps], steps)
    _, _, _, o_last = gates[steps]
    grad_c[steps] = grad_h[steps] * o_last * (1.0 - np.tanh(c[steps]) ** 2)
    for t in range(steps, 0, -1):
        i, f, g, o = gates[t]
        d_pre = np.concatenate(
            [
                grad_c[t] * g * i * (1.0 - i),
                grad_c[t] * c[t - 1] * f * (1.0 - f),
                grad_c[t] * i * (1.0 - g**2),
                grad_h[t] * np.tanh(c[t]) * o * (1.0 - o),
            ],
            axis=-1,
        )
        grad_h[t - 1] = d_pre @ w_hh
        grad_c[t - 1] = grad_c[t] * f
        if t - 1 >= 1:
            grad_h[t - 1] = grad_h[t - 1] + problem.loss_gradient(h[t - 1], t - 1)
            _, _, _, o_prev = gates[t - 1]
            grad_c[t - 1] += grad_h[t - 1] * o_prev * (1.0 - np.tanh(c[t - 1]) ** 2)
    problem.check("h", grad_h)
    problem.check("c", grad_c)


def test_lstm_forward_matches_numpy() -> None:
    # The hand-written recurrences above start from the same forward pass.
    steps = 4
    g = lg.Graph("forward", dtype="float64", seed=5)
    xs = g.input("xs", (steps, BATCH, FEATURES))
    outputs, [(h_final, c_final)] = cells.lstm(xs, HIDDEN, name="cell")
    program = lg.compile({"outputs": outputs, "h": h_final, "c": c_final})
    parameters = program.get_parameters()
    feeds = np.random.default_rng(5).standard_normal(xs.shape)
    values = program.run(xs=feeds)

    w_ih, w_hh, b = (
        parameters[f"cell.{k}"] for k in ("weight_ih", "weight_hh", "bias")
    )
    h = c = np.zeros((BATCH, HIDDEN))
    for t in range(steps):
        pre_i, pre_f, pre_g, pre_o = split(feeds[t] @ w_ih.T + b + h @ w_hh.T, 4)
        c = sigmoid(pre_f) * c + sigmoid(pre_i) * np.tanh(pre_g)
        h = sigmoid(pre_o) * np.tanh(c)
        np.testing.assert_allclose(values["outputs"][t], h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(values["h"], h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(values["c"], c, rtol=1e-12, atol=1e-14)
