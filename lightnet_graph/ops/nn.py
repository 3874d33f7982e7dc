"""Neural-network ops: softmax, softmax cross-entropy and batch normalization."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import lightnet_graph.ops as F

from ..errors import DTypeError, ShapeError
from ..graph import INDEX_DTYPES, Tensor, TensorType
from .base import Op, apply, float_dtype, literal, normalize_axes, register


@register
class Softmax(Op):
    """y_i = e^(x_i - max x) / sum_j e^(x_j - max x) along ``axis``.

    Subtracting the max changes nothing mathematically and keeps e^x finite.
    With dy_i/dx_j = y_i (delta_ij - y_j):  dz/dx = y * (dy - sum(dy * y)).
    """

    name = "softmax"

    def __init__(self, axis: int = -1) -> None:
        self._set_attrs(axis=int(axis))

    def infer(self, x: TensorType) -> TensorType:
        float_dtype(self.name, x)
        (axis,) = normalize_axes(self.axis, x.ndim)
        self._set_attrs(axis=axis)
        return x

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"k.softmax({args[0]}, {self.axis}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        inner = F.sum(F.mul(dy, output), self.axis, keepdims=True)
        return [F.mul(output, F.sub(dy, inner))]


@register
class SoftmaxCrossEntropy(Op):
    """z = sum (or mean) over positions of log(sum_j e^(x_j)) - x_label.

    Logits have shape (..., C) and integer labels the leading shape (...).
    The log-sum-exp subtracts the max first, so equal logits of 1e8 give
    exactly ln 2 for two classes.  dz/dx = (softmax(x) - onehot(label)) * dz,
    divided by the number of positions for the mean.
    """

    name = "softmax_cross_entropy"
    arity = 2

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in ("sum", "mean"):
            raise ValueError(
                f"reduction {reduction!r} is not supported; use 'sum' or 'mean'"
            )
        self._set_attrs(reduction=reduction)

    def infer(self, logits: TensorType, labels: TensorType) -> TensorType:
        dtype = float_dtype(self.name, logits)
        if labels.dtype not in INDEX_DTYPES:
            raise DTypeError(
                f"labels have dtype {labels.dtype}; use int32 or int64 class indices"
            )
        if logits.ndim < 1 or labels.shape != logits.shape[:-1]:
            raise ShapeError(
                f"logits shape {logits.shape} and labels shape {labels.shape} do not "
                "match: labels must have the logits' shape without the last (class) axis"
            )
        return TensorType((), dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"k.softmax_cross_entropy({args[0]}, {args[1]}, {self.reduction!r}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        logits, labels = inputs
        target = F.one_hot(labels, logits.shape[-1], logits.dtype)
        grad = F.mul(F.sub(F.softmax(logits, -1), target), dy)
        if self.reduction == "mean":
            positions = int(np.prod(labels.shape, dtype=np.int64))
            grad = F.div(grad, float(max(positions, 1)))
        return [grad, None]


def _check_batch_norm(x: TensorType, *per_feature: TensorType) -> None:
    if x.ndim < 2:
        raise ShapeError(
            f"input shape {x.shape} needs a batch axis and a feature axis (N, C, ...)"
        )
    for t in per_feature:
        if t.shape != (x.shape[1],):
            raise ShapeError(
                f"per-feature operand shape {t.shape} must be ({x.shape[1]},), the "
                f"size of axis 1 of the input {x.shape}"
            )


@register
class BatchNorm(Op):
    """Batch normalization over every axis but axis 1 (features).

    Operands: x (N, C, ...), gamma (C), beta (C), and mean, var (C).  In
    training mode the normalizing statistics blend the batch with ``mean``
    and ``var`` (the previous step's statistics) by the momentum m:

        mu      = (1 - m) * mean_b(x) + m * mean
        sigma^2 = (1 - m) * mean_b((x - mu)^2) + m * var
        y       = gamma * (x - mu) / sqrt(sigma^2 + eps) + beta

    m = 0 is plain batch statistics, as in PyTorch's training mode.  In
    inference mode mu = mean and sigma^2 = var (the running statistics).
    The gradient is exact for every m: see BatchNormGrad.
    """

    name = "batch_norm"
    arity = 5

    def __init__(
        self, momentum: float = 0.0, eps: float = 1e-5, training: bool = True
    ) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"batch_norm momentum {momentum} must lie in [0, 1)")
        self._set_attrs(
            momentum=float(momentum), eps=float(eps), training=bool(training)
        )

    def infer(
        self,
        x: TensorType,
        gamma: TensorType,
        beta: TensorType,
        mean: TensorType,
        var: TensorType,
    ) -> TensorType:
        float_dtype(self.name, x, gamma, beta, mean, var)
        _check_batch_norm(x, gamma, beta, mean, var)
        return x

    def numpy(self, args: Sequence[str], out: str) -> str:
        return (
            f"k.batch_norm({', '.join(args)}, {literal(self.momentum)}, "
            f"{literal(self.eps)}, {self.training}, out={out})"
        )

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        x, gamma, _, mean, var = inputs
        grads = {}
        for wrt in ("x", "gamma", "beta", "mean", "var"):
            op = BatchNormGrad(self.momentum, self.eps, self.training, wrt)
            grads[wrt] = apply(op, x, gamma, mean, var, dy)
        return [grads["x"], grads["gamma"], grads["beta"], grads["mean"], grads["var"]]


@register
class BatchNormGrad(Op):
    """One operand's gradient of batch_norm, from x, gamma, mean, var and dy.

    With b the number of values per feature, d = x - mu, s = sqrt(sigma^2 + eps),
    G = sum dy, D = sum dy * d and S = sum d (sums over the batch axes), the
    exact training-mode derivatives are

        dz/dx     = gamma / s * (dy - k G - k D / s^2 * (d - k S)),  k = (1 - m) / b
        dz/dgamma = sum dy * d / s,   dz/dbeta = G
        dz/dmean  = gamma m (-G / s + (1 - m) D S / (b s^3))
        dz/dvar   = -gamma m D / (2 s^3)

    S is zero only when m = 0, which is why the textbook formula, which
    drops the k S term, is exact only there.  In inference mode
    dz/dx = gamma dy / s, dz/dmean = -gamma G / s, dz/dvar = -gamma D / (2 s^3).
    """

    name = "batch_norm_grad"
    arity = 5

    def __init__(self, momentum: float, eps: float, training: bool, wrt: str) -> None:
        if wrt not in ("x", "gamma", "beta", "mean", "var"):
            raise ValueError(
                f"batch_norm_grad wrt={wrt!r} is not an operand of batch_norm"
            )
        self._set_attrs(
            momentum=float(momentum), eps=float(eps), training=bool(training), wrt=wrt
        )

    def infer(
        self,
        x: TensorType,
        gamma: TensorType,
        mean: TensorType,
        var: TensorType,
        dy: TensorType,
    ) -> TensorType:
        float_dtype(self.name, x, gamma, mean, var, dy)
        _check_batch_norm(x, gamma, mean, var)
        return x if self.wrt == "x" else gamma

    def numpy(self, args: Sequence[str], out: str) -> str:
        return (
            f"k.batch_norm_grad({', '.join(args)}, {literal(self.momentum)}, "
            f"{literal(self.eps)}, {self.training}, {self.wrt!r}, out={out})"
        )

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        """Differentiate batch_norm, written out in elementwise ops, twice.

        The first derivative of that expression with respect to ``wrt`` is
        this op's value, and autodiff differentiates it once more.
        """
        # Imported here because the autodiff pass imports this module.
        from ..passes.autodiff import grad

        # stop_gradient copies cut each operand off from the values it was
        # computed from, so the rule returns partial derivatives even when
        # the incoming dy itself depends on x.
        x, gamma, mean, var, upstream = (F.stop_gradient(t) for t in inputs)
        beta = x.graph.constant(np.zeros(gamma.shape, gamma.dtype))
        y = _batch_norm_expression(
            x, gamma, beta, mean, var, self.momentum, self.eps, self.training
        )
        operands = {"x": x, "gamma": gamma, "beta": beta, "mean": mean, "var": var}
        (first,) = grad(y, [operands[self.wrt]], dy=upstream)
        return grad(first, [x, gamma, mean, var, upstream], dy=dy)


def _batch_norm_expression(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    mean: Tensor,
    var: Tensor,
    momentum: float,
    eps: float,
    training: bool,
) -> Tensor:
    """Declare batch_norm from reductions and elementwise ops.

    Autodiff can differentiate this form to any order. :class:`BatchNorm`
    gives the math.
    """
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mu = F.reshape(mean, shape)
    sigma2 = F.reshape(var, shape)
    if training:
        batch_mean = F.mean(x, axes, keepdims=True)
        mu = F.add(F.mul(batch_mean, 1.0 - momentum), F.mul(mu, momentum))
        centered = F.sub(x, mu)
        batch_var = F.mean(F.mul(centered, centered), axes, keepdims=True)
        sigma2 = F.add(F.mul(batch_var, 1.0 - momentum), F.mul(sigma2, momentum))
    normalized = F.div(F.sub(x, mu), F.sqrt(F.add(sigma2, eps)))
    return F.add(F.mul(F.reshape(gamma, shape), normalized), F.reshape(beta, shape))


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return apply(Softmax(axis), x)


def softmax_cross_entropy(
    logits: Tensor, labels: Tensor, reduction: str = "mean"
) -> Tensor:
    return apply(SoftmaxCrossEntropy(reduction), logits, labels)


def batch_norm(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    mean: Tensor,
    var: Tensor,
    momentum: float = 0.0,
    eps: float = 1e-5,
    training: bool = True,
) -> Tensor:
    """Normalize ``x`` per feature; see :class:`BatchNorm` for the math."""
    return apply(BatchNorm(momentum, eps, training), x, gamma, beta, mean, var)
