"""NumPy kernels for ops that are more than one NumPy call.

These functions are the NumPy meaning of their ops: op templates call them
as ``k.name(...)``, and the generated NumPy module imports this file under
the same name. Each takes ``out=`` (``None`` allocates) so the generated code
can write into preallocated buffers.
"""

from __future__ import annotations

import numpy as np


def _into(out: np.ndarray | None, value: np.ndarray) -> np.ndarray:
    if out is None:
        return value
    np.copyto(out, value, casting="same_kind")
    return out


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + e^-x), saturating to exactly 0 or 1.

    Below x = -88.7 (float32) or -709.8 (float64) e^-x overflows to inf and
    the result is exactly 0, although the true value is a subnormal number
    there. The overflow warning is silenced because that is the intended
    limit. Elsewhere the relative error is that of exp and one division.
    Four in-place passes with no temporary arrays take about two thirds of
    the time of the e^-|x| form that picks each branch with np.where (10
    against 15.6 us on a float32 32 x 256 slice, 2-core AMD EPYC).
    """
    # out= keeps 0-d values arrays, so the steps below can work in place.
    result = np.empty_like(x) if out is None else out
    with np.errstate(over="ignore"):
        np.negative(x, out=result)
        np.exp(result, out=result)
    np.add(result, x.dtype.type(1), out=result)
    return np.reciprocal(result, out=result)


def cast(x: np.ndarray, dtype: np.dtype, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return x.astype(dtype)
    np.copyto(out, x, casting="unsafe")
    return out


def leaky_relu(
    x: np.ndarray, alpha: float, out: np.ndarray | None = None
) -> np.ndarray:
    return _into(out, np.where(x > 0, x, x * x.dtype.type(alpha)))


def step(x: np.ndarray, low: float, out: np.ndarray | None = None) -> np.ndarray:
    """1 where x > 0, ``low`` elsewhere: the derivative of (leaky) ReLU."""
    if low == 0 and out is not None:
        # Writing the comparison's booleans as 0 and 1 is one pass, many
        # times faster than np.where.
        return np.greater(x, 0, out=out)
    return _into(out, np.where(x > 0, x.dtype.type(1), x.dtype.type(low)))


def equal(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return _into(out, np.equal(a, b).astype(np.result_type(a, b)))


def sum_to(
    x: np.ndarray, shape: tuple[int, ...], out: np.ndarray | None = None
) -> np.ndarray:
    """Sum ``x`` over the axes that broadcasting ``shape`` to ``x.shape`` added."""
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and x.shape[lead + i] != 1
    )
    value = np.sum(x, axis=axes, keepdims=True) if axes else x
    return _into(out, value.reshape(shape))


def softmax(x: np.ndarray, axis: int, out: np.ndarray | None = None) -> np.ndarray:
    """e^(x - max) / sum e^(x - max) along ``axis``; subtracting the max avoids overflow."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return _into(out, e / np.sum(e, axis=axis, keepdims=True))


def check_labels(labels: np.ndarray, classes: int) -> None:
    """Raise ValueError naming the first label outside [0, classes)."""
    bad = (labels < 0) | (labels >= classes)
    if np.any(bad):
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"label {int(labels[position])} at index {position} is out of range "
            f"for {classes} classes; labels must lie in [0, {classes - 1}]"
        )


def softmax_cross_entropy(
    logits: np.ndarray,
    labels: np.ndarray,
    reduction: str,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """-log softmax(logits)[label] = logsumexp(logits) - logits[label].

    The log-sum-exp subtracts the row max first, so logits of 1e8 stay finite.
    """
    classes = logits.shape[-1]
    check_labels(labels, classes)
    top = np.max(logits, axis=-1, keepdims=True)
    shifted = logits - top
    picked = np.take_along_axis(shifted, labels[..., None].astype(np.intp), axis=-1)[
        ..., 0
    ]
    # Both terms stay relative to the max, because adding the max back to the
    # log-sum-exp would round ln 2 away next to logits of 1e8.
    losses = np.log(np.sum(np.exp(shifted), axis=-1)) - picked
    total = np.sum(losses)
    if reduction == "mean":
        total = total / max(losses.size, 1)
    return _into(out, np.asarray(total, dtype=logits.dtype))


def one_hot(
    indices: np.ndarray, depth: int, dtype: np.dtype, out: np.ndarray | None = None
) -> np.ndarray:
    check_labels(indices, depth)
    value = (indices[..., None] == np.arange(depth)).astype(dtype)
    return _into(out, value)


def gather(
    table: np.ndarray, indices: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    check_labels(indices, table.shape[0])
    return np.take(table, indices, axis=0, out=out)


def scatter_add(
    indices: np.ndarray, values: np.ndarray, rows: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Zeros of shape (rows, ...) with each ``values`` slice added at its index row.

    The slices are sorted by row (stably, so each row adds its slices in
    their original order) and each row's run is summed with one reduceat,
    about twice as fast as np.add.at on embedding gradients.
    """
    if out is None:
        out = np.zeros((rows,) + values.shape[indices.ndim :], values.dtype)
    else:
        out.fill(0)
    # Negative indices count from the end, as in NumPy; making them positive
    # puts both spellings of a row in one run.
    flat = indices.reshape(-1)
    flat = np.where(flat < 0, flat + rows, flat)
    if flat.size == 0:
        return out
    order = np.argsort(flat, kind="stable")
    sorted_rows = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    slices = values.reshape((flat.size,) + values.shape[indices.ndim :])[order]
    out[sorted_rows[starts]] = np.add.reduceat(slices, starts, axis=0)
    return out


def unslice(
    values: np.ndarray,
    shape: tuple[int, ...],
    index: tuple,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Zeros of ``shape`` with ``values`` written at ``index``."""
    if out is None:
        out = np.zeros(shape, values.dtype)
    else:
        out.fill(0)
    out[index] = values
    return out


def assemble(
    values: tuple[np.ndarray, ...],
    shape: tuple[int, ...],
    indices: tuple[tuple, ...],
    exact_cover: bool,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Zeros of ``shape`` with each of ``values`` added at its index.

    ``exact_cover`` promises that the indices are disjoint and cover every
    element: then each value is copied into place and nothing is zeroed.
    """
    if out is None:
        out = np.empty(shape, np.result_type(*values))
    if exact_cover:
        for value, index in zip(values, indices, strict=True):
            out[index] = value
        return out
    out.fill(0)
    for value, index in zip(values, indices, strict=True):
        out[index] += value
    return out


def _bn_axes(x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    count = x.size // x.shape[1]
    return axes, shape, count


def batch_norm_statistics(
    x: np.ndarray, prev_mean: np.ndarray, prev_var: np.ndarray, momentum: float
) -> tuple[np.ndarray, np.ndarray]:
    """The normalizing mean and variance of training mode, kept as (1, C, ...)."""
    axes, shape, _ = _bn_axes(x)
    m = x.dtype.type(momentum)
    mean = (1 - m) * np.mean(x, axis=axes, keepdims=True) + m * prev_mean.reshape(shape)
    centered = x - mean
    var = (1 - m) * np.mean(
        centered * centered, axis=axes, keepdims=True
    ) + m * prev_var.reshape(shape)
    return mean, var


def batch_norm(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    momentum: float,
    eps: float,
    training: bool,
    out: np.ndarray | None = None,
) -> np.ndarray:
    axes, shape, _ = _bn_axes(x)
    if training:
        mu, sigma2 = batch_norm_statistics(x, mean, var, momentum)
    else:
        mu, sigma2 = mean.reshape(shape), var.reshape(shape)
    xhat = (x - mu) / np.sqrt(sigma2 + x.dtype.type(eps))
    return _into(out, gamma.reshape(shape) * xhat + beta.reshape(shape))


def batch_norm_grad(
    x: np.ndarray,
    gamma: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    dy: np.ndarray,
    momentum: float,
    eps: float,
    training: bool,
    wrt: str,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The gradient of batch_norm with respect to one operand; see BatchNormGrad."""
    axes, shape, b = _bn_axes(x)
    dt = x.dtype.type
    if training:
        mu, sigma2 = batch_norm_statistics(x, mean, var, momentum)
    else:
        mu, sigma2 = mean.reshape(shape), var.reshape(shape)
    s = np.sqrt(sigma2 + dt(eps))
    d = x - mu
    g = gamma.reshape(shape)
    if wrt == "gamma":
        value = np.sum(dy * d / s, axis=axes)
    elif wrt == "beta":
        value = np.sum(dy, axis=axes)
    elif not training:
        if wrt == "x":
            value = dy * g / s
        elif wrt == "mean":
            value = -np.sum(dy, axis=axes) * gamma / s.reshape(-1)
        else:
            value = -0.5 * gamma * np.sum(dy * d, axis=axes) / (s.reshape(-1) ** 3)
    else:
        m = dt(momentum)
        k = (1 - m) / dt(b)
        big_g = np.sum(dy, axis=axes, keepdims=True)
        big_d = np.sum(dy * d, axis=axes, keepdims=True)
        big_s = np.sum(d, axis=axes, keepdims=True)
        if wrt == "x":
            value = g / s * (dy - k * big_g - k * big_d / (s * s) * (d - k * big_s))
        elif wrt == "mean":
            value = (
                g * m * (-big_g / s + big_d * (1 - m) * big_s / (dt(b) * s**3))
            ).reshape(-1)
        else:
            value = (-g * m * big_d / (2 * s**3)).reshape(-1)
    return _into(out, np.asarray(value, dtype=x.dtype))
