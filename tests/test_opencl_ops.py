"""Every op gives the same values and gradients on OpenCL (PoCL) as on NumPy.

Each case builds a small graph around one op, with odd and prime sizes,
broadcasting, transposed and sliced operands. The OpenCL program computes
the output and the gradient of a weighted sum of it with respect to every
float input, and each tensor must match the NumPy backend's under the
per-tensor norm: ||a - b|| <= rtol ||b|| + atol sqrt(n).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from opencl_support import import_pyopencl, opencl_backend

import lightnet_graph as lg
from lightnet_graph.gradcheck import compare
from lightnet_graph.ops import REGISTRY
from lightnet_graph.ops.base import apply
from lightnet_graph.ops.nn import BatchNormGrad
from lightnet_graph.ops.shape import Unslice, normalize_index

import_pyopencl()

TOLERANCES = {"float32": (1e-4, 1e-6), "float64": (1e-10, 1e-9)}

# Ops that never reach a backend: the unroll pass replaces every recurrence
# (the recurrent models in test_opencl_models.py cover it).
UNROLLED_OPS = {"recurrence"}


@dataclass(frozen=True)
class Case:
    id: str
    ops: tuple[str, ...]
    inputs: tuple[tuple, ...]  # (name, shape) floats, (name, shape, classes) indices
    build: Callable[..., lg.Tensor]
    positive: bool = False  # draw floats in [0.5, 2] (log, sqrt, divisors)


def _bn_grad(wrt: str, training: bool, momentum: float = 0.0):
    def build(x, gamma, mean, var, dy):
        op = BatchNormGrad(momentum, 1e-5, training, wrt)
        return apply(op, x, gamma, mean, var, dy)

    return build


CASES = [
    Case("add-7x13", ("add",), (("a", (7, 13)), ("b", (7, 13))), lambda a, b: a + b),
    Case(
        "sub-broadcast", ("sub",), (("a", (7, 1)), ("b", (1, 13))), lambda a, b: a - b
    ),
    Case("mul-row", ("mul",), (("a", (5, 13)), ("b", (13,))), lambda a, b: a * b),
    Case("div-scalar", ("div",), (("a", ()), ("b", (3, 7))), lambda a, b: a / b, True),
    Case(
        "equal",
        ("equal",),
        (("a", (4, 6)),),
        lambda a: lg.equal(lg.relu(a), lg.relu(lg.transpose(lg.transpose(a)))) * a,
    ),
    Case(
        "neg-exp-log",
        ("neg", "exp", "log"),
        (("x", (257,)),),
        lambda x: lg.log(lg.exp(-x) + 1.0),
        True,
    ),
    Case("sqrt", ("sqrt",), (("x", (3, 7)),), lg.sqrt, True),
    Case(
        "relu-leaky-step",
        ("relu", "leaky_relu", "step"),
        (("x", (1031,)),),
        lambda x: lg.relu(x) + lg.leaky_relu(x, 0.2) * lg.step(x, 0.3),
    ),
    Case(
        "tanh-sigmoid",
        ("tanh", "sigmoid"),
        (("x", (13, 7)),),
        lambda x: lg.tanh(x) * lg.sigmoid(x * 3.0),
    ),
    Case(
        "stop-gradient",
        ("stop_gradient",),
        (("x", (5, 3)),),
        lambda x: x * lg.stop_gradient(x),
    ),
    Case(
        "cast",
        ("cast",),
        (("x", (4, 5)),),
        lambda x: lg.cast(lg.cast(x * 3.0, "int32"), x.dtype) * x,
    ),
    Case(
        "matmul-prime",
        ("matmul",),
        (("a", (7, 13)), ("b", (13, 5))),
        lambda a, b: a @ b,
    ),
    Case(
        "matmul-transposed",
        ("matmul", "transpose"),
        (("a", (13, 7)), ("b", (5, 13))),
        lambda a, b: lg.transpose(a) @ lg.transpose(b),
    ),
    Case(
        "matmul-batch-broadcast",
        ("matmul",),
        (("a", (2, 3, 5, 4)), ("b", (3, 4, 6))),
        lambda a, b: a @ b,
    ),
    Case(
        "linear-3d",
        ("linear",),
        (("x", (2, 5, 7)), ("w", (6, 7)), ("b", (6,))),
        lg.linear,
    ),
    Case(
        "linear-vector",
        ("linear",),
        (("x", (7,)), ("w", (3, 7)), ("b", (3,))),
        lg.linear,
    ),
    Case("sum-axes", ("sum",), (("x", (3, 5, 7)),), lambda x: lg.sum(x, (0, 2))),
    Case("sum-all", ("sum",), (("x", (257,)),), lambda x: lg.sum(x) * x),
    Case(
        "mean-keepdims",
        ("mean",),
        (("x", (4, 7)),),
        lambda x: x - lg.mean(x, -1, keepdims=True),
    ),
    Case("max-axis", ("max",), (("x", (6, 9)),), lambda x: lg.max(x, 0)),
    Case(
        "broadcast-sum-to",
        ("broadcast_to", "sum_to"),
        (("x", (1, 5)), ("y", (3, 4, 5))),
        lambda x, y: lg.sum_to(lg.broadcast_to(x, (3, 4, 5)) * y, (4, 1)),
    ),
    Case(
        "transpose-reshape",
        ("transpose", "reshape"),
        (("x", (3, 4, 5)),),
        lambda x: lg.tanh(lg.reshape(lg.transpose(x, (2, 0, 1)), (5, 12))),
    ),
    Case(
        "reshape-flat",
        ("reshape",),
        (("x", (6, 7)),),
        lambda x: lg.reshape(x, (7, 6)) * 2.0,
    ),
    Case(
        "concat",
        ("concat",),
        (("a", (2, 3)), ("b", (4, 3)), ("c", (1, 3))),
        lambda a, b, c: lg.tanh(lg.concat([a, b, lg.sigmoid(c)], axis=0)),
    ),
    Case(
        "concat-axis1",
        ("concat",),
        (("a", (3, 2)), ("b", (3, 5))),
        lambda a, b: lg.concat([a * a, b], axis=1),
    ),
    Case(
        "slice-steps",
        ("slice", "unslice"),
        (("x", (9, 8)),),
        lambda x: lg.tanh(x[1:8:3, ::-2]) + x[4, 1:5],
    ),
    Case(
        "slice-ellipsis",
        ("slice",),
        (("x", (2, 3, 5)),),
        lambda x: x[..., 1] * x[1, ..., 2],
    ),
    Case(
        "unslice",
        ("unslice",),
        (("x", (3, 2)),),
        lambda x: (
            apply(
                Unslice((5, 4), normalize_index((slice(1, 4), slice(0, 4, 2)), (5, 4))),
                x,
            )
            * 2.0
        ),
    ),
    Case(
        "gather",
        ("gather",),
        (("table", (11, 3)), ("idx", (2, 5), 11)),
        lambda table, idx: lg.gather(table, idx),
    ),
    Case(
        "scatter-add",
        ("scatter_add",),
        (("idx", (13,), 4), ("v", (13, 3))),
        lambda idx, v: lg.scatter_add(idx, v, 4),
    ),
    Case(
        "one-hot",
        ("one_hot",),
        (("x", (6, 5)), ("labels", (6,), 5)),
        lambda x, labels: lg.one_hot(labels, 5, x.dtype) * x,
    ),
    Case("softmax", ("softmax",), (("x", (5, 7)),), lambda x: lg.softmax(x, 0)),
    Case(
        "cross-entropy-mean",
        ("softmax_cross_entropy",),
        (("x", (3, 4, 7)), ("y", (3, 4), 7)),
        lambda x, y: lg.softmax_cross_entropy(x, y, "mean"),
    ),
    Case(
        "cross-entropy-sum",
        ("softmax_cross_entropy",),
        (("x", (13, 5)), ("y", (13,), 5)),
        lambda x, y: lg.softmax_cross_entropy(x, y, "sum"),
    ),
    Case(
        "batch-norm-train",
        ("batch_norm", "batch_norm_grad"),
        (("x", (6, 5)), ("g", (5,)), ("b", (5,)), ("m", (5,)), ("v", (5,))),
        lambda x, g, b, m, v: lg.batch_norm(x, g, b, m, v * v + 0.5, 0.0),
    ),
    Case(
        "batch-norm-momentum-4d",
        ("batch_norm", "batch_norm_grad"),
        (("x", (3, 4, 2, 5)), ("g", (4,)), ("b", (4,)), ("m", (4,)), ("v", (4,))),
        lambda x, g, b, m, v: lg.batch_norm(x, g, b, m, v * v + 0.5, 0.3),
    ),
    Case(
        "batch-norm-eval",
        ("batch_norm", "batch_norm_grad"),
        (("x", (7, 3)), ("g", (3,)), ("b", (3,)), ("m", (3,)), ("v", (3,))),
        lambda x, g, b, m, v: lg.batch_norm(
            x, g, b, m, v * v + 0.5, 0.0, training=False
        ),
    ),
]
for _wrt in ("x", "gamma", "beta", "mean", "var"):
    for _training, _momentum in ((True, 0.2), (False, 0.0)):
        CASES.append(
            Case(
                f"batch-norm-grad-{_wrt}-{'train' if _training else 'eval'}",
                ("batch_norm_grad",),
                (("x", (5, 3)), ("g", (3,)), ("m", (3,)), ("v", (3,)), ("dy", (5, 3))),
                _bn_grad(_wrt, _training, _momentum),
                True,
            )
        )


def _declare(case: Case, dtype: str):
    graph = lg.Graph(case.id, dtype=dtype)
    rng = np.random.default_rng(abs(hash(case.id)) % 2**32)
    tensors, feeds = [], {}
    for spec in case.inputs:
        name, shape = spec[0], spec[1]
        if len(spec) == 3:
            tensors.append(graph.input(name, shape, dtype="int64"))
            feeds[name] = rng.integers(0, spec[2], shape)
        else:
            tensors.append(graph.input(name, shape))
            low, high = (0.5, 2.0) if case.positive else (-2.0, 2.0)
            feeds[name] = rng.uniform(low, high, shape).astype(dtype)
    output = case.build(*tensors)
    weights = graph.constant(rng.standard_normal(output.shape))
    loss = lg.sum(output * weights)
    wrt = [t for t in tensors if t.dtype.kind == "f"]
    return output, loss, wrt, feeds


def test_cases_cover_every_op():
    covered = {op for case in CASES for op in case.ops}
    assert set(REGISTRY) - UNROLLED_OPS <= covered, sorted(set(REGISTRY) - covered)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_op_matches_numpy(case: Case, dtype: str):
    output, loss, wrt, feeds = _declare(case, dtype)
    expected = lg.compile({"y": output}, loss=loss, wrt=wrt).run(feeds)
    program = lg.compile({"y": output}, loss=loss, wrt=wrt, backend=opencl_backend())
    actual = program.run(feeds)
    rtol, atol = TOLERANCES[dtype]
    assert actual.keys() == expected.keys()
    for name in expected:
        assert actual[name].shape == expected[name].shape, name
        assert actual[name].dtype == expected[name].dtype, name
        error, passed = compare(actual[name], expected[name], rtol, atol)
        assert passed, f"{case.id} {dtype} {name}: relative error {error:.3g}"
