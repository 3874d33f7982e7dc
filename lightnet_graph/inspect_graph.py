"""Views of one graph stage: text, JSON-ready data and DOT.

The text view prints one line per value: its name, op, dtype and shape,
and the values it reads. Lines are grouped in sections. The inputs,
parameters and states come first, then one section per line of the user's
source that declared values, ordered by where those lines' ops first
appear in the graph. Inside a section, the values that an unrolled
recurrence made for step t sit under a "step t" heading. From the backward
stage on, values that did not exist after unrolling (gradients, optimizer
updates, folded constants) form a last section. At the declared stage a
recurrence is folded: its step graph is shown once, with T, below the first
value that the recurrence declares.

:mod:`lightnet_graph.inspect` documents the JSON structure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from .graph import CONSTANT, INPUT, OP, PARAMETER, STATE, Graph
from .recurrence import LAST, OUTPUTS, Recurrence, StepGraph

LEAVES_SECTION = "inputs, parameters and states"
ADDED_SECTION = "added after unrolling: gradients and the values passes made from them"
NO_LINE_SECTION = "declared outside user code"

_STEP_NAME = re.compile(r"@(?P<step>\d+)$")
# Column widths grow with the longest entry up to these, then lines go ragged.
_MAX_NAME_WIDTH = 32
_MAX_TYPE_WIDTH = 20


@dataclass(frozen=True)
class StageGraph:
    """A stage's graph and the facts its views mark on it.

    ``outputs`` maps the program's output names to nodes of this graph,
    and ``unrolled_nodes`` contains the nodes of the unrolled stage, which
    tells apart the values that autodiff and later passes added.
    """

    stage: str
    graph: Graph
    outputs: Mapping[str, int]
    unrolled_nodes: frozenset[int] | None


def location_label(location: Any) -> str | None:
    """Return "file.py:LINE" for a node's location, without the folder."""
    if location is None:
        return None
    return f"{os.path.basename(location.filename)}:{location.lineno}"


def section_of(view: StageGraph, node: int) -> tuple[str, str | None]:
    """Return the section and, for unrolled values, the step heading of ``node``."""
    data = view.graph.nx.nodes[node]
    if data["kind"] in (INPUT, PARAMETER, STATE):
        return LEAVES_SECTION, None
    if view.unrolled_nodes is not None and node not in view.unrolled_nodes:
        return ADDED_SECTION, None
    section = location_label(data["location"]) or NO_LINE_SECTION
    match = _STEP_NAME.search(data["name"])
    if match is None:
        return section, None
    return section, f"step {match.group('step')}"


def value_record(graph: Graph, node: int) -> dict[str, Any]:
    """Return the JSON-ready description of one value (see the schema)."""
    data = graph.nx.nodes[node]
    op = data.get("op")
    ttype = data["type"]
    return {
        "id": node,
        "name": data["name"],
        "kind": data["kind"],
        "op": None if op is None else op.name,
        "attrs": {} if op is None else _attrs(op),
        "shape": list(ttype.shape),
        "dtype": ttype.dtype.name,
        "inputs": [graph.nx.nodes[n]["name"] for n in graph.operands(node)],
        "location": location_label(data["location"]),
    }


def _attrs(op: Any) -> dict[str, str]:
    if isinstance(op, Recurrence):
        return {"step": op.step.name, "T": str(op.step.steps), "select": str(op.select)}
    return {key: repr(value) for key, value in op.attrs.items()}


# -- text --------------------------------------------------------------------------


def graph_text(view: StageGraph) -> str:
    """Return the stage as text: a header, then one line per value, by section."""
    graph = view.graph
    order = graph.topological_order()
    lines = [_header(view, order)]
    marks = _marks(view)
    columns = _Columns.fit(graph, order, indent=4)
    folded: set[int] = set()
    for section, nodes in _sections(view, order):
        lines += ["", section]
        heading = None
        for node in nodes:
            step = section_of(view, node)[1]
            if step is not None and step != heading:
                lines.append(f"  {step}")
            heading = step
            indent = "  " if step is None else "    "
            lines.append(columns.line(graph, node, marks.get(node), indent))
            op = graph.nx.nodes[node].get("op")
            if isinstance(op, Recurrence) and id(op.step) not in folded:
                folded.add(id(op.step))
                lines.extend(_step_lines(op.step, indent + "    "))
    return "\n".join(lines) + "\n"


def _sections(view: StageGraph, order: list[int]) -> list[tuple[str, list[int]]]:
    """Split ``order`` into sections, each keeping topological order.

    The leaves come first and the values added after unrolling last. The
    source-line sections in between are ordered by their first op, so that
    a line's constants, which sort early, do not move it ahead of the ops
    it feeds.
    """
    members: dict[str, list[int]] = {}
    first_op: dict[str, int] = {}
    for position, node in enumerate(order):
        section = section_of(view, node)[0]
        members.setdefault(section, []).append(node)
        if view.graph.nx.nodes[node]["kind"] == OP:
            first_op.setdefault(section, position)

    def rank(section: str) -> tuple[int, int]:
        if section == LEAVES_SECTION:
            return 0, 0
        if section == ADDED_SECTION:
            return 2, 0
        return 1, first_op.get(section, len(order))

    return [(section, members[section]) for section in sorted(members, key=rank)]


def _header(view: StageGraph, order: list[int]) -> str:
    counts: dict[str, int] = {}
    for node in order:
        kind = view.graph.nx.nodes[node]["kind"]
        counts[kind] = counts.get(kind, 0) + 1
    parts = [
        f"{counts.get(kind, 0)} {label}"
        for kind, label in (
            (INPUT, "inputs"),
            (PARAMETER, "parameters"),
            (STATE, "states"),
            (CONSTANT, "constants"),
            (OP, "ops"),
        )
    ]
    return (
        f"graph {view.graph.name!r} at stage {view.stage}: {len(order)} values "
        f"({', '.join(parts)})"
    )


def _marks(view: StageGraph) -> dict[int, str]:
    """Return, per node, the note that it is an output or a state's new value."""
    notes: dict[int, list[str]] = {}
    for name, node in view.outputs.items():
        if node in view.graph.nx:
            notes.setdefault(node, []).append(f"output {name!r}")
    for target, value in view.graph.updates.items():
        target_name = view.graph.nx.nodes[target]["name"]
        notes.setdefault(value, []).append(f"new value of {target_name!r}")
    return {node: "; ".join(texts) for node, texts in notes.items()}


@dataclass(frozen=True)
class _Columns:
    """Widths of the name (with its indent), op and type columns of value lines."""

    name: int
    op: int
    type: int

    @classmethod
    def fit(cls, graph: Graph, nodes: list[int], indent: int) -> _Columns:
        data = [graph.nx.nodes[node] for node in nodes]
        names = [len(d["name"]) for d in data]
        ops = [len(d["op"].name if d["kind"] == OP else d["kind"]) for d in data]
        types = [len(str(d["type"])) for d in data]
        return cls(
            indent + min(max(names, default=0), _MAX_NAME_WIDTH),
            max(ops, default=0),
            min(max(types, default=0), _MAX_TYPE_WIDTH),
        )

    def line(self, graph: Graph, node: int, mark: str | None, indent: str) -> str:
        """Return one value's line, starting with ``indent``."""
        data = graph.nx.nodes[node]
        op = data.get("op")
        operation = data["kind"] if op is None else op.name
        name = indent + data["name"]
        text = (
            f"{name:<{self.name}}  {operation:<{self.op}}  "
            f"{str(data['type']):<{self.type}}"
        )
        operands = [graph.nx.nodes[n]["name"] for n in graph.operands(node)]
        if operands:
            text += "  <- " + ", ".join(operands)
        if isinstance(op, Recurrence):
            text += f"  [{_selection(op)}]"
        if mark:
            text += f"  => {mark}"
        return text.rstrip()


def _selection(op: Recurrence) -> str:
    if op.select == OUTPUTS:
        return f"every step's y stacked, T = {op.step.steps}"
    if op.select == LAST:
        return "the last step's y"
    return f"final state {op.step.state_names[op.select]!r}"


def _step_lines(step: StepGraph, indent: str) -> list[str]:
    """Return the folded step graph: placeholders, ops and what it returns."""
    graph = step.graph
    lines = [
        f"{indent[:-2]}step function {step.name!r}, traced once and unrolled "
        f"T = {step.steps} times:"
    ]
    placeholders = [step.x, *step.states, *(node for _, node in step.params)]
    nodes = [*placeholders, *step.order]
    columns = _Columns.fit(graph, nodes, indent=len(indent))
    for node in nodes:
        lines.append(columns.line(graph, node, None, indent))
    returns = [
        f"{name} = {graph.nx.nodes[node]['name']}"
        for name, node in zip(step.state_names, step.new_states, strict=True)
    ]
    returns.append(f"y = {graph.nx.nodes[step.output]['name']}")
    lines.append(f"{indent}returns {', '.join(returns)}")
    return lines


# -- JSON ----------------------------------------------------------------------------


def graph_json(view: StageGraph) -> dict[str, Any]:
    """Return the stage's values, outputs, updates and folded recurrences."""
    graph = view.graph
    values = []
    steps: dict[int, StepGraph] = {}
    for node in graph.topological_order():
        record = value_record(graph, node)
        section, step = section_of(view, node)
        record["section"] = section
        record["step"] = None if step is None else int(step.split()[-1])
        values.append(record)
        op = graph.nx.nodes[node].get("op")
        if isinstance(op, Recurrence):
            steps.setdefault(id(op.step), op.step)
    names = {node: graph.nx.nodes[node]["name"] for node in graph.nx}
    return {
        "values": values,
        "outputs": {
            name: names[node] for name, node in view.outputs.items() if node in names
        },
        "updates": {
            names[target]: names[value] for target, value in graph.updates.items()
        },
        "recurrences": [_step_json(step) for step in steps.values()],
    }


def _step_json(step: StepGraph) -> dict[str, Any]:
    graph = step.graph
    placeholders = [step.x, *step.states, *(node for _, node in step.params)]
    names = graph.nx.nodes
    returns = {
        name: names[node]["name"]
        for name, node in zip(step.state_names, step.new_states, strict=True)
    }
    returns["y"] = names[step.output]["name"]
    return {
        "name": step.name,
        "T": step.steps,
        "inputs": [names[node]["name"] for node in placeholders],
        "values": [value_record(graph, node) for node in [*placeholders, *step.order]],
        "returns": returns,
    }


# -- DOT -----------------------------------------------------------------------------


def graph_dot(view: StageGraph) -> str:
    """Return the stage as a DOT digraph written by networkx through pydot.

    Nodes are ``n<id>`` with a label (name, op or kind, type), the value's
    kind and, when known, its source location. Edges are keyed by operand
    slot. A folded step graph's nodes are ``s<k>_<id>``, dashed, with a
    dotted edge from the step's result to each recurrence value it feeds.
    The JSON view carries the same values with every field.
    """
    graph = view.graph
    marks = _marks(view)
    dot = nx.MultiDiGraph(name=graph.name)
    steps: dict[int, tuple[str, StepGraph]] = {}
    for node in graph.topological_order():
        _add_dot_node(dot, f"n{node}", graph, node, marks.get(node))
        for slot, operand in enumerate(graph.operands(node)):
            dot.add_edge(f"n{operand}", f"n{node}", key=slot)
        op = graph.nx.nodes[node].get("op")
        if not isinstance(op, Recurrence):
            continue
        if id(op.step) not in steps:
            prefix = f"s{len(steps)}_"
            steps[id(op.step)] = (prefix, op.step)
            _add_step(dot, prefix, op.step)
        prefix, step = steps[id(op.step)]
        selected = op.select
        result = step.new_states[selected] if isinstance(selected, int) else step.output
        dot.add_edge(
            f"{prefix}{result}",
            f"n{node}",
            key="step",
            style="dotted",
            label=_quoted(f"T = {step.steps}"),
        )
    return nx.nx_pydot.to_pydot(dot).to_string()


def _add_dot_node(
    dot: nx.MultiDiGraph,
    key: str,
    graph: Graph,
    node: int,
    mark: str | None,
    step: StepGraph | None = None,
) -> None:
    data = graph.nx.nodes[node]
    op = data.get("op")
    operation = data["kind"] if op is None else op.name
    label = f"{data['name']}\n{operation} {data['type']}"
    if mark:
        label += f"\n{mark}"
    attributes = {
        "label": _quoted(label),
        "kind": data["kind"],
        "shape": "box" if data["kind"] == OP else "ellipse",
    }
    location = location_label(data["location"])
    if location is not None:
        attributes["location"] = _quoted(location)
    if step is not None:
        attributes["style"] = "dashed"
        attributes["recurrence"] = _quoted(step.name)
    dot.add_node(key, **attributes)


def _add_step(dot: nx.MultiDiGraph, prefix: str, step: StepGraph) -> None:
    graph = step.graph
    placeholders = [step.x, *step.states, *(node for _, node in step.params)]
    for node in [*placeholders, *step.order]:
        _add_dot_node(dot, f"{prefix}{node}", graph, node, None, step)
    for node in step.order:
        for slot, operand in enumerate(step.operands[node]):
            dot.add_edge(f"{prefix}{operand}", f"{prefix}{node}", key=slot)


def _quoted(text: str) -> str:
    """Quote an attribute for pydot, which writes it unchanged when quoted."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
