"""The op case table: for each registered op, graphs that use it and its math.

Each case declares its operands as graph inputs, builds one output with
library ops, and gives a NumPy reference for that output written
independently of ``lightnet_graph.ops.kernels``. The forward tests compare
the output with the reference, and the gradient tests compare the compiled
gradient with central finite differences.

Operand samples keep every point at least 0.05 from a kink (0 for relu,
leaky_relu and step, ties for max, integers for a cast to int), |x| <= 5
for tanh and sigmoid, and log, sqrt and the divisor of div away from 0.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numeric_checks import FINITE_DIFFERENCE_STEP, seed_for
from op_references import (
    batch_norm_grad_reference,
    batch_norm_reference,
    cross_entropy_reference,
    einsum_matmul,
    rnn_reference,
    scatter_add_reference,
    softmax_reference,
    sum_to_reference,
    unslice_reference,
)

import lightnet_graph as lg
from lightnet_graph.graph import Tensor
from lightnet_graph.ops.base import apply
from lightnet_graph.ops.nn import BatchNormGrad
from lightnet_graph.ops.shape import Unslice, normalize_index

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def uniform(low: float, high: float) -> Sampler:
    return lambda rng, shape: rng.uniform(low, high, shape)


def away_from_zero(low: float, high: float) -> Sampler:
    """Draw magnitudes from [low, high] with a random sign."""

    def sample(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        sign = rng.choice([-1.0, 1.0], shape)
        return sign * rng.uniform(low, high, shape)

    return sample


def distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Draw values at least 0.1 apart, so that max has no ties."""
    size = int(np.prod(shape, dtype=np.int64))
    return (rng.permutation(size) * 0.1 - 0.05 * size).reshape(shape)


def fractional(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Draw values in [-3, 3] at least 0.1 from every integer."""
    return rng.integers(-3, 3, shape) + rng.uniform(0.1, 0.9, shape)


def dyadic(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Draw multiples of 2^-8 in [-2, 2], exact in float32 after a 2^-10 step."""
    return rng.integers(-512, 512, shape) / 256.0


def small_integers(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Draw floats from {0, 1, 2}, so that equal() gets equal and unequal pairs."""
    return rng.integers(0, 3, shape).astype(np.float64)


SMOOTH = uniform(-2.0, 2.0)
SATURATING = uniform(-5.0, 5.0)
POSITIVE = uniform(0.5, 2.0)
KINKED = away_from_zero(0.05, 2.0)
NONZERO = away_from_zero(0.5, 2.0)


@dataclass(frozen=True)
class Operand:
    """A graph input of a case, float unless ``classes`` makes it int64 indices."""

    name: str
    shape: tuple[int, ...]
    sample: Sampler = SMOOTH
    classes: int | None = None

    @property
    def is_index(self) -> bool:
        return self.classes is not None

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        if self.is_index:
            return rng.integers(0, self.classes, self.shape).astype(np.int64)
        return np.asarray(self.sample(rng, self.shape), dtype=np.float64)


@dataclass(frozen=True)
class OpCase:
    """A graph around one op, the NumPy reference of its output, and how to check it.

    ``zero_gradient`` names float operands whose gradient must be exactly 0.
    ``finite_differences`` is False where central differences do not apply,
    because stop_gradient is the identity in the forward pass and equal()
    jumps at the ties it is checked at.
    """

    id: str
    op: str
    operands: tuple[Operand, ...]
    build: Callable[..., Tensor]
    reference: Callable[..., np.ndarray]
    zero_gradient: tuple[str, ...] = ()
    finite_differences: bool = True
    step: float = FINITE_DIFFERENCE_STEP

    def declare(self, dtype: str) -> tuple[list[Tensor], dict[str, np.ndarray]]:
        """Declare the operands as inputs of a new graph and draw their values."""
        graph = lg.Graph(self.id, dtype=dtype)
        rng = np.random.default_rng(seed_for(self.id))
        tensors = []
        feeds = {}
        for operand in self.operands:
            value = operand.draw(rng)
            if operand.is_index:
                tensors.append(graph.input(operand.name, operand.shape, dtype="int64"))
            else:
                tensors.append(graph.input(operand.name, operand.shape))
                value = value.astype(dtype)
            feeds[operand.name] = value
        return tensors, feeds

    def reference_value(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Evaluate the reference in float64 on the values fed to the graph."""
        arguments = [
            value.astype(np.float64) if value.dtype.kind == "f" else value
            for value in feeds.values()
        ]
        return np.asarray(self.reference(*arguments))


def shape_id(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def index_id(index: object) -> str:
    """Write a basic index the way it reads in a subscript, such as ``::-1,1``."""
    items = index if isinstance(index, tuple) else (index,)
    parts = []
    for item in items:
        if item is Ellipsis:
            parts.append("...")
        elif isinstance(item, slice):
            start = "" if item.start is None else str(item.start)
            stop = "" if item.stop is None else str(item.stop)
            step = "" if item.step is None else f":{item.step}"
            parts.append(f"{start}:{stop}{step}")
        else:
            parts.append(str(item))
    return ",".join(parts)


CASES: list[OpCase] = []

# -- elementwise arithmetic with broadcasting ---------------------------------

BROADCAST_PAIRS = [
    ((3, 4), (3, 4)),
    ((3, 1), (1, 4)),
    ((5, 4), (4,)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((1, 4), (1, 1)),
]
ARITHMETIC = [
    ("add", lg.add, operator.add, SMOOTH),
    ("sub", lg.sub, operator.sub, SMOOTH),
    ("mul", lg.mul, operator.mul, SMOOTH),
    ("div", lg.div, operator.truediv, NONZERO),
]
for name, function, expected, divisor in ARITHMETIC:
    for shape_a, shape_b in BROADCAST_PAIRS:
        CASES.append(
            OpCase(
                f"{name}-{shape_id(shape_a)}-{shape_id(shape_b)}",
                name,
                (Operand("a", shape_a), Operand("b", shape_b, divisor)),
                function,
                expected,
            )
        )

# -- unary elementwise ops ----------------------------------------------------

UNARY = [
    ("neg", lg.neg, np.negative, SMOOTH),
    ("exp", lg.exp, np.exp, SMOOTH),
    ("log", lg.log, np.log, POSITIVE),
    ("sqrt", lg.sqrt, np.sqrt, POSITIVE),
    ("relu", lg.relu, lambda x: np.where(x > 0, x, 0.0), KINKED),
    ("leaky_relu", lg.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x), KINKED),
    ("tanh", lg.tanh, lambda x: np.expm1(2 * x) / (np.expm1(2 * x) + 2), SATURATING),
    ("sigmoid", lg.sigmoid, lambda x: 1 / (1 + np.exp(-x)), SATURATING),
]
for name, function, expected, sample in UNARY:
    for shape in [(3, 4), (), (1, 5)]:
        CASES.append(
            OpCase(
                f"{name}-{shape_id(shape)}",
                name,
                (Operand("x", shape, sample),),
                function,
                expected,
            )
        )

CASES += [
    OpCase(
        "leaky_relu-alpha0.2",
        "leaky_relu",
        (Operand("x", (3, 4), KINKED),),
        lambda x: lg.leaky_relu(x, 0.2),
        lambda x: np.where(x > 0, x, 0.2 * x),
    ),
    OpCase(
        "step-3x4",
        "step",
        (Operand("x", (3, 4), KINKED),),
        lg.step,
        lambda x: np.where(x > 0, 1.0, 0.0),
        zero_gradient=("x",),
    ),
    OpCase(
        "step-low0.3-scalar",
        "step",
        (Operand("x", (), KINKED),),
        lambda x: lg.step(x, 0.3),
        lambda x: np.where(x > 0, 1.0, 0.3),
        zero_gradient=("x",),
    ),
    OpCase(
        "equal-3x4-3x4",
        "equal",
        (Operand("a", (3, 4), small_integers), Operand("b", (3, 4), small_integers)),
        lg.equal,
        lambda a, b: (a == b).astype(np.float64),
        zero_gradient=("a", "b"),
        finite_differences=False,
    ),
    OpCase(
        "equal-3x1-1x4",
        "equal",
        (Operand("a", (3, 1), small_integers), Operand("b", (1, 4), small_integers)),
        lg.equal,
        lambda a, b: (a == b).astype(np.float64),
        zero_gradient=("a", "b"),
        finite_differences=False,
    ),
    OpCase(
        "equal-no-ties",
        "equal",
        (
            Operand("a", (3, 4), uniform(-2.0, -0.05)),
            Operand("b", (3, 4), uniform(0.05, 2.0)),
        ),
        lg.equal,
        lambda a, b: (a == b).astype(np.float64),
        zero_gradient=("a", "b"),
    ),
    OpCase(
        "stop_gradient-3x4",
        "stop_gradient",
        (Operand("x", (3, 4)),),
        lg.stop_gradient,
        lambda x: x,
        zero_gradient=("x",),
        finite_differences=False,
    ),
    OpCase(
        "cast-same-dtype",
        "cast",
        (Operand("x", (3, 4)),),
        lambda x: lg.cast(x, x.dtype),
        lambda x: x,
    ),
    # x and x +- 2^-10 are exact in float32, so the round trip loses nothing
    # and the finite differences stay exact.
    OpCase(
        "cast-float32-round-trip",
        "cast",
        (Operand("x", (3, 4), dyadic),),
        lambda x: lg.cast(lg.cast(x, "float32"), x.dtype),
        lambda x: x,
        step=2.0**-10,
    ),
    OpCase(
        "cast-int64",
        "cast",
        (Operand("x", (3, 4), fractional),),
        lambda x: lg.cast(lg.cast(x, "int64"), x.dtype),
        np.trunc,
        zero_gradient=("x",),
    ),
]

# -- softmax and cross-entropy ---------------------------------------------------

for shape, axis in [((3, 4), -1), ((4, 3), 0), ((1, 5), -1), ((2, 3, 4), 1), ((5,), 0)]:
    CASES.append(
        OpCase(
            f"softmax-{shape_id(shape)}-axis{axis}",
            "softmax",
            (Operand("x", shape),),
            lambda x, axis=axis: lg.softmax(x, axis),
            lambda x, axis=axis: softmax_reference(x, axis),
        )
    )

for shape, reduction in [
    ((4, 5), "sum"),
    ((4, 5), "mean"),
    ((1, 3), "mean"),
    ((2, 3, 4), "sum"),
    ((5,), "mean"),
]:
    CASES.append(
        OpCase(
            f"softmax_cross_entropy-{shape_id(shape)}-{reduction}",
            "softmax_cross_entropy",
            (
                Operand("logits", shape),
                Operand("labels", shape[:-1], classes=shape[-1]),
            ),
            lambda x, y, reduction=reduction: lg.softmax_cross_entropy(x, y, reduction),
            lambda x, y, reduction=reduction: cross_entropy_reference(x, y, reduction),
        )
    )

# -- batch normalization ---------------------------------------------------------

BATCH_NORM_SETTINGS = [
    ((4, 3), 0.0, True),
    ((4, 3), 0.1, True),
    ((4, 3), 0.1, False),
    ((1, 3, 2), 0.1, True),
    ((2, 3, 2), 0.0, True),
]
for shape, momentum, training in BATCH_NORM_SETTINGS:
    mode = "training" if training else "inference"
    features = (shape[1],)
    settings = {"momentum": momentum, "eps": 1e-3, "training": training}
    CASES.append(
        OpCase(
            f"batch_norm-{shape_id(shape)}-m{momentum}-{mode}",
            "batch_norm",
            (
                Operand("x", shape),
                Operand("gamma", features),
                Operand("beta", features),
                Operand("mean", features),
                Operand("var", features, POSITIVE),
            ),
            lambda *args, settings=settings: lg.batch_norm(*args, **settings),
            lambda *args, settings=settings: batch_norm_reference(*args, **settings),
        )
    )

# The gradient of batch_norm_grad is the second derivative of batch_norm.
for wrt, momentum, training in [
    ("x", 0.1, True),
    ("gamma", 0.1, True),
    ("beta", 0.1, True),
    ("mean", 0.1, True),
    ("var", 0.1, True),
    ("x", 0.0, True),
    ("x", 0.0, False),
    ("mean", 0.0, False),
    ("var", 0.0, False),
]:
    mode = "training" if training else "inference"
    settings = {"momentum": momentum, "eps": 1e-3, "training": training}
    CASES.append(
        OpCase(
            f"batch_norm_grad-{wrt}-m{momentum}-{mode}",
            "batch_norm_grad",
            (
                Operand("x", (4, 3)),
                Operand("gamma", (3,)),
                Operand("mean", (3,)),
                Operand("var", (3,), POSITIVE),
                Operand("dy", (4, 3)),
            ),
            lambda *args, settings=settings, wrt=wrt: apply(
                BatchNormGrad(wrt=wrt, **settings), *args
            ),
            lambda *args, settings=settings, wrt=wrt: batch_norm_grad_reference(
                *args, wrt=wrt, **settings
            ),
        )
    )

# -- reductions ------------------------------------------------------------------

REDUCTIONS = [
    ((2, 3, 4), None, False),
    ((2, 3, 4), 0, False),
    ((2, 3, 4), 1, True),
    ((2, 3, 4), (0, 2), False),
    ((2, 3, 4), None, True),
    ((3, 4), -1, True),
    ((1, 4), 0, False),
    ((), None, False),
]
for name, function, expected, sample in [
    ("sum", lg.sum, np.sum, SMOOTH),
    ("mean", lg.mean, np.mean, SMOOTH),
    ("max", lg.max, np.max, distinct),
]:
    for shape, axis, keepdims in REDUCTIONS:
        axis_id = "all" if axis is None else str(axis).replace(" ", "")
        CASES.append(
            OpCase(
                f"{name}-{shape_id(shape)}-axis{axis_id}{'-keepdims' if keepdims else ''}",
                name,
                (Operand("x", shape, sample),),
                lambda x, f=function, axis=axis, keepdims=keepdims: f(
                    x, axis, keepdims
                ),
                lambda x, f=expected, axis=axis, keepdims=keepdims: f(
                    x, axis=axis, keepdims=keepdims
                ),
            )
        )

# -- matrix products ---------------------------------------------------------------

for shape_a, shape_b in [
    ((3, 4), (4, 5)),
    ((1, 4), (4, 1)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (3, 4, 2)),
]:
    CASES.append(
        OpCase(
            f"matmul-{shape_id(shape_a)}-{shape_id(shape_b)}",
            "matmul",
            (Operand("a", shape_a), Operand("b", shape_b)),
            lg.matmul,
            einsum_matmul,
        )
    )

for shape_x, outputs in [((4, 3), 2), ((3,), 2), ((2, 3, 4), 5), ((1, 3), 1)]:
    CASES.append(
        OpCase(
            f"linear-{shape_id(shape_x)}-out{outputs}",
            "linear",
            (
                Operand("x", shape_x),
                Operand("w", (outputs, shape_x[-1])),
                Operand("b", (outputs,)),
            ),
            lg.linear,
            lambda x, w, b: np.einsum("...i,oi->...o", x, w) + b,
        )
    )

# -- shape ops -----------------------------------------------------------------------

for shape, perm in [((3, 4), None), ((2, 3, 4), (1, 2, 0)), ((1, 4), None)]:
    CASES.append(
        OpCase(
            f"transpose-{shape_id(shape)}-{perm}".replace(" ", ""),
            "transpose",
            (Operand("x", shape),),
            lambda x, perm=perm: lg.transpose(x, perm),
            lambda x, perm=perm: np.transpose(x, perm),
        )
    )

for shape, target in [
    ((3, 4), (2, 6)),
    ((2, 3, 4), (-1, 4)),
    ((1,), ()),
    ((6,), (1, 2, 3, 1)),
]:
    CASES.append(
        OpCase(
            f"reshape-{shape_id(shape)}-to-{shape_id(target)}",
            "reshape",
            (Operand("x", shape),),
            lambda x, target=target: lg.reshape(x, target),
            lambda x, target=target: x.reshape(target),
        )
    )

CASES += [
    OpCase(
        "concat-axis0",
        "concat",
        (Operand("a", (2, 3)), Operand("b", (4, 3))),
        lambda a, b: lg.concat([a, b], 0),
        lambda a, b: np.concatenate([a, b], 0),
    ),
    OpCase(
        "concat-axis1-three",
        "concat",
        (Operand("a", (2, 1)), Operand("b", (2, 3)), Operand("c", (2, 2))),
        lambda a, b, c: lg.concat([a, b, c], 1),
        lambda a, b, c: np.concatenate([a, b, c], 1),
    ),
    OpCase(
        "concat-same-value-twice",
        "concat",
        (Operand("x", (1, 3)),),
        lambda x: lg.concat([x, x], -1),
        lambda x: np.concatenate([x, x], -1),
    ),
]

SLICES = [
    ((4, 5), np.s_[1:3]),
    ((4, 5), np.s_[:, ::2]),
    ((4, 5), np.s_[::-1, 1]),
    ((2, 3, 4), np.s_[..., 0]),
    ((4,), np.s_[2]),
    ((3, 4), np.s_[-1, 1:]),
    ((5,), np.s_[3:0:-2]),
]
for shape, index in SLICES:
    CASES.append(
        OpCase(
            f"slice-{shape_id(shape)}-{index_id(index)}",
            "slice",
            (Operand("x", shape),),
            lambda x, index=index: x[index],
            lambda x, index=index: x[index],
        )
    )

for shape, target, index in [
    ((2, 3), (4, 5), np.s_[1:3, ::2]),
    ((3,), (4, 5), np.s_[2, 1:4]),
    ((1, 1), (1, 1), np.s_[:, :]),
]:
    CASES.append(
        OpCase(
            f"unslice-{shape_id(shape)}-into-{shape_id(target)}",
            "unslice",
            (Operand("x", shape),),
            lambda x, target=target, index=index: apply(
                Unslice(target, normalize_index(index, target)), x
            ),
            lambda x, target=target, index=index: unslice_reference(x, target, index),
        )
    )

for table, indices in [((5, 3), (4,)), ((4,), (2, 3)), ((3, 2), (2, 2))]:
    CASES.append(
        OpCase(
            f"gather-{shape_id(table)}-{shape_id(indices)}",
            "gather",
            (Operand("table", table), Operand("indices", indices, classes=table[0])),
            lg.gather,
            lambda table, indices: table[indices],
        )
    )

for indices, values, rows in [
    ((4,), (4, 2), 3),
    ((2, 2), (2, 2, 3), 5),
    ((3,), (3,), 2),
]:
    CASES.append(
        OpCase(
            f"scatter_add-{shape_id(values)}-rows{rows}",
            "scatter_add",
            (Operand("indices", indices, classes=rows), Operand("values", values)),
            lambda i, v, rows=rows: lg.scatter_add(i, v, rows),
            lambda i, v, rows=rows: scatter_add_reference(i, v, rows),
        )
    )

for indices, depth in [((3,), 4), ((2, 2), 3)]:
    CASES.append(
        OpCase(
            f"one_hot-{shape_id(indices)}-depth{depth}",
            "one_hot",
            (
                Operand("indices", indices, classes=depth),
                Operand("x", indices + (depth,)),
            ),
            lambda i, x, depth=depth: lg.one_hot(i, depth, x.dtype) * x,
            lambda i, x, depth=depth: np.eye(depth)[i] * x,
        )
    )

for shape, target in [
    ((3, 1), (2, 3, 4)),
    ((), (2, 2)),
    ((4,), (3, 4)),
    ((1, 1), (1, 5)),
]:
    CASES.append(
        OpCase(
            f"broadcast_to-{shape_id(shape)}-to-{shape_id(target)}",
            "broadcast_to",
            (Operand("x", shape),),
            lambda x, target=target: lg.broadcast_to(x, target),
            lambda x, target=target: np.broadcast_to(x, target),
        )
    )

for shape, target in [
    ((2, 3, 4), (3, 1)),
    ((3, 4), ()),
    ((3, 4), (4,)),
    ((1, 4, 2), (1, 1, 2)),
]:
    CASES.append(
        OpCase(
            f"sum_to-{shape_id(shape)}-to-{shape_id(target)}",
            "sum_to",
            (Operand("x", shape),),
            lambda x, target=target: lg.sum_to(x, target),
            lambda x, target=target: sum_to_reference(x, target),
        )
    )

# -- recurrence ----------------------------------------------------------------------


def rnn_step(params, state, x_t):
    (h,) = state
    h = lg.tanh(
        lg.linear(x_t, params["w_x"], params["b"]) + h @ lg.transpose(params["w_h"])
    )
    return (h,), h


def rnn_operands(steps: int) -> tuple[Operand, ...]:
    return (
        Operand("xs", (steps, 2, 3)),
        Operand("h0", (2, 4)),
        Operand("w_x", (4, 3)),
        Operand("w_h", (4, 4)),
        Operand("b", (4,)),
    )


def run_rnn(xs, h0, w_x, w_h, b, outputs="all"):
    params = {"w_x": w_x, "w_h": w_h, "b": b}
    return lg.recurrence(rnn_step, xs, h0, params, outputs=outputs)


CASES += [
    OpCase(
        "recurrence-outputs-T3",
        "recurrence",
        rnn_operands(3),
        lambda *args: run_rnn(*args)[0],
        rnn_reference,
    ),
    OpCase(
        "recurrence-last-output-T2",
        "recurrence",
        rnn_operands(2),
        lambda *args: run_rnn(*args, outputs="last")[0],
        lambda *args: rnn_reference(*args)[-1],
    ),
    OpCase(
        "recurrence-final-state-T1",
        "recurrence",
        rnn_operands(1),
        lambda *args: run_rnn(*args)[1][0],
        lambda *args: rnn_reference(*args)[-1],
    ),
]
