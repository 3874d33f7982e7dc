"""Matrix products, reductions and broadcasting."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

import lightnet_graph.ops as F

from ..errors import ShapeError
from ..graph import Tensor, TensorType
from .base import Op, apply, float_dtype, normalize_axes, register


def _swap_last(x: Tensor) -> Tensor:
    perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return F.transpose(x, perm)


@register
class MatMul(Op):
    """y = a @ b over the last two axes; leading axes broadcast as in NumPy.

    dz/da = sum_to(dy @ b^T, a.shape), dz/db = sum_to(a^T @ dy, b.shape),
    where ^T swaps the last two axes.
    """

    name = "matmul"
    arity = 2

    def infer(self, a: TensorType, b: TensorType) -> TensorType:
        dtype = float_dtype(self.name, a, b)
        if a.ndim < 2 or b.ndim < 2:
            raise ShapeError(
                f"shapes {a.shape} and {b.shape}: both operands need at least two "
                "axes; reshape a vector to (1, n) or (n, 1)"
            )
        if a.shape[-1] != b.shape[-2]:
            raise ShapeError(
                f"shapes {a.shape} and {b.shape} do not match: the last axis of a "
                f"({a.shape[-1]}) must equal the second-to-last axis of b ({b.shape[-2]})"
            )
        try:
            batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ShapeError(
                f"shapes {a.shape} and {b.shape}: the leading (batch) axes "
                f"{a.shape[:-2]} and {b.shape[:-2]} do not broadcast"
            ) from None
        return TensorType(tuple(batch) + (a.shape[-2], b.shape[-1]), dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"np.matmul({args[0]}, {args[1]}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        a, b = inputs
        da = F.sum_to(F.matmul(dy, _swap_last(b)), a.shape)
        db = F.sum_to(F.matmul(_swap_last(a), dy), b.shape)
        return [da, db]


@register
class Linear(Op):
    """y = x W^T + b for x of shape (..., in), W (out, in) and b (out,).

    This is y = W x + b applied to each row x. With dy of shape (..., out)
    and the leading axes flattened into rows:
    dz/dx = dy W, dz/dW = dy^T x (summed over rows), dz/db = sum of dy over rows.
    """

    name = "linear"
    arity = 3

    def infer(self, x: TensorType, w: TensorType, b: TensorType) -> TensorType:
        dtype = float_dtype(self.name, x, w, b)
        if w.ndim != 2:
            raise ShapeError(
                f"weight shape {w.shape} must be (out_features, in_features)"
            )
        if x.ndim < 1 or x.shape[-1] != w.shape[1]:
            raise ShapeError(
                f"input shape {x.shape} and weight shape {w.shape} do not match: the "
                f"last axis of the input must equal the weight's in_features ({w.shape[1]})"
            )
        if b.shape != (w.shape[0],):
            raise ShapeError(
                f"bias shape {b.shape} must be ({w.shape[0]},), the weight's out_features"
            )
        return TensorType(x.shape[:-1] + (w.shape[0],), dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        x, w, b = args
        return f"np.add(np.matmul({x}, {w}.T, out={out}), {b}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        x, w, b = inputs
        dx = (
            F.matmul(dy, w)
            if x.ndim >= 2
            else F.reshape(F.matmul(F.reshape(dy, (1, -1)), w), x.shape)
        )
        rows_dy = dy if dy.ndim == 2 else F.reshape(dy, (-1, w.shape[0]))
        rows_x = x if x.ndim == 2 else F.reshape(x, (-1, w.shape[1]))
        dw = F.matmul(F.transpose(rows_dy), rows_x)
        db = F.sum_to(dy, b.shape)
        return [dx, dw, db]


class Reduction(Op):
    arity = 1

    def __init__(self, axis: Any = None, keepdims: bool = False) -> None:
        # Axes are normalized in infer once the rank is known.
        if isinstance(axis, (int, np.integer)):
            axis = int(axis)
        elif axis is not None:
            axis = tuple(int(a) for a in axis)
        self._set_attrs(axis=axis, keepdims=bool(keepdims))

    def axes(self, ndim: int) -> tuple[int, ...]:
        return normalize_axes(self.axis, ndim)

    def infer(self, x: TensorType) -> TensorType:
        float_dtype(self.name, x)
        axes = self.axes(x.ndim)
        if self.keepdims:
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        if self.name == "max" and any(x.shape[i] == 0 for i in axes):
            raise ShapeError(f"max over an empty axis of shape {x.shape} has no value")
        return TensorType(shape, x.dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        func = {"sum": "np.sum", "mean": "np.mean", "max": "np.max"}[self.name]
        return f"{func}({args[0]}, axis={self.axis!r}, keepdims={self.keepdims}, out={out})"

    def _kept(self, x: Tensor, value: Tensor) -> Tensor:
        """``value`` reshaped so the reduced axes are kept with size 1."""
        axes = self.axes(x.ndim)
        return F.reshape(
            value, tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        )


@register
class Sum(Reduction):
    """y = sum of x over ``axis``.  dz/dx = dy broadcast back to x's shape."""

    name = "sum"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        x = inputs[0]
        return [F.broadcast_to(self._kept(x, dy), x.shape)]


@register
class Mean(Reduction):
    """y = mean of x over ``axis`` (n elements).  dz/dx = dy / n broadcast back."""

    name = "mean"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        x = inputs[0]
        count = int(np.prod([x.shape[i] for i in self.axes(x.ndim)], dtype=np.int64))
        # The module's max() declares an op, so the count needs the builtin.
        count = builtins.max(count, 1)
        return [F.broadcast_to(self._kept(x, F.div(dy, float(count))), x.shape)]


@register
class Max(Reduction):
    """y = max of x over ``axis``.

    dz/dx = dy at the positions equal to the max, split evenly among ties
    (as torch.amax does), and 0 elsewhere.
    """

    name = "max"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        x = inputs[0]
        mask = F.equal(x, self._kept(x, output))
        ties = F.sum(mask, self.axes(x.ndim), keepdims=True)
        return [F.mul(mask, F.div(self._kept(x, dy), ties))]


@register
class BroadcastTo(Op):
    """y = x broadcast to ``shape``.  dz/dx = sum_to(dy, x.shape)."""

    name = "broadcast_to"
    writes_out = False

    def __init__(self, shape: Sequence[int]) -> None:
        self._set_attrs(shape=tuple(int(d) for d in shape))

    def infer(self, x: TensorType) -> TensorType:
        if not _broadcasts_to(x.shape, self.shape):
            raise ShapeError(f"shape {x.shape} does not broadcast to {self.shape}")
        return TensorType(self.shape, x.dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"np.broadcast_to({args[0]}, {self.shape!r})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [F.sum_to(dy, inputs[0].shape)]


@register
class SumTo(Op):
    """y = x summed down to ``shape``, undoing a broadcast to x's shape.

    Leading axes that broadcasting added are summed away, and axes where
    ``shape`` has 1 are summed with the size kept.  dz/dx = dy broadcast to x.
    """

    name = "sum_to"

    def __init__(self, shape: Sequence[int]) -> None:
        self._set_attrs(shape=tuple(int(d) for d in shape))

    def infer(self, x: TensorType) -> TensorType:
        if not _broadcasts_to(self.shape, x.shape):
            raise ShapeError(f"shape {self.shape} does not broadcast to {x.shape}")
        return TensorType(self.shape, x.dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"k.sum_to({args[0]}, {self.shape!r}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [F.broadcast_to(dy, inputs[0].shape)]


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return tuple(np.broadcast_shapes(shape, target)) == tuple(target)
    except ValueError:
        return False


def matmul(a: Tensor, b: Tensor) -> Tensor:
    return apply(MatMul(), a, b)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b; without a bias this is ``x @ W.T``."""
    if bias is None:
        return matmul(x, F.transpose(weight))
    return apply(Linear(), x, weight, bias)


def sum(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return apply(Sum(axis, keepdims), x)


def mean(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    return apply(Mean(axis, keepdims), x)


def max(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return apply(Max(axis, keepdims), x)


def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    if tuple(shape) == x.shape:
        return x
    return apply(BroadcastTo(shape), x)


def sum_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    if tuple(shape) == x.shape:
        return x
    return apply(SumTo(shape), x)
