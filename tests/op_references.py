"""NumPy meanings of the ops, written independently of lightnet_graph.ops.kernels.

The op cases compare the library's outputs with these functions. They use
plain NumPy in float64, and batch_norm_reference also evaluates complex
inputs for complex-step derivatives.
"""

from __future__ import annotations

import numpy as np


def einsum_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("...ij,...jk->...ik", a, b)


def batch_norm_reference(x, gamma, beta, mean, var, *, momentum, eps, training):
    """Normalize ``x`` per feature (axis 1) as batch_norm does.

    Complex inputs work too, which the complex-step derivative needs.
    """
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if training:
        m = momentum
        mu = (1 - m) * x.mean(axis=axes, keepdims=True) + m * mean.reshape(shape)
        centered = x - mu
        sigma2 = (1 - m) * (centered * centered).mean(axis=axes, keepdims=True)
        sigma2 = sigma2 + m * var.reshape(shape)
    else:
        mu, sigma2 = mean.reshape(shape), var.reshape(shape)
    normalized = (x - mu) / np.sqrt(sigma2 + eps)
    return gamma.reshape(shape) * normalized + beta.reshape(shape)


def batch_norm_grad_reference(x, gamma, mean, var, dy, *, momentum, eps, training, wrt):
    """Compute the gradient of sum(dy * batch_norm) for ``wrt`` by complex step.

    The complex-step derivative Im f(v + ih) / h has no subtraction, so it
    is exact to rounding for h = 1e-30.
    """
    operands = {
        "x": x,
        "gamma": gamma,
        "beta": np.zeros_like(gamma),
        "mean": mean,
        "var": var,
    }
    gradient = np.empty(operands[wrt].shape)
    for index in np.ndindex(gradient.shape):
        perturbed = {name: value.astype(complex) for name, value in operands.items()}
        perturbed[wrt][index] += 1e-30j
        y = batch_norm_reference(
            **perturbed, momentum=momentum, eps=eps, training=training
        )
        gradient[index] = np.sum(dy * y).imag / 1e-30
    return gradient


def scatter_add_reference(
    indices: np.ndarray, values: np.ndarray, rows: int
) -> np.ndarray:
    result = np.zeros((rows,) + values.shape[indices.ndim :])
    for position in np.ndindex(indices.shape):
        result[indices[position]] += values[position]
    return result


def unslice_reference(
    x: np.ndarray, shape: tuple[int, ...], index: tuple
) -> np.ndarray:
    result = np.zeros(shape)
    result[index] = x
    return result


def sum_to_reference(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    lead = x.ndim - len(shape)
    summed = x.sum(axis=tuple(range(lead)))
    size_one_axes = tuple(i for i, d in enumerate(shape) if d == 1)
    return summed.sum(axis=size_one_axes, keepdims=True).reshape(shape)


def cross_entropy_reference(logits: np.ndarray, labels: np.ndarray, reduction: str):
    log_sum_exp = np.log(np.exp(logits).sum(axis=-1))
    picked = np.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    losses = log_sum_exp - picked
    return losses.mean() if reduction == "mean" else losses.sum()


def softmax_reference(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def rnn_reference(xs, h0, w_x, w_h, b):
    """Return every step's h_t = tanh(W_x x_t + b + W_h h_{t-1}), stacked along axis 0."""
    states = []
    h = h0
    for x_t in xs:
        h = np.tanh(
            np.einsum("bi,oi->bo", x_t, w_x) + b + np.einsum("bi,oi->bo", h, w_h)
        )
        states.append(h)
    return np.stack(states)
