"""The op set: each op's type rule, NumPy meaning and gradient rule.

The functions here declare ops in the graph of their tensor operands::

    h = ops.tanh(ops.linear(x, w, b))

``REGISTRY`` maps every op name to its class; :func:`get_op` looks one up.
"""

from .base import REGISTRY, Op, apply, get_op, register
from .elementwise import (
    add,
    cast,
    div,
    equal,
    exp,
    leaky_relu,
    log,
    mul,
    neg,
    relu,
    sigmoid,
    sqrt,
    step,
    stop_gradient,
    sub,
    tanh,
)
from .nn import batch_norm, softmax, softmax_cross_entropy
from .shape import concat, gather, one_hot, reshape, scatter_add, transpose
from .shape import slice_index as slice
from .tensor import broadcast_to, linear, matmul, max, mean, sum, sum_to

__all__ = [
    "REGISTRY",
    "Op",
    "apply",
    "get_op",
    "register",
    "add",
    "sub",
    "mul",
    "div",
    "equal",
    "neg",
    "exp",
    "log",
    "sqrt",
    "relu",
    "leaky_relu",
    "step",
    "tanh",
    "sigmoid",
    "stop_gradient",
    "cast",
    "matmul",
    "linear",
    "sum",
    "mean",
    "max",
    "broadcast_to",
    "sum_to",
    "transpose",
    "reshape",
    "concat",
    "slice",
    "gather",
    "scatter_add",
    "one_hot",
    "softmax",
    "softmax_cross_entropy",
    "batch_norm",
]
