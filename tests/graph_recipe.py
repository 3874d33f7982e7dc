"""Random-graph recipes: plain data that declares a graph of the core ops.

A :class:`GraphRecipe` lists graph inputs and constants with their shapes
and value ranges, and steps that each apply one op to earlier values. A
recipe is plain data, so Hypothesis can print and shrink it.
``graph_strategies`` draws recipes, and :func:`build_graph` declares one in
a new graph of either float dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import lightnet_graph as lg
from lightnet_graph.graph import OP, Graph, Tensor
from lightnet_graph.interpreter import evaluate

FAMILIES: dict[str, tuple[str, ...]] = {
    "elementwise": (
        "add",
        "sub",
        "mul",
        "div",
        "neg",
        "exp",
        "log",
        "sqrt",
        "relu",
        "leaky_relu",
        "tanh",
        "sigmoid",
    ),
    "matrix": ("matmul", "linear"),
    "reduction": ("sum", "mean", "max"),
    "shape": ("transpose", "reshape", "concat", "slice", "broadcast_to"),
    "softmax": ("softmax", "softmax_cross_entropy"),
}
FAMILY_OF = {op: family for family, ops in FAMILIES.items() for op in ops}
# "scale" multiplies by a constant power of two, so it counts as mul.
FAMILY_OF["scale"] = "elementwise"
ALL_OPS = tuple(op for ops in FAMILIES.values() for op in ops)


@dataclass(frozen=True)
class InputSpec:
    """A graph input or constant: floats drawn from [low, high], or labels.

    A constant with low == high is filled with that value, which the
    simplify pass recognizes in x + 0, x * 1 and x / 1.
    """

    shape: tuple[int, ...]
    low: float = -2.0
    high: float = 2.0
    classes: int | None = None  # int64 labels in [0, classes)
    constant: bool = False


@dataclass(frozen=True)
class Step:
    """One op applied to earlier values, given by their positions in the recipe.

    ``attrs`` are keyword arguments of the op function.
    """

    op: str
    operands: tuple[int, ...]
    attrs: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class GraphRecipe:
    """Inputs and steps in declaration order, each value's shape, a value seed.

    Value i is ``entries[i]``, declared as the graph value named "v{i}".
    """

    entries: tuple[InputSpec | Step, ...]
    shapes: tuple[tuple[int, ...], ...]
    value_seed: int

    def __repr__(self) -> str:
        lines = [f"GraphRecipe(value_seed={self.value_seed}):"]
        for i, entry in enumerate(self.entries):
            if isinstance(entry, InputSpec):
                kind = "constant" if entry.constant else "input"
                values = (
                    f"labels < {entry.classes}"
                    if entry.classes is not None
                    else f"uniform({entry.low}, {entry.high})"
                )
                lines.append(f"  v{i} = {kind}({entry.shape})  # {values}")
                continue
            operands = [f"v{j}" for j in entry.operands]
            attrs = [f"{key}={value!r}" for key, value in entry.attrs]
            arguments = ", ".join(operands + attrs)
            lines.append(f"  v{i} = {entry.op}({arguments})  # {self.shapes[i]}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer: object, cycle: bool) -> None:
        # Hypothesis prints failing examples with this hook.
        printer.text(repr(self))

    @property
    def steps(self) -> list[Step]:
        return [entry for entry in self.entries if isinstance(entry, Step)]

    def ops(self) -> set[str]:
        """The op functions the steps call, with scale counted as mul."""
        return {"mul" if step.op == "scale" else step.op for step in self.steps}

    def features(self) -> set[str]:
        """Name the op families, shapes and broadcasting cases the recipe has."""
        found = {f"family: {FAMILY_OF[step.op]}" for step in self.steps}
        for entry in self.entries:
            if isinstance(entry, InputSpec) and entry.constant:
                fill = entry.low == entry.high
                found.add("leaf: constant fill" if fill else "leaf: constant")
        for shape in self.shapes:
            if 1 in shape:
                found.add("shape: size-1 axis")
            if shape == ():
                found.add("shape: 0-d value")
            for prime in (7, 13, 67, 257):
                if prime in shape:
                    found.add(f"shape: prime size {prime}")
        for step in self.steps:
            found |= self._broadcasts(step)
        return found

    def _broadcasts(self, step: Step) -> set[str]:
        shapes = [self.shapes[i] for i in step.operands]
        found = set()
        if step.op in ("add", "sub", "mul", "div") and shapes[0] != shapes[1]:
            found.add("broadcast: elementwise operands differ")
            if () in shapes:
                found.add("broadcast: 0-d operand")
            if len(shapes[0]) != len(shapes[1]):
                found.add("broadcast: leading axes added")
            else:
                found.add("broadcast: size-1 axes stretched")
        if step.op == "matmul" and shapes[0][:-2] != shapes[1][:-2]:
            found.add("broadcast: matmul batch axes")
        if step.op == "broadcast_to":
            found.add("broadcast: broadcast_to")
        return found


def to_index(items: tuple) -> tuple:
    """Turn a recipe's index items into a NumPy basic index."""
    index = []
    for item in items:
        if item == "...":
            index.append(Ellipsis)
        elif isinstance(item, tuple):
            index.append(slice(*item[1:]))
        else:
            index.append(item)
    return tuple(index)


BUILDERS: dict[str, Callable[..., Tensor]] = {
    "add": lg.add,
    "sub": lg.sub,
    "mul": lg.mul,
    "div": lg.div,
    "scale": lambda x, factor: lg.mul(x, factor),
    "neg": lg.neg,
    "exp": lg.exp,
    "log": lg.log,
    "sqrt": lg.sqrt,
    "relu": lg.relu,
    "leaky_relu": lg.leaky_relu,
    "tanh": lg.tanh,
    "sigmoid": lg.sigmoid,
    "matmul": lg.matmul,
    "linear": lg.linear,
    "sum": lg.sum,
    "mean": lg.mean,
    "max": lg.max,
    "transpose": lg.transpose,
    "reshape": lg.reshape,
    "concat": lambda *values, axis: lg.concat(values, axis),
    "slice": lambda x, index: x[to_index(index)],
    "broadcast_to": lg.broadcast_to,
    "softmax": lg.softmax,
    "softmax_cross_entropy": lg.softmax_cross_entropy,
}


@dataclass(frozen=True)
class BuiltGraph:
    """A recipe declared in a graph, with its outputs and weighted-sum loss."""

    graph: Graph
    inputs: tuple[Tensor, ...]
    outputs: dict[str, Tensor]
    loss: Tensor

    @property
    def float_inputs(self) -> list[Tensor]:
        return [t for t in self.inputs if t.dtype.kind == "f"]


def build_graph(recipe: GraphRecipe, dtype: str) -> BuiltGraph:
    """Declare ``recipe`` in a new graph; every value no step reads is an output.

    The loss is the sum over outputs of sum(output * w) for fixed standard
    normal weights w, so every output element has its own weight.
    """
    graph = Graph("property", dtype=dtype)
    constants = np.random.default_rng([recipe.value_seed, 2])
    values: list[Tensor] = []
    inputs = []
    for i, entry in enumerate(recipe.entries):
        if isinstance(entry, InputSpec) and entry.constant:
            value = constants.uniform(entry.low, entry.high, entry.shape)
            values.append(graph.constant(value.astype(dtype), name=f"v{i}"))
        elif isinstance(entry, InputSpec):
            label_dtype = "int64" if entry.classes is not None else None
            values.append(graph.input(f"v{i}", entry.shape, dtype=label_dtype))
            inputs.append(values[-1])
        else:
            operands = [values[j] for j in entry.operands]
            values.append(BUILDERS[entry.op](*operands, **dict(entry.attrs)))
    read = {j for step in recipe.steps for j in step.operands}
    outputs = {
        f"v{i}": values[i]
        for i, entry in enumerate(recipe.entries)
        if isinstance(entry, Step) and i not in read
    }
    rng = np.random.default_rng([recipe.value_seed, 1])
    terms = [
        lg.sum(y * rng.standard_normal(y.shape).astype(dtype)) for y in outputs.values()
    ]
    loss = terms[0]
    for term in terms[1:]:
        loss = loss + term
    return BuiltGraph(graph, tuple(inputs), outputs, loss)


def draw_feeds(recipe: GraphRecipe, dtype: str) -> dict[str, np.ndarray]:
    """Draw every input's values from its range with the recipe's seed."""
    rng = np.random.default_rng([recipe.value_seed, 0])
    feeds = {}
    for i, entry in enumerate(recipe.entries):
        if not isinstance(entry, InputSpec) or entry.constant:
            continue
        if entry.classes is not None:
            feeds[f"v{i}"] = rng.integers(0, entry.classes, entry.shape)
        else:
            values = rng.uniform(entry.low, entry.high, entry.shape)
            feeds[f"v{i}"] = values.astype(dtype)
    return feeds


# Values closer than this to a kink count as the same value: ties and zeros
# that the graph's structure makes exact, such as the copies that a
# broadcast makes, move together when an input changes.
STRUCTURAL_TIE = 1e-12


def kink_margin(built: BuiltGraph, feeds: dict[str, np.ndarray]) -> float:
    """Return the distance of the values from the nearest kink or max tie.

    relu and leaky_relu operands are measured from 0, and each max is
    measured from the runner-up of its reduced group. Exact ties and zeros
    (see STRUCTURAL_TIE) are left out.
    """
    graph = built.graph
    nodes = [t.node for t in built.outputs.values()]
    values = evaluate(graph, nodes, feeds)
    margin = math.inf
    for node in values:
        data = graph.nx.nodes[node]
        if data["kind"] != OP:
            continue
        operand = values[graph.operands(node)[0]].astype(np.float64)
        if data["op"].name in ("relu", "leaky_relu"):
            gaps = np.abs(operand)
        elif data["op"].name == "max":
            axes = data["op"].axes(operand.ndim)
            last = list(range(operand.ndim - len(axes), operand.ndim))
            group = math.prod(operand.shape[a] for a in axes)
            rows = np.moveaxis(operand, axes, last).reshape(-1, group)
            gaps = rows.max(axis=1, keepdims=True) - rows
        else:
            continue
        moving = gaps[gaps > STRUCTURAL_TIE]
        margin = min(margin, float(moving.min(initial=math.inf)))
    return margin
