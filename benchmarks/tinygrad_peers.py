"""tinygrad training steps, on the device that $DEV names (CPU or CL).

Each step is one TinyJit function: after the first two calls tinygrad
replays the captured kernels. The LSTM and GRU compute every step's input
projection as one product and mark it and the states contiguous: without
that, tinygrad's scheduler recomputes earlier time steps inside later
kernels and one step takes over 15 s.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tinygrad import Context, Tensor, TinyJit
from tinygrad.nn.optim import SGD
from workloads import LEARNING_RATE, Perceptron, Recurrent


def _uniform(rng: np.random.Generator, bound: float, shape: tuple) -> Tensor:
    return Tensor(rng.uniform(-bound, bound, shape).astype(np.float32))


def _jit_step(
    params: list[Tensor], loss_of: Callable[[], Tensor]
) -> Callable[[dict], float]:
    optimizer = SGD(params, lr=LEARNING_RATE)

    @TinyJit
    def jitted() -> Tensor:
        optimizer.zero_grad()
        loss = loss_of()
        loss.backward()
        optimizer.step()
        return loss.realize()

    def step(feeds: dict) -> float:
        with Context(TRAINING=1):
            return float(jitted().item())

    return step


def recurrent_step(workload: Recurrent, feeds: dict) -> Callable[[dict], float]:
    rng = np.random.default_rng(1)
    v, h = workload.vocab, workload.hidden
    gates = 4 if workload.cell == "lstm" else 3
    bound = 1.0 / np.sqrt(h)
    embedding = Tensor(rng.standard_normal((v, h)).astype(np.float32))
    w_ih = _uniform(rng, bound, (gates * h, h))
    w_hh = _uniform(rng, bound, (gates * h, h))
    bias = _uniform(rng, bound, (gates * h,))
    w_out = _uniform(rng, np.sqrt(6.0 / (v + h)), (v, h))
    b_out = Tensor(np.zeros(v, np.float32))
    params = [embedding, w_ih, w_hh, bias, w_out, b_out]
    if workload.cell == "gru":
        b_hn = _uniform(rng, bound, (h,))
        params.append(b_hn)
    tokens = Tensor(feeds["tokens"].astype(np.int32))
    targets = Tensor(feeds["targets"].reshape(-1).astype(np.int32))
    steps, batch = feeds["tokens"].shape

    def loss_of() -> Tensor:
        projected = (embedding[tokens] @ w_ih.T + bias).contiguous()
        state = Tensor.zeros(batch, h).contiguous()
        cell = Tensor.zeros(batch, h).contiguous()
        outputs = []
        for t in range(steps):
            pre_h = state @ w_hh.T
            if workload.cell == "lstm":
                i, f, g, o = (projected[t] + pre_h).chunk(4, dim=1)
                cell = (f.sigmoid() * cell + i.sigmoid() * g.tanh()).contiguous()
                state = (o.sigmoid() * cell.tanh()).contiguous()
            else:
                xr, xu, xn = projected[t].chunk(3, dim=1)
                hr, hu, hn = pre_h.chunk(3, dim=1)
                reset = (xr + hr).sigmoid()
                update = (xu + hu).sigmoid()
                n = (xn + reset * (hn + b_hn)).tanh()
                state = (state + update * (n - state)).contiguous()
            outputs.append(state)
        logits = Tensor.stack(*outputs) @ w_out.T + b_out
        total = logits.reshape(-1, v).sparse_categorical_crossentropy(
            targets, reduction="sum"
        )
        return total / batch

    return _jit_step(params, loss_of)


def perceptron_step(workload: Perceptron, feeds: dict) -> Callable[[dict], float]:
    rng = np.random.default_rng(1)
    weights, biases = [], []
    for fan_in, fan_out in zip(workload.sizes, workload.sizes[1:], strict=False):
        scale = np.sqrt(2.0 / fan_in)
        weights.append(
            Tensor((rng.standard_normal((fan_out, fan_in)) * scale).astype(np.float32))
        )
        biases.append(Tensor(np.zeros(fan_out, np.float32)))
    x = Tensor(feeds["x"])
    labels = Tensor(feeds["labels"].astype(np.int32))

    def loss_of() -> Tensor:
        y = x
        for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
            y = y @ w.T + b
            if k < len(weights) - 1:
                y = y.relu()
        return y.sparse_categorical_crossentropy(labels)

    return _jit_step(weights + biases, loss_of)
