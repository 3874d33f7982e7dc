"""Optimizers as update graphs that compile like any other graph.

``compile(loss=..., optimizer=Adam(2e-3))`` differentiates the loss, then
asks the optimizer to declare each parameter's update in the same graph, so
one compiled step computes the loss, the gradients and the new weights (on
the device, for device backends). Each update follows PyTorch's definition
of the optimizer of the same name, so runs can be compared step by step.

Optimizer state (moments, accumulators, the step count and the learning
rate) lives in graph states named ``optim.*``; a trainer changes the
learning rate between steps with ``program.set_states({"optim.lr": ...})``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from . import ops
from .graph import Graph, Tensor

LR_STATE = "optim.lr"
STEP_STATE = "optim.step"


class Optimizer:
    """Base class: global-norm clipping and the shared learning-rate state.

    ``clip_norm`` scales all gradients by max_norm / (norm + 1e-6) when
    their global 2-norm exceeds it, as torch.nn.utils.clip_grad_norm_ does.
    """

    def __init__(self, lr: float, clip_norm: float | None = None) -> None:
        if lr < 0:
            raise ValueError(f"learning rate {lr} must be non-negative")
        if clip_norm is not None and clip_norm <= 0:
            raise ValueError(f"clip_norm {clip_norm} must be positive")
        self.lr = float(lr)
        self.clip_norm = clip_norm

    def apply(self, graph: Graph, pairs: Sequence[tuple[Tensor, Tensor]]) -> None:
        """Declare the update of every (parameter, gradient) pair in ``graph``."""
        if not pairs:
            return
        dtype = pairs[0][0].dtype
        lr = graph.state(LR_STATE, (), init=self.lr, dtype=dtype)
        step = graph.state(STEP_STATE, (), init=0.0, dtype=dtype)
        t = step + 1.0
        graph.assign(step, t)
        gradients = [g for _, g in pairs]
        if self.clip_norm is not None:
            gradients = clip_by_global_norm(gradients, self.clip_norm)
        for (param, _), grad in zip(pairs, gradients, strict=True):
            graph.assign(param, self.update(graph, param, grad, lr, t))

    def update(
        self, graph: Graph, param: Tensor, grad: Tensor, lr: Tensor, t: Tensor
    ) -> Tensor:
        """Return the parameter's new value; ``t`` is the step count, from 1."""
        raise NotImplementedError

    def _state(
        self, graph: Graph, param: Tensor, what: str, init: float = 0.0
    ) -> Tensor:
        return graph.state(
            f"optim.{param.name}.{what}", param.shape, init=init, dtype=param.dtype
        )


def clip_by_global_norm(gradients: Sequence[Tensor], max_norm: float) -> list[Tensor]:
    """Scale ``gradients`` by min(1, max_norm / (norm + 1e-6)), norm over all of them."""
    total = None
    for g in gradients:
        squares = ops.sum(g * g)
        total = squares if total is None else total + squares
    coefficient = max_norm / (ops.sqrt(total) + 1e-6)
    # min(c, 1) written as c - relu(c - 1), from ops the registry already has.
    clamped = coefficient - ops.relu(coefficient - 1.0)
    return [g * clamped for g in gradients]


class SGD(Optimizer):
    """v = mu v + (g + wd p);  p = p - lr v  (PyTorch SGD without dampening)."""

    def __init__(
        self,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, clip_norm)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)

    def update(
        self, graph: Graph, param: Tensor, grad: Tensor, lr: Tensor, t: Tensor
    ) -> Tensor:
        if self.weight_decay:
            grad = grad + param * self.weight_decay
        if self.momentum:
            velocity = self._state(graph, param, "momentum")
            new_velocity = velocity * self.momentum + grad
            graph.assign(velocity, new_velocity)
            grad = new_velocity
        return param - lr * grad


class Adam(Optimizer):
    """PyTorch's Adam, and AdamW when ``decoupled`` (decoupled weight decay).

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    Weight decay adds wd p to g, or with ``decoupled`` first scales
    p by (1 - lr wd).
    """

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, clip_norm)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.decoupled = decoupled

    def update(
        self, graph: Graph, param: Tensor, grad: Tensor, lr: Tensor, t: Tensor
    ) -> Tensor:
        if self.weight_decay and self.decoupled:
            param = param * (1.0 - lr * self.weight_decay)
        elif self.weight_decay:
            grad = grad + param * self.weight_decay
        m = self._state(graph, param, "exp_avg")
        v = self._state(graph, param, "exp_avg_sq")
        new_m = m * self.beta1 + grad * (1.0 - self.beta1)
        new_v = v * self.beta2 + grad * grad * (1.0 - self.beta2)
        graph.assign(m, new_m)
        graph.assign(v, new_v)
        # b^t = exp(t ln b), from ops the registry already has.
        correction1 = 1.0 - ops.exp(t * math.log(self.beta1))
        correction2 = 1.0 - ops.exp(t * math.log(self.beta2))
        denominator = ops.sqrt(new_v) / ops.sqrt(correction2) + self.eps
        return param - (lr / correction1) * (new_m / denominator)


class RMSProp(Optimizer):
    """s = alpha s + (1 - alpha) g^2;  p = p - lr g / (sqrt(s) + eps)  (PyTorch RMSprop)."""

    def __init__(
        self,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, clip_norm)
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)

    def update(
        self, graph: Graph, param: Tensor, grad: Tensor, lr: Tensor, t: Tensor
    ) -> Tensor:
        if self.weight_decay:
            grad = grad + param * self.weight_decay
        square_avg = self._state(graph, param, "square_avg")
        new_avg = square_avg * self.alpha + grad * grad * (1.0 - self.alpha)
        graph.assign(square_avg, new_avg)
        return param - lr * grad / (ops.sqrt(new_avg) + self.eps)


class Adagrad(Optimizer):
    """s = s + g^2;  p = p - lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)  (PyTorch Adagrad)."""

    def __init__(
        self,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        eps: float = 1e-10,
        initial_accumulator_value: float = 0.0,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, clip_norm)
        self.lr_decay = float(lr_decay)
        self.eps = float(eps)
        self.initial = float(initial_accumulator_value)
        self.weight_decay = float(weight_decay)

    def update(
        self, graph: Graph, param: Tensor, grad: Tensor, lr: Tensor, t: Tensor
    ) -> Tensor:
        if self.weight_decay:
            grad = grad + param * self.weight_decay
        total = self._state(graph, param, "sum", init=self.initial)
        new_total = total + grad * grad
        graph.assign(total, new_total)
        rate = lr / ((t - 1.0) * self.lr_decay + 1.0)
        return param - rate * grad / (ops.sqrt(new_total) + self.eps)
