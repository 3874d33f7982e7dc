"""lightnet-graph: a dataflow-graph compiler for neural networks.

Declare a model as a graph of ops, let the compiler derive its backward
graph, and run the code a backend generates for it::

    import lightnet_graph as lg

    g = lg.Graph("mlp", dtype="float64")
    x = g.input("x", (8, 4))
    w = g.parameter("w", (3, 4), init=lg.init.xavier_uniform)
    b = g.parameter("b", (3,))
    y = g.input("y", (8,), dtype="int64")
    loss = lg.softmax_cross_entropy(lg.linear(x, w, b), y)
    program = lg.compile(loss=loss, wrt=[w, b])
    values = program.run(x=..., y=...)   # {"loss": ..., "grad/w": ..., "grad/b": ...}
"""

from . import cells, init, ops, optim
from .compiler import Executable, compile
from .errors import (
    DTypeError,
    GraphError,
    LightnetError,
    NumericsError,
    ShapeError,
    UnboundInputError,
    UnknownBackendError,
    UnknownOpError,
)
from .graph import Graph, Tensor, TensorType
from .ops import *  # noqa: F403 - the op functions are the public API
from .ops import __all__ as _op_names
from .passes.autodiff import grad
from .recurrence import recurrence

__version__ = "0.1.0"

__all__ = [
    "cells",
    "init",
    "ops",
    "optim",
    "Executable",
    "compile",
    "DTypeError",
    "GraphError",
    "LightnetError",
    "NumericsError",
    "ShapeError",
    "UnboundInputError",
    "UnknownBackendError",
    "UnknownOpError",
    "Graph",
    "Tensor",
    "TensorType",
    "grad",
    "recurrence",
    *_op_names,
]
