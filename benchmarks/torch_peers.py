"""PyTorch CPU eager training steps: nn.LSTM, nn.GRU, nn.Sequential, and a cell loop.

The "nn" peers use PyTorch's fused recurrent modules, which compute every
step's input projection as one product. The "cells" peers write the cell
per step as a user would without those modules: two products, the bias
and the gate math at every step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F
from workloads import LEARNING_RATE, Perceptron, Recurrent


class CellLoop(nn.Module):
    """An LSTM or GRU layer written as a Python loop over the time steps."""

    def __init__(self, cell: str, hidden: int) -> None:
        super().__init__()
        gates = 4 if cell == "lstm" else 3
        bound = hidden**-0.5
        self.cell = cell
        self.weight_ih = nn.Parameter(
            torch.empty(gates * hidden, hidden).uniform_(-bound, bound)
        )
        self.weight_hh = nn.Parameter(
            torch.empty(gates * hidden, hidden).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(gates * hidden).uniform_(-bound, bound))
        if cell == "gru":
            self.bias_hn = nn.Parameter(torch.empty(hidden).uniform_(-bound, bound))

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        steps, batch, hidden = xs.shape
        h = xs.new_zeros(batch, hidden)
        c = xs.new_zeros(batch, hidden)
        outputs = []
        for t in range(steps):
            pre_x = xs[t] @ self.weight_ih.T + self.bias
            pre_h = h @ self.weight_hh.T
            if self.cell == "lstm":
                i, f, g, o = (pre_x + pre_h).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                xr, xu, xn = pre_x.chunk(3, dim=1)
                hr, hu, hn = pre_h.chunk(3, dim=1)
                reset = torch.sigmoid(xr + hr)
                update = torch.sigmoid(xu + hu)
                n = torch.tanh(xn + reset * (hn + self.bias_hn))
                h = h + update * (n - h)
            outputs.append(h)
        return torch.stack(outputs)


class CharModel(nn.Module):
    def __init__(self, workload: Recurrent, fused: bool) -> None:
        super().__init__()
        v, h = workload.vocab, workload.hidden
        self.embedding = nn.Embedding(v, h)
        if not fused:
            self.layer = CellLoop(workload.cell, h)
        elif workload.cell == "lstm":
            self.layer = nn.LSTM(h, h)
        else:
            self.layer = nn.GRU(h, h)
        self.readout = nn.Linear(h, v)
        self.fused = fused

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        outputs = self.layer(self.embedding(tokens))
        if self.fused:
            outputs = outputs[0]
        return self.readout(outputs)


def _training_step(model: nn.Module, loss_of: Callable) -> Callable[[dict], float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)

    def step(feeds: dict) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(model, feeds)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def recurrent_step(workload: Recurrent, fused: bool) -> Callable[[dict], float]:
    torch.manual_seed(1)
    model = CharModel(workload, fused)
    cache: dict = {}

    def loss_of(model: nn.Module, feeds: dict) -> torch.Tensor:
        if "tokens" not in cache:
            cache["tokens"] = torch.from_numpy(feeds["tokens"])
            cache["targets"] = torch.from_numpy(feeds["targets"]).reshape(-1)
        logits = model(cache["tokens"])
        total = F.cross_entropy(
            logits.reshape(-1, workload.vocab), cache["targets"], reduction="sum"
        )
        return total / workload.batch

    return _training_step(model, loss_of)


def perceptron_step(workload: Perceptron) -> Callable[[dict], float]:
    torch.manual_seed(1)
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(workload.sizes, workload.sizes[1:], strict=False):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    cache: dict = {}

    def loss_of(model: nn.Module, feeds: dict) -> torch.Tensor:
        if "x" not in cache:
            cache["x"] = torch.from_numpy(feeds["x"])
            cache["labels"] = torch.from_numpy(feeds["labels"])
        return F.cross_entropy(model(cache["x"]), cache["labels"])

    return _training_step(model, loss_of)
