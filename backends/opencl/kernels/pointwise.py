"""Fused elementwise kernels: one work-item per element of the output.

A cluster of elementwise ops (see :mod:`..analysis`) becomes one kernel.
Values passed between ops of the cluster stay in registers. Every other
operand is loaded through an access (offset and strides as arguments), so
broadcasting, transposes and slices cost no copies. ``one_hot``, ``gather``
and ``unslice`` read their operands at positions computed from the output
index. Global sizes are rounded up to the work-group size and each
work-item checks ``i < n``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lightnet_graph.graph import CONSTANT

from .. import views
from ..analysis import Analysis
from ..views import View
from .common import KernelBuilder, KernelSource, ctype, literal

_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_FUNCTIONS = {"exp": "exp", "log": "log", "sqrt": "sqrt", "tanh": "tanh"}

_SIGMOID = """
inline {t} lg_sigmoid_{t}(const {t} x)
{{
    /* 1 / (1 + e^-x) from e^-|x|, which never overflows. */
    const {t} e = exp(-fabs(x));
    return x >= ({t})0 ? ({t})1 / (({t})1 + e) : e / (({t})1 + e);
}}
"""


def cluster_kernel(
    a: Analysis, members: list[int], writes: dict[int, tuple[Any, View]]
) -> tuple[KernelSource, list, int]:
    """Generate the kernel of a fused cluster.

    ``writes`` maps each member that leaves the kernel to the storage and
    view it is written to. Returns the kernel, its arguments and the number
    of work-items (the elements of one member).
    """
    nodes = a.graph.nx.nodes
    n = nodes[members[0]]["type"].size
    assert all(nodes[m]["type"].size == n for m in members), (
        "one index space per kernel"
    )
    k = KernelBuilder("pointwise")
    k.integer("n", n)
    emitter = _Emitter(a, k, set(members))
    outputs = []
    for member in members:
        if member in writes:
            storage, view = writes[member]
            dtype = nodes[member]["type"].dtype
            name = f"out{len(outputs)}"
            k.buffer(name, dtype, storage, writable=True)
            structure = k.access(name, views.access(view))
            outputs.append((member, name, structure))
    k.line("const int i = get_global_id(0);")
    k.line("if (i >= n) return;")
    for member in members:
        emitter.emit(member)
    for member, name, structure in outputs:
        k.line(f"{name}[{k.address(name, structure, 'i')}] = {emitter.values[member]};")
    source, args = k.finish()
    return source, args, n


def copy_kernel(
    dtype: Any,
    source: tuple[Any, View],
    target: tuple[Any, View],
) -> tuple[KernelSource, list, int]:
    """Generate a kernel that copies one view into another, in row-major order."""
    k = KernelBuilder("copy")
    n = source[1].size
    k.integer("n", n)
    k.buffer("out", dtype, target[0], writable=True)
    out = k.access("out", views.access(target[1]))
    k.buffer("x", dtype, source[0])
    x = k.access("x", views.access(source[1]))
    k.line("const int i = get_global_id(0);")
    k.line("if (i >= n) return;")
    k.line(f"out[{k.address('out', out, 'i')}] = x[{k.address('x', x, 'i')}];")
    kernel, args = k.finish()
    return kernel, args, n


def fill_kernel(
    dtype: Any,
    target: tuple[Any, View],
    value: float = 0.0,
) -> tuple[KernelSource, list, int]:
    """Generate a kernel that sets every element of a view to ``value``."""
    k = KernelBuilder("fill")
    n = target[1].size
    k.integer("n", n)
    k.buffer("out", dtype, target[0], writable=True)
    out = k.access("out", views.access(target[1]))
    k.line("const int i = get_global_id(0);")
    k.line("if (i >= n) return;")
    k.line(f"out[{k.address('out', out, 'i')}] = {literal(value, dtype)};")
    kernel, args = k.finish()
    return kernel, args, n


class _Emitter:
    """Emits one statement per cluster member and the loads it needs."""

    def __init__(self, a: Analysis, k: KernelBuilder, members: set[int]) -> None:
        self.a = a
        self.k = k
        self.members = members
        self.values: dict[int, str] = {}
        self.loads: dict[tuple, str] = {}
        self.scalars: dict[int, str] = {}

    def emit(self, node: int) -> None:
        a, k = self.a, self.k
        data = a.graph.nx.nodes[node]
        op = data["op"]
        dtype = data["type"].dtype
        t = k.note_dtype(dtype)
        name = f"v{len(self.values)}"
        self.values[node] = name
        operands = a.operands[node]
        shape = data["type"].shape
        if op.name in _BINARY:
            x, y = (self.operand(node, o, shape) for o in operands)
            expression = f"{x} {_BINARY[op.name]} {y}"
        elif op.name == "equal":
            x, y = (self.operand(node, o, shape) for o in operands)
            expression = f"({x} == {y}) ? {literal(1, dtype)} : {literal(0, dtype)}"
        elif op.name == "neg":
            expression = f"-{self.operand(node, operands[0], shape)}"
        elif op.name in _FUNCTIONS:
            expression = (
                f"{_FUNCTIONS[op.name]}({self.operand(node, operands[0], shape)})"
            )
        elif op.name == "relu":
            x = self.operand(node, operands[0], shape)
            # NaN passes through, as np.maximum(x, 0) lets it.
            expression = (
                f"({x} > {literal(0, dtype)} || {x} != {x}) ? {x} : {literal(0, dtype)}"
            )
        elif op.name == "leaky_relu":
            x = self.operand(node, operands[0], shape)
            expression = (
                f"{x} > {literal(0, dtype)} ? {x} : {x} * {literal(op.alpha, dtype)}"
            )
        elif op.name == "step":
            x = self.operand(node, operands[0], shape)
            expression = f"{x} > {literal(0, dtype)} ? {literal(1, dtype)} : {literal(op.low, dtype)}"
        elif op.name == "sigmoid":
            k.helper(_SIGMOID.format(t=t))
            expression = f"lg_sigmoid_{t}({self.operand(node, operands[0], shape)})"
        elif op.name == "cast":
            expression = f"({t})({self.operand(node, operands[0], shape)})"
        elif op.name == "reshape":
            expression = self.operand(
                node, operands[0], a.graph.nx.nodes[operands[0]]["type"].shape
            )
        elif op.name == "one_hot":
            expression = self._one_hot(node, op, dtype)
        elif op.name == "gather":
            expression = self._gather(node, dtype)
        elif op.name == "unslice":
            expression = self._unslice(node, op, dtype)
        else:
            raise AssertionError(f"op {op.name} is not elementwise")
        k.line(f"const {t} {name} = {expression};")

    def operand(
        self, consumer: int, operand: int, shape: tuple, index: str = "i"
    ) -> str:
        """Return the C expression of ``operand`` at element ``index`` of ``shape``."""
        a = self.a
        base = a.ref[operand][0]
        if (
            (base, consumer) in a.fusible
            and base in self.members
            and base in self.values
        ):
            return self.values[base]
        data = a.graph.nx.nodes[operand]
        if a.graph.nx.nodes[base]["kind"] == CONSTANT and data["type"].size == 1:
            return self._scalar(base)
        storage, view = a.resolve(operand)
        if tuple(view.shape) != tuple(shape):
            view = views.broadcast(view, shape)
        return self.load(storage, view, data["type"].dtype, index)

    def load(self, storage: Any, view: View, dtype: Any, index: str) -> str:
        key = (storage, view, index)
        if key in self.loads:
            return self.loads[key]
        k = self.k
        name = f"in{len(self.loads)}"
        k.buffer(name, dtype, storage)
        structure = k.access(name, views.access(view))
        value = f"a{len(self.loads)}"
        k.line(
            f"const {ctype(dtype)} {value} = {name}[{k.address(name, structure, index)}];"
        )
        self.loads[key] = value
        return value

    def _scalar(self, constant: int) -> str:
        if constant not in self.scalars:
            value = self.a.graph.nx.nodes[constant]["value"]
            name = f"c{len(self.scalars)}"
            self.k.scalar(name, value.dtype, value.reshape(-1)[0])
            self.scalars[constant] = name
        return self.scalars[constant]

    def _one_hot(self, node: int, op: Any, dtype: np.dtype) -> str:
        k = self.k
        m = len(self.values) - 1
        depth = k.integer(f"depth{m}", op.depth)
        k.line(f"const int p{m} = i / {depth};")
        (indices,) = self.a.operands[node]
        shape = self.a.graph.nx.nodes[indices]["type"].shape
        label = self.operand(node, indices, shape, index=f"p{m}")
        return f"({label} == i - p{m} * {depth}) ? {literal(1, dtype)} : {literal(0, dtype)}"

    def _gather(self, node: int, dtype: np.dtype) -> str:
        a, k = self.a, self.k
        m = len(self.values) - 1
        table, indices = a.operands[node]
        table_type = a.graph.nx.nodes[table]["type"]
        row_size = int(np.prod(table_type.shape[1:], dtype=np.int64))
        width = k.integer(f"width{m}", row_size)
        rows = k.integer(f"rows{m}", table_type.shape[0])
        k.line(f"const int p{m} = i / {width};")
        index_shape = a.graph.nx.nodes[indices]["type"].shape
        row = self.operand(node, indices, index_shape, index=f"p{m}")
        storage, view = a.resolve(table)
        rest = View(view.shape[1:], view.strides[1:], view.offset)
        name = f"table{m}"
        k.buffer(name, dtype, storage)
        structure = k.access(name, views.access(rest))
        stride = k.integer(f"{name}_row", view.strides[0] if view.shape else 0)
        place = k.address(name, structure, f"(i - p{m} * {width})")
        # NOTE: an index outside [0, rows) reads as NaN; fed inputs are checked
        # on the host before the run.
        return (
            f"({row} >= 0 && {row} < {rows}) ? {name}[{place} + (int){row} * {stride}]"
            f" : {literal(float('nan'), dtype)}"
        )

    def _unslice(self, node: int, op: Any, dtype: np.dtype) -> str:
        a, k = self.a, self.k
        m = len(self.values) - 1
        (operand,) = a.operands[node]
        storage, view = a.resolve(operand)
        shape = op.shape
        rank = len(shape)
        name = f"part{m}"
        k.buffer(name, dtype, storage)
        k.integer(f"{name}_off", view.offset)
        k.line(f"int ok{m} = 1;")
        k.line(f"int at{m} = {name}_off;")
        kept = iter(view.strides)
        for axis, item in enumerate(op.index):
            pitch = int(np.prod(shape[axis + 1 :], dtype=np.int64))
            position = (
                "i"
                if axis == rank - 1
                else f"(i / {k.integer(f'{name}_p{axis}', pitch)})"
            )
            if axis > 0:
                position = f"({position} % {k.integer(f'{name}_d{axis}', shape[axis])})"
            if isinstance(item, int):
                start = k.integer(f"{name}_at{axis}", item)
                k.line(f"ok{m} = ok{m} && {position} == {start};")
                continue
            stride = k.integer(f"{name}_s{axis}", next(kept))
            start, stop, step = item
            if (start, stop, step) == (0, shape[axis], 1):
                k.line(f"at{m} += {position} * {stride};")
                continue
            first = k.integer(f"{name}_start{axis}", start)
            step_name = k.integer(f"{name}_step{axis}", step)
            count = k.integer(
                f"{name}_count{axis}",
                len(range(start, stop, step))
                if stop >= 0
                else len(range(start, -1, step)),
            )
            q = f"q{m}_{axis}"
            k.line(f"const int {q} = {position} - {first};")
            k.line(
                f"ok{m} = ok{m} && {q} % {step_name} == 0 && {q} / {step_name} >= 0"
                f" && {q} / {step_name} < {count};"
            )
            k.line(f"at{m} += ({q} / {step_name}) * {stride};")
        return f"ok{m} ? {name}[at{m}] : {literal(0, dtype)}"
