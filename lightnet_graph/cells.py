"""Recurrent cells: RNN with skip links, GRU and LSTM.

Each cell is a step function for :func:`lightnet_graph.recurrence`, written
with the public ops exactly as a user-defined cell would be, plus the shapes
and initializers of its parameters. The helpers :func:`rnn`, :func:`gru` and
:func:`lstm` declare the parameters in the graph of the input sequence,
stack layers (each layer's outputs are the next layer's inputs) and return
the last layer's outputs with every layer's final states.

Weights follow PyTorch's layout: the gates of a cell are stacked along axis
0 of one input weight ``weight_ih`` (G*H, I) and one recurrent weight
``weight_hh`` (G*H, H), and ``x W^T`` multiplies a batch of rows. A single
``bias`` (G*H,) stands for PyTorch's ``bias_ih + bias_hh`` wherever their
sum is all that matters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import init, ops
from .graph import Graph, Tensor
from .recurrence import recurrence

Activation = str | Callable[[Tensor], Tensor]
_ACTIVATIONS = {"tanh": ops.tanh, "relu": ops.relu, "sigmoid": ops.sigmoid}


def activation_function(activation: Activation) -> Callable[[Tensor], Tensor]:
    """Return the op for an activation name ('tanh', 'relu', 'sigmoid') or callable."""
    if callable(activation):
        return activation
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"activation {activation!r} is not supported; use one of "
            f"{sorted(_ACTIVATIONS)} or a function of one Tensor"
        )
    return _ACTIVATIONS[activation]


class Cell:
    """A step function with the parameters it reads.

    Subclasses set ``state_names`` and ``gates`` (how many H-row blocks the
    stacked weights have) and implement :meth:`step`.
    """

    state_names: tuple[str, ...] = ("h",)
    gates = 1

    def __init__(self, input_size: int, hidden_size: int) -> None:
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Return the shape of every parameter the step reads, by key."""
        rows = self.gates * self.hidden_size
        return {
            "weight_ih": (rows, self.input_size),
            "weight_hh": (rows, self.hidden_size),
            "bias": (rows,),
        }

    def declare(
        self, graph: Graph, name: str, rng: np.random.Generator, dtype: Any = None
    ) -> dict[str, Tensor]:
        """Declare the parameters as ``NAME.KEY`` in ``graph``; return them by key.

        Every entry starts from U(-1/sqrt(H), 1/sqrt(H)), the initialization
        of PyTorch's nn.RNN, nn.GRU and nn.LSTM.
        """
        bound = 1.0 / math.sqrt(self.hidden_size)
        dtype = np.dtype(dtype or graph.dtype)
        return {
            key: graph.parameter(
                f"{name}.{key}",
                init=init.uniform(bound)(rng, shape, dtype),
                dtype=dtype,
            )
            for key, shape in self.parameter_shapes().items()
        }

    def zeros(
        self, graph: Graph, batch: int, name: str, dtype: Any = None
    ) -> tuple[Tensor, ...]:
        """Declare constant zero initial states of shape (batch, H)."""
        zero = np.zeros((batch, self.hidden_size), np.dtype(dtype or graph.dtype))
        return tuple(
            graph.constant(zero, name=f"{name}.{s}_init") for s in self.state_names
        )

    def step(
        self, params: dict[str, Tensor], state: tuple[Tensor, ...], x: Tensor
    ) -> tuple[tuple[Tensor, ...], Tensor]:
        raise NotImplementedError

    def __call__(
        self, params: dict[str, Tensor], state: tuple[Tensor, ...], x: Tensor
    ) -> tuple[tuple[Tensor, ...], Tensor]:
        return self.step(params, state, x)

    def _gate(self, value: Tensor, index: int) -> Tensor:
        """Return block ``index`` (H columns) of a (batch, G*H) pre-activation."""
        h = self.hidden_size
        return value[:, index * h : (index + 1) * h]


class RNN(Cell):
    """An RNN with skip links (lambda), standard for lambda = 0.

        dh_t = f_h(W_hh h_{t-1} + W_ih x_t + b)
        h_t  = lambda h_{t-1} + dh_t,   y_t = h_t

    lambda = 1 adds an identity skip link from h_{t-1} to h_t; lambda is any
    real number.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        skip: float = 0.0,
        activation: Activation = "tanh",
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.skip = float(skip)
        self.activation = activation_function(activation)

    def step(self, params, state, x):
        (h,) = state
        pre = ops.linear(x, params["weight_ih"], params["bias"]) + ops.linear(
            h, params["weight_hh"]
        )
        delta = self.activation(pre)
        if self.skip == 0.0:
            h_new = delta
        elif self.skip == 1.0:
            h_new = h + delta
        else:
            h_new = h * self.skip + delta
        return (h_new,), h_new


class GRU(Cell):
    """A gated recurrent unit with update gate U and reset gate R.

        U_t  = sigmoid(W_uh h_{t-1} + W_ux x_t + b_u)
        R_t  = sigmoid(W_rh h_{t-1} + W_rx x_t + b_r)
        dh_t = f_h(W_hh (R_t * h_{t-1}) + W_hx x_t + b_h)          (reset before)
        dh_t = f_h(R_t * (W_hh h_{t-1} + b_hn) + W_hx x_t + b_h)   (reset_after)
        h_t  = (1 - U_t) * h_{t-1} + U_t * dh_t,   y_t = h_t

    The reset-before form is the default. ``reset_after=True`` is the form of
    PyTorch's nn.GRU, cuDNN and ONNX's linear_before_reset=1, with its own
    recurrent bias ``bias_hn`` inside the reset product. PyTorch's update
    gate is z = 1 - U: map its weights by negating the z rows and biases.
    Stacked rows are ordered reset, update, candidate (PyTorch's r, z, n).
    """

    gates = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        reset_after: bool = False,
        activation: Activation = "tanh",
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.reset_after = bool(reset_after)
        self.activation = activation_function(activation)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = super().parameter_shapes()
        if self.reset_after:
            shapes["bias_hn"] = (self.hidden_size,)
        return shapes

    def step(self, params, state, x):
        (h,) = state
        hidden = self.hidden_size
        pre_x = ops.linear(x, params["weight_ih"], params["bias"])
        w_hh = params["weight_hh"]
        if self.reset_after:
            pre_h = ops.linear(h, w_hh)
            reset = ops.sigmoid(self._gate(pre_x, 0) + self._gate(pre_h, 0))
            update = ops.sigmoid(self._gate(pre_x, 1) + self._gate(pre_h, 1))
            recurrent = (self._gate(pre_h, 2) + params["bias_hn"]) * reset
        else:
            pre_h = ops.linear(h, w_hh[: 2 * hidden])
            reset = ops.sigmoid(self._gate(pre_x, 0) + self._gate(pre_h, 0))
            update = ops.sigmoid(self._gate(pre_x, 1) + self._gate(pre_h, 1))
            recurrent = ops.linear(reset * h, w_hh[2 * hidden :])
        candidate = self.activation(self._gate(pre_x, 2) + recurrent)
        h_new = (1.0 - update) * h + update * candidate
        return (h_new,), h_new


class LSTM(Cell):
    """A long short-term memory cell with input, forget and output gates.

        i_t = sigmoid(W_ih h_{t-1} + W_ix x_t + b_i)
        f_t = sigmoid(W_fh h_{t-1} + W_fx x_t + b_f)
        g_t = tanh(W_gh h_{t-1} + W_gx x_t + b_g)
        o_t = sigmoid(W_oh h_{t-1} + W_ox x_t + b_o)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t),   y_t = h_t

    Stacked rows are ordered i, f, g, o, as in PyTorch's nn.LSTM.
    """

    state_names = ("h", "c")
    gates = 4

    def step(self, params, state, x):
        h, c = state
        pre = ops.linear(x, params["weight_ih"], params["bias"]) + ops.linear(
            h, params["weight_hh"]
        )
        i = ops.sigmoid(self._gate(pre, 0))
        f = ops.sigmoid(self._gate(pre, 1))
        g = ops.tanh(self._gate(pre, 2))
        o = ops.sigmoid(self._gate(pre, 3))
        c_new = f * c + i * g
        h_new = o * ops.tanh(c_new)
        return (h_new, c_new), h_new


LayerStates = tuple[Tensor, ...]


def stack(
    cells: Sequence[Cell],
    xs: Tensor,
    *,
    name: str,
    initial_states: Sequence[LayerStates | None] | None = None,
    outputs: str = "all",
    seed: int | None = None,
) -> tuple[Tensor, list[LayerStates]]:
    """Run ``cells`` as layers over ``xs`` (T, batch, I); return (outputs, states).

    Layer k's parameters are named ``NAME.KEY`` for a single layer and
    ``NAME.lK.KEY`` otherwise, and so is the recurrence (``NAME.h@t`` is
    the state after step t). ``initial_states`` has one tuple per layer, or
    None for zeros. ``seed`` draws the initial weights from a generator of
    their own instead of the graph's. The result's outputs are the last
    layer's; ``outputs="last"`` keeps only its last step. The states list
    has each layer's final states, in the order of ``Cell.state_names``.
    """
    if xs.ndim != 3:
        raise ValueError(
            f"{name}: xs has shape {xs.shape}; a cell needs (T, batch, features)"
        )
    graph = xs.graph
    rng = graph.rng if seed is None else np.random.default_rng(seed)
    if initial_states is None:
        initial_states = [None] * len(cells)
    if len(initial_states) != len(cells):
        raise ValueError(
            f"{name}: {len(initial_states)} initial-state tuples for {len(cells)} layers"
        )
    finals: list[LayerStates] = []
    layer_input = xs
    for k, (cell, initial) in enumerate(zip(cells, initial_states, strict=True)):
        layer = name if len(cells) == 1 else f"{name}.l{k}"
        params = cell.declare(graph, layer, rng, dtype=xs.dtype)
        if initial is None:
            initial = cell.zeros(graph, xs.shape[1], layer, dtype=xs.dtype)
        last = k == len(cells) - 1
        layer_input, states = recurrence(
            cell,
            layer_input,
            tuple(initial),
            params,
            name=layer,
            outputs=outputs if last else "all",
            state_names=cell.state_names,
        )
        finals.append(states)
    return layer_input, finals


def rnn(
    xs: Tensor,
    hidden: int,
    *,
    name: str = "rnn",
    skip: float = 0.0,
    activation: Activation = "tanh",
    layers: int = 1,
    **options: Any,
) -> tuple[Tensor, list[LayerStates]]:
    """Declare an RNN with skip factor ``skip`` (lambda) over ``xs``; see :func:`stack`."""
    cells = _layers(
        lambda size: RNN(size, hidden, skip, activation), xs, hidden, layers
    )
    return stack(cells, xs, name=name, **options)


def gru(
    xs: Tensor,
    hidden: int,
    *,
    name: str = "gru",
    reset_after: bool = False,
    activation: Activation = "tanh",
    layers: int = 1,
    **options: Any,
) -> tuple[Tensor, list[LayerStates]]:
    """Declare a GRU over ``xs``; see :class:`GRU` and :func:`stack`."""
    cells = _layers(
        lambda size: GRU(size, hidden, reset_after, activation), xs, hidden, layers
    )
    return stack(cells, xs, name=name, **options)


def lstm(
    xs: Tensor,
    hidden: int,
    *,
    name: str = "lstm",
    layers: int = 1,
    **options: Any,
) -> tuple[Tensor, list[LayerStates]]:
    """Declare an LSTM over ``xs``; see :class:`LSTM` and :func:`stack`."""
    cells = _layers(lambda size: LSTM(size, hidden), xs, hidden, layers)
    return stack(cells, xs, name=name, **options)


def _layers(
    make: Callable[[int], Cell], xs: Tensor, hidden: int, layers: int
) -> list[Cell]:
    if layers < 1:
        raise ValueError(
            f"layers={layers}; a recurrent network needs at least one layer"
        )
    return [make(xs.shape[-1] if k == 0 else hidden) for k in range(layers)]


def sequence_cross_entropy(
    logits: Tensor, targets: Tensor, over_steps: str = "sum"
) -> Tensor:
    """Return the softmax cross-entropy of a sequence, z = sum over t of z_t.

    ``logits`` (T, batch, C) and integer ``targets`` (T, batch). z_t is the
    mean over the batch of step t's loss; ``over_steps="sum"`` adds the
    steps up, and ``"mean"`` divides that sum by T.
    """
    if over_steps not in ("sum", "mean"):
        raise ValueError(f"over_steps={over_steps!r}; use 'sum' or 'mean'")
    if targets.ndim < 2:
        raise ValueError(f"targets have shape {targets.shape}; expected (T, batch)")
    steps = targets.shape[0]
    per_step = int(np.prod(targets.shape[1:], dtype=np.int64))
    divisor = per_step * (steps if over_steps == "mean" else 1)
    total = ops.softmax_cross_entropy(logits, targets, "sum")
    return total / float(max(divisor, 1))
