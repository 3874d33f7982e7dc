"""Generating the NumPy module: one statement per op, buffers named after values.

Only generated identifiers reach the source: value names are turned into
Python identifiers, and user-given names appear only inside string literals
written with repr().
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from lightnet_graph.graph import (
    CONSTANT,
    INPUT,
    OP,
    PARAMETER,
    STATE,
    Graph,
    python_identifier,
)
from lightnet_graph.ops.base import literal

from .buffers import plan_buffers, statement_order

# Builtins are reserved because templates call some of them (slice() in
# unslice), and a value named "slice" must not shadow it.
_RESERVED = {
    "inputs",
    "parameters",
    "states",
    "constants",
    "buffers",
    "np",
    "k",
    "run",
    "allocate",
}
_RESERVED |= set(dir(builtins))


@dataclass
class GeneratedModule:
    """The generated source and what the executable needs to run it."""

    source: str
    constants: dict[str, np.ndarray]
    line_nodes: dict[int, int] = field(default_factory=dict)
    op_names: tuple[str, ...] = ()
    # The graph the source was generated from, which line_nodes refer to,
    # and its output nodes by name.
    graph: Graph | None = None
    outputs: dict[str, int] = field(default_factory=dict)
    # Each buffer of allocate() and the values written into it, in order.
    buffer_values: dict[str, tuple[str, ...]] = field(default_factory=dict)


def generate(graph: Graph, outputs: Mapping[str, int]) -> GeneratedModule:
    """Return the Python module that computes ``outputs`` of ``graph``."""
    order = statement_order(graph, outputs)
    names = _identifiers(graph, order)
    plan = plan_buffers(graph, order, outputs, names)
    constants: dict[str, np.ndarray] = {}
    body: list[tuple[str, int | None]] = []
    previous_location = None

    for node in order:
        data = graph.nx.nodes[node]
        kind, ident = data["kind"], names[node]
        if kind == INPUT:
            body.append((f"{ident} = inputs[{data['name']!r}]", None))
        elif kind == PARAMETER:
            body.append((f"{ident} = parameters[{data['name']!r}]", None))
        elif kind == STATE:
            body.append((f"{ident} = states[{data['name']!r}]", None))
        elif kind == CONSTANT:
            body.append(
                (f"{ident} = {_constant_source(ident, data['value'], constants)}", None)
            )
        elif kind == OP:
            location = data["location"]
            if location is not None and location != previous_location:
                filename = _printable(os.path.basename(location.filename))
                body.append((f"# {filename}:{location.lineno}", None))
                previous_location = location
            op = data["op"]
            args = [names[n] for n in graph.operands(node)]
            out = f"buffers[{plan.buffer_of[node]!r}]" if op.writes_out else "None"
            body.append((f"{ident} = {op.numpy(args, out)}", node))

    outputs_source = [
        f"        {name!r}: {names[node]}.copy()," for name, node in outputs.items()
    ]
    updates_source = [
        f"        {graph.nx.nodes[state]['name']!r}: {names[value]}.copy(),"
        for state, value in graph.updates.items()
    ]
    buffers = [
        f"        {name!r}: np.empty({shape!r}, dtype={literal(dtype)}),"
        for name, (shape, dtype) in plan.types.items()
    ]
    header = _header(graph, outputs)
    lines = header + [
        "",
        "",
        "def allocate():",
        '    """Return one preallocated buffer per value written with out=."""',
        "    return {",
        *buffers,
        "    }",
        "",
        "",
        "def run(inputs, parameters, states, constants, buffers):",
        '    """Compute the outputs and the new values of the states."""',
    ]
    line_nodes = {}
    for text, node in body:
        lines.append("    " + text)
        if node is not None:
            line_nodes[len(lines)] = node
    lines += [
        "    outputs = {",
        *outputs_source,
        "    }",
        "    new_states = {",
        *updates_source,
        "    }",
        "    return outputs, new_states",
        "",
    ]
    op_names = tuple(
        graph.nx.nodes[n]["name"] for n in order if graph.nx.nodes[n]["kind"] == OP
    )
    buffer_values = {
        name: tuple(names[n] for n in nodes) for name, nodes in plan.values.items()
    }
    return GeneratedModule(
        "\n".join(lines),
        constants,
        line_nodes,
        op_names,
        graph,
        dict(outputs),
        buffer_values,
    )


def _header(graph: Graph, outputs: Mapping[str, int]) -> list[str]:
    inputs = (
        ", ".join(f"{_printable(repr(t.name))} {t.type}" for t in graph.inputs)
        or "none"
    )
    n_ops = sum(1 for _, kind in graph.nx.nodes(data="kind") if kind == OP)
    return [
        f'"""Generated by lightnet-graph from graph {_printable(repr(graph.name))}: {n_ops} ops.',
        "",
        f"Inputs: {inputs}.",
        f"Outputs: {_printable(', '.join(repr(name) for name in outputs))}.",
        '"""',
        "",
        "import numpy as np",
        "",
        "from lightnet_graph.ops import kernels as k",
    ]


def _printable(text: str) -> str:
    """Replace characters that could end a comment line or a docstring."""
    return "".join(c if c.isprintable() and c not in '"\\' else "?" for c in text)


def _identifiers(graph: Graph, order: list[int]) -> dict[int, str]:
    used = set(_RESERVED)
    names = {}
    for node in order:
        base = python_identifier(graph.nx.nodes[node]["name"])
        ident, suffix = base, 2
        while ident in used:
            ident, suffix = f"{base}_{suffix}", suffix + 1
        used.add(ident)
        names[node] = ident
    return names


def _constant_source(
    ident: str, value: np.ndarray, constants: dict[str, np.ndarray]
) -> str:
    if value.ndim == 0 and value.dtype.kind in "fi":
        scalar = float(value) if value.dtype.kind == "f" else int(value)
        return f"np.{value.dtype.name}({literal(scalar)})"
    constants[ident] = value
    return f"constants[{ident!r}]"
