"""Hand-written NumPy training steps: forward, backpropagation and SGD.

This is the code a careful person writes without a compiler: one matrix
product for every step's input projection, the recurrent product and gate
math per step, backpropagation through time that keeps the gate values of
the forward pass, and one matrix product per weight gradient over all
steps. Gate order and the GRU form (reset gate after the recurrent
product, update gate U with h_t = (1 - U) h_{t-1} + U n_t) are those of
lightnet_graph.cells, so both compute the same function.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from workloads import LEARNING_RATE, Perceptron, Recurrent

DTYPE = np.float32


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def _uniform(rng: np.random.Generator, bound: float, shape: tuple) -> np.ndarray:
    return rng.uniform(-bound, bound, shape).astype(DTYPE)


def _cross_entropy(
    logits: np.ndarray, labels: np.ndarray, divisor: int
) -> tuple[float, np.ndarray]:
    """Return (sum of row losses / divisor, gradient of that value)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = float((np.log(total[:, 0]) - shifted[rows, labels]).sum()) / divisor
    grad = exp / total
    grad[rows, labels] -= 1.0
    grad /= divisor
    return loss, grad


def recurrent_step(workload: Recurrent) -> Callable[[dict], float]:
    """Return step(feeds) -> loss for a character LSTM or GRU."""
    rng = np.random.default_rng(1)
    v, h = workload.vocab, workload.hidden
    gates = 4 if workload.cell == "lstm" else 3
    bound = 1.0 / np.sqrt(h)
    p = {
        "embedding": rng.standard_normal((v, h)).astype(DTYPE),
        "weight_ih": _uniform(rng, bound, (gates * h, h)),
        "weight_hh": _uniform(rng, bound, (gates * h, h)),
        "bias": _uniform(rng, bound, (gates * h,)),
        "readout.weight": _uniform(rng, np.sqrt(6.0 / (v + h)), (v, h)),
        "readout.bias": np.zeros(v, DTYPE),
    }
    if workload.cell == "gru":
        p["bias_hn"] = _uniform(rng, bound, (h,))
    through_time = _lstm_through_time if workload.cell == "lstm" else _gru_through_time

    def step(feeds: dict) -> float:
        tokens, targets = feeds["tokens"], feeds["targets"]
        steps, batch = tokens.shape
        x = p["embedding"][tokens].reshape(steps * batch, h)
        projected = (x @ p["weight_ih"].T + p["bias"]).reshape(steps, batch, -1)

        def readout(outputs: np.ndarray) -> tuple[float, np.ndarray, dict]:
            flat = outputs.reshape(steps * batch, h)
            logits = flat @ p["readout.weight"].T + p["readout.bias"]
            loss, d_logits = _cross_entropy(logits, targets.reshape(-1), batch)
            grads = {
                "readout.weight": d_logits.T @ flat,
                "readout.bias": d_logits.sum(axis=0),
            }
            return (
                loss,
                (d_logits @ p["readout.weight"]).reshape(steps, batch, h),
                grads,
            )

        loss, d_projected, grads = through_time(p, projected, readout)
        flat = d_projected.reshape(steps * batch, -1)
        grads["weight_ih"] = flat.T @ x
        grads["bias"] = flat.sum(axis=0)
        d_embedding = np.zeros_like(p["embedding"])
        np.add.at(d_embedding, tokens.reshape(-1), flat @ p["weight_ih"])
        grads["embedding"] = d_embedding
        for name, grad in grads.items():
            p[name] -= LEARNING_RATE * grad
        return loss

    return step


def _lstm_through_time(p: dict, projected: np.ndarray, readout) -> tuple:
    steps, batch, four_h = projected.shape
    h = four_h // 4
    hs = np.zeros((steps + 1, batch, h), DTYPE)
    cs = np.zeros((steps + 1, batch, h), DTYPE)
    acts = np.empty((steps, batch, four_h), DTYPE)
    tanh_c = np.empty((steps, batch, h), DTYPE)
    w_hh = p["weight_hh"]
    for t in range(steps):
        a = projected[t] + hs[t] @ w_hh.T
        acts[t, :, : 2 * h] = _sigmoid(a[:, : 2 * h])
        acts[t, :, 2 * h : 3 * h] = np.tanh(a[:, 2 * h : 3 * h])
        acts[t, :, 3 * h :] = _sigmoid(a[:, 3 * h :])
        i, f, g, o = np.split(acts[t], 4, axis=1)
        cs[t + 1] = f * cs[t] + i * g
        tanh_c[t] = np.tanh(cs[t + 1])
        hs[t + 1] = o * tanh_c[t]

    loss, d_outputs, grads = readout(hs[1:])
    d_pre = np.empty_like(acts)
    dh_next = np.zeros((batch, h), DTYPE)
    dc_next = np.zeros((batch, h), DTYPE)
    for t in reversed(range(steps)):
        i, f, g, o = np.split(acts[t], 4, axis=1)
        dh = d_outputs[t] + dh_next
        dc = dc_next + dh * o * (1.0 - tanh_c[t] ** 2)
        d_pre[t, :, :h] = dc * g * i * (1.0 - i)
        d_pre[t, :, h : 2 * h] = dc * cs[t] * f * (1.0 - f)
        d_pre[t, :, 2 * h : 3 * h] = dc * i * (1.0 - g * g)
        d_pre[t, :, 3 * h :] = dh * tanh_c[t] * o * (1.0 - o)
        dh_next = d_pre[t] @ w_hh
        dc_next = dc * f
    flat = d_pre.reshape(steps * batch, four_h)
    grads["weight_hh"] = flat.T @ hs[:-1].reshape(steps * batch, h)
    return loss, d_pre, grads


def _gru_through_time(p: dict, projected: np.ndarray, readout) -> tuple:
    steps, batch, three_h = projected.shape
    h = three_h // 3
    hs = np.zeros((steps + 1, batch, h), DTYPE)
    acts = np.empty((steps, batch, three_h), DTYPE)  # reset, update, candidate
    recurrent_n = np.empty((steps, batch, h), DTYPE)  # h W_hn^T + b_hn
    w_hh, b_hn = p["weight_hh"], p["bias_hn"]
    for t in range(steps):
        ph = hs[t] @ w_hh.T
        acts[t, :, : 2 * h] = _sigmoid(projected[t, :, : 2 * h] + ph[:, : 2 * h])
        recurrent_n[t] = ph[:, 2 * h :] + b_hn
        reset, update = acts[t, :, :h], acts[t, :, h : 2 * h]
        acts[t, :, 2 * h :] = np.tanh(projected[t, :, 2 * h :] + reset * recurrent_n[t])
        hs[t + 1] = hs[t] + update * (acts[t, :, 2 * h :] - hs[t])

    loss, d_outputs, grads = readout(hs[1:])
    d_projected = np.empty_like(acts)
    d_recurrent = np.empty_like(acts)
    dh_next = np.zeros((batch, h), DTYPE)
    for t in reversed(range(steps)):
        reset, update, n = np.split(acts[t], 3, axis=1)
        dh = d_outputs[t] + dh_next
        d_n = dh * update * (1.0 - n * n)
        d_update = dh * (n - hs[t]) * update * (1.0 - update)
        d_reset = d_n * recurrent_n[t] * reset * (1.0 - reset)
        d_projected[t, :, :h] = d_reset
        d_projected[t, :, h : 2 * h] = d_update
        d_projected[t, :, 2 * h :] = d_n
        d_recurrent[t, :, : 2 * h] = d_projected[t, :, : 2 * h]
        d_recurrent[t, :, 2 * h :] = d_n * reset
        dh_next = dh * (1.0 - update) + d_recurrent[t] @ w_hh
    flat = d_recurrent.reshape(steps * batch, three_h)
    grads["weight_hh"] = flat.T @ hs[:-1].reshape(steps * batch, h)
    grads["bias_hn"] = flat[:, 2 * h :].sum(axis=0)
    return loss, d_projected, grads


def perceptron_step(workload: Perceptron) -> Callable[[dict], float]:
    """Return step(feeds) -> loss for an MLP with ReLU hidden layers."""
    rng = np.random.default_rng(1)
    weights, biases = [], []
    for fan_in, fan_out in zip(workload.sizes, workload.sizes[1:], strict=False):
        weights.append(
            (rng.standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in)).astype(
                DTYPE
            )
        )
        biases.append(np.zeros(fan_out, DTYPE))

    def step(feeds: dict) -> float:
        activations = [feeds["x"]]
        for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
            y = activations[-1] @ w.T + b
            if k < len(weights) - 1:
                np.maximum(y, 0.0, out=y)
            activations.append(y)
        labels = feeds["labels"]
        loss, grad = _cross_entropy(activations[-1], labels, len(labels))
        for k in reversed(range(len(weights))):
            if k < len(weights) - 1:
                grad *= activations[k + 1] > 0
            d_input = grad @ weights[k] if k > 0 else None
            weights[k] -= LEARNING_RATE * (grad.T @ activations[k])
            biases[k] -= LEARNING_RATE * grad.sum(axis=0)
            grad = d_input
        return loss

    return step
