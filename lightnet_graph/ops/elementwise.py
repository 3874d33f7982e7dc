"""Elementwise ops: arithmetic with NumPy broadcasting and activations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import lightnet_graph.ops as F

from ..errors import DTypeError, ShapeError
from ..graph import Tensor, TensorType
from .base import Op, apply, float_dtype, literal, register


def broadcast_shape(a: TensorType, b: TensorType) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(a.shape, b.shape))
    except ValueError:
        raise ShapeError(
            f"shapes {a.shape} and {b.shape} do not broadcast: aligned from the "
            "right, each pair of dimensions must be equal or one of them 1"
        ) from None


class Binary(Op):
    arity = 2
    ufunc = ""

    def infer(self, a: TensorType, b: TensorType) -> TensorType:
        return TensorType(broadcast_shape(a, b), float_dtype(self.name, a, b))

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"{self.ufunc}({args[0]}, {args[1]}, out={out})"


@register
class Add(Binary):
    """y = a + b.  dz/da = sum_to(dy, a.shape), dz/db = sum_to(dy, b.shape)."""

    name = "add"
    ufunc = "np.add"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        a, b = inputs
        return [F.sum_to(dy, a.shape), F.sum_to(dy, b.shape)]


@register
class Sub(Binary):
    """y = a - b.  dz/da = sum_to(dy, a.shape), dz/db = -sum_to(dy, b.shape)."""

    name = "sub"
    ufunc = "np.subtract"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        a, b = inputs
        return [F.sum_to(dy, a.shape), F.neg(F.sum_to(dy, b.shape))]


@register
class Mul(Binary):
    """y = a * b.  dz/da = sum_to(dy * b, a.shape), dz/db = sum_to(dy * a, b.shape)."""

    name = "mul"
    ufunc = "np.multiply"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        a, b = inputs
        return [F.sum_to(F.mul(dy, b), a.shape), F.sum_to(F.mul(dy, a), b.shape)]


@register
class Div(Binary):
    """y = a / b.  dz/da = sum_to(dy / b, a.shape), dz/db = -sum_to(dy * y / b, b.shape)."""

    name = "div"
    ufunc = "np.divide"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        a, b = inputs
        da = F.sum_to(F.div(dy, b), a.shape)
        db = F.neg(F.sum_to(F.div(F.mul(dy, output), b), b.shape))
        return [da, db]


@register
class Equal(Binary):
    """y = 1 where a == b, else 0 (in the operands' float dtype).  No gradient."""

    name = "equal"

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"k.equal({args[0]}, {args[1]}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [None, None]


class Unary(Op):
    arity = 1
    ufunc = ""

    def infer(self, x: TensorType) -> TensorType:
        float_dtype(self.name, x)
        return x

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"{self.ufunc}({args[0]}, out={out})"


@register
class Neg(Unary):
    """y = -x.  dz/dx = -dy."""

    name = "neg"
    ufunc = "np.negative"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [F.neg(dy)]


@register
class Exp(Unary):
    """y = e^x.  dz/dx = dy * y."""

    name = "exp"
    ufunc = "np.exp"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [F.mul(dy, output)]


@register
class Log(Unary):
    """y = ln x.  dz/dx = dy / x."""

    name = "log"
    ufunc = "np.log"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [F.div(dy, inputs[0])]


@register
class Sqrt(Unary):
    """y = sqrt(x).  dz/dx = dy / (2 y)."""

    name = "sqrt"
    ufunc = "np.sqrt"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [F.div(dy, F.mul(output, 2.0))]


@register
class Relu(Unary):
    """y = x where x > 0, else 0.  dz/dx = dy * [x > 0]."""

    name = "relu"

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"np.maximum({args[0]}, 0, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [F.mul(dy, F.step(inputs[0], 0.0))]


@register
class LeakyRelu(Unary):
    """y = x where x > 0, else alpha x.  dz/dx = dy * (1 if x > 0 else alpha)."""

    name = "leaky_relu"

    def __init__(self, alpha: float = 0.01) -> None:
        self._set_attrs(alpha=float(alpha))

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"k.leaky_relu({args[0]}, {literal(self.alpha)}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [F.mul(dy, F.step(inputs[0], self.alpha))]


@register
class Step(Unary):
    """y = 1 where x > 0, else ``low``.  Its derivative is 0 almost everywhere."""

    name = "step"

    def __init__(self, low: float = 0.0) -> None:
        self._set_attrs(low=float(low))

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"k.step({args[0]}, {literal(self.low)}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [None]


@register
class Tanh(Unary):
    """y = tanh x, by the platform's tanh, which saturates to exactly +-1.

    dz/dx = dy * (1 - y^2), reusing the forward output.
    """

    name = "tanh"
    ufunc = "np.tanh"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [F.mul(dy, F.sub(1.0, F.mul(output, output)))]


@register
class Sigmoid(Unary):
    """y = 1 / (1 + e^-x), computed without overflow (see kernels.sigmoid).

    dz/dx = dy * y (1 - y), reusing the forward output.
    """

    name = "sigmoid"

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"k.sigmoid({args[0]}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [F.mul(dy, F.mul(output, F.sub(1.0, output)))]


@register
class StopGradient(Unary):
    """y = x; no gradient flows back through it (truncated BPTT, targets)."""

    name = "stop_gradient"
    writes_out = False

    def infer(self, x: TensorType) -> TensorType:
        return x

    def numpy(self, args: Sequence[str], out: str) -> str:
        return args[0]

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [None]


@register
class Cast(Unary):
    """y = x converted to ``dtype``.  dz/dx = dy converted back to x's dtype."""

    name = "cast"

    def __init__(self, dtype: Any) -> None:
        self._set_attrs(dtype=np.dtype(dtype))

    def infer(self, x: TensorType) -> TensorType:
        if self.dtype.kind not in "fi":
            raise DTypeError(f"cannot cast to {self.dtype}; use a float or int dtype")
        return TensorType(x.shape, self.dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"k.cast({args[0]}, {literal(self.dtype)}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        x = inputs[0]
        if x.dtype.kind != "f":
            return [None]
        return [F.cast(dy, x.dtype)]


def add(a: Any, b: Any) -> Tensor:
    return apply(Add(), a, b)


def sub(a: Any, b: Any) -> Tensor:
    return apply(Sub(), a, b)


def mul(a: Any, b: Any) -> Tensor:
    return apply(Mul(), a, b)


def div(a: Any, b: Any) -> Tensor:
    return apply(Div(), a, b)


def equal(a: Any, b: Any) -> Tensor:
    return apply(Equal(), a, b)


def neg(x: Tensor) -> Tensor:
    return apply(Neg(), x)


def exp(x: Tensor) -> Tensor:
    return apply(Exp(), x)


def log(x: Tensor) -> Tensor:
    return apply(Log(), x)


def sqrt(x: Tensor) -> Tensor:
    return apply(Sqrt(), x)


def relu(x: Tensor) -> Tensor:
    return apply(Relu(), x)


def leaky_relu(x: Tensor, alpha: float = 0.01) -> Tensor:
    return apply(LeakyRelu(alpha), x)


def step(x: Tensor, low: float = 0.0) -> Tensor:
    return apply(Step(low), x)


def tanh(x: Tensor) -> Tensor:
    return apply(Tanh(), x)


def sigmoid(x: Tensor) -> Tensor:
    return apply(Sigmoid(), x)


def stop_gradient(x: Tensor) -> Tensor:
    return apply(StopGradient(), x)


def cast(x: Tensor, dtype: Any) -> Tensor:
    return apply(Cast(dtype), x)
