"""Layers that declare their own parameters and states in a graph."""

from __future__ import annotations

import os

from . import ops
from .graph import Graph, Tensor, mark_internal

mark_internal(os.path.abspath(__file__))


def batch_norm(
    graph: Graph,
    x: Tensor,
    name: str,
    momentum: float = 0.0,
    eps: float = 1e-5,
    rho: float = 0.1,
    training: bool = True,
) -> Tensor:
    """Declare a batch-norm layer over axis 1 of ``x`` and return its output.

    ``momentum`` (m) blends the previous step's normalizing statistics into
    this step's (m = 0 uses the batch alone, as PyTorch does). The layer also
    keeps running statistics for inference, updated as PyTorch does:
    running = (1 - rho) * running + rho * batch statistic, with the unbiased
    batch variance. With m = 0 the layer is PyTorch's BatchNorm, and
    rho = 1 - m keeps the running mean equal to the blended one.
    """
    features = x.shape[1]
    gamma = graph.parameter(f"{name}.weight", (features,), init=1.0, dtype=x.dtype)
    beta = graph.parameter(f"{name}.bias", (features,), dtype=x.dtype)
    running_mean = graph.state(f"{name}.running_mean", (features,), dtype=x.dtype)
    running_var = graph.state(
        f"{name}.running_var", (features,), init=1.0, dtype=x.dtype
    )
    if not training:
        return ops.batch_norm(
            x, gamma, beta, running_mean, running_var, momentum, eps, False
        )

    axes = (0,) + tuple(range(2, x.ndim))
    count = _count(x)
    batch_mean = ops.mean(x, axes)
    centered = x - ops.reshape(batch_mean, _per_feature_shape(x))
    batch_var = ops.sum(centered * centered, axes) / float(max(count - 1, 1))
    graph.assign(running_mean, running_mean * (1.0 - rho) + batch_mean * rho)
    graph.assign(running_var, running_var * (1.0 - rho) + batch_var * rho)

    if momentum == 0.0:
        return ops.batch_norm(x, gamma, beta, running_mean, running_var, 0.0, eps, True)
    # The blended statistics are a second pair of states, carried step to step.
    prev_mean = graph.state(f"{name}.blend_mean", (features,), dtype=x.dtype)
    prev_var = graph.state(f"{name}.blend_var", (features,), init=1.0, dtype=x.dtype)
    mu = batch_mean * (1.0 - momentum) + ops.stop_gradient(prev_mean) * momentum
    shifted = x - ops.reshape(mu, _per_feature_shape(x))
    sigma2 = ops.mean(shifted * shifted, axes) * (1.0 - momentum) + prev_var * momentum
    graph.assign(prev_mean, ops.stop_gradient(mu))
    graph.assign(prev_var, ops.stop_gradient(sigma2))
    return ops.batch_norm(x, gamma, beta, prev_mean, prev_var, momentum, eps, True)


def _per_feature_shape(x: Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _count(x: Tensor) -> int:
    total = 1
    for d in x.shape:
        total *= d
    return total // x.shape[1]
