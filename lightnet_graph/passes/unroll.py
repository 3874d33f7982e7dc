"""The unroll pass: each recurrence becomes T copies of its step graph.

Step t slices x_t = xs[t] out of the input sequence, copies the traced step
graph's ops over x_t, the parameters and the states that step t - 1 left,
and names the states it produces ``NAME.STATE@t``. A recurrence declares one
node per value it returns (the outputs and each final state), all over the
same operands. The pass unrolls each recurrence once and points every one of
those nodes at the value it selects. Work and result size are linear in T.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..errors import GraphError
from ..graph import CONSTANT, OP, Graph, Location, Tensor, TensorType
from ..ops.base import Op
from ..ops.shape import Concat, Reshape, Slice, normalize_index
from ..recurrence import LAST, OUTPUTS, Recurrence, Select, StepGraph

logger = logging.getLogger(__name__)


def unroll(graph: Graph) -> dict[int, int]:
    """Unroll every recurrence of ``graph`` in place.

    Return a map from each removed recurrence node to the node that now
    computes its value, so that callers can update their references.
    """
    replacements: dict[int, int] = {}
    unrolled: dict[tuple, _Unrolled] = {}
    order = [
        node
        for node in graph.topological_order()
        if graph.nx.nodes[node]["kind"] == OP
        and isinstance(graph.nx.nodes[node]["op"], Recurrence)
    ]
    for node in order:
        data = graph.nx.nodes[node]
        op = data["op"]
        # Operands are read now, not before the loop: unrolling an earlier
        # layer rewires the recurrences that read its outputs.
        operands = tuple(graph.operands(node))
        key = (id(op.step), operands)
        if key not in unrolled:
            unrolled[key] = _unroll_steps(graph, op, operands, data["location"])
        value = unrolled[key].value(graph, op.select)
        graph.replace_uses(node, value)
        graph.remove_node(node)
        replacements[node] = value
    if unrolled:
        logger.debug(
            "unroll: %d recurrences, %d nodes after",
            len(unrolled),
            graph.nx.number_of_nodes(),
        )
    return replacements


class _Unrolled:
    """The per-step outputs and final states of one unrolled recurrence."""

    def __init__(
        self,
        step: StepGraph,
        ys: list[int],
        states: list[int],
        location: Location | None,
    ) -> None:
        self.step = step
        self.ys = ys
        self.states = states
        self.location = location
        self.stacked: int | None = None

    def value(self, graph: Graph, select: Select) -> int:
        """Return the node of the selected value; stack the outputs on first use."""
        if select == LAST:
            return self.ys[-1]
        if select != OUTPUTS:
            return self.states[select]
        if self.stacked is None:
            self.stacked = _stack(graph, self.step, self.ys, self.location)
        return self.stacked


def _unroll_steps(
    graph: Graph, op: Recurrence, operands: Sequence[int], location: Location | None
) -> _Unrolled:
    """Copy the step graph T times, chaining each step's states into the next."""
    step: StepGraph = op.step
    nodes = step.graph.nx.nodes
    xs, rest = operands[0], operands[1:]
    count = len(step.states)
    state = list(rest[:count])
    bound = {
        placeholder: node
        for (_, placeholder), node in zip(step.params, rest[count:], strict=True)
    }
    names = _copy_names(step)
    constants: dict[int, int] = {}
    ys: list[int] = []
    x_type = nodes[step.x]["type"]

    for t in range(step.steps):
        index = normalize_index(t, graph.nx.nodes[xs]["type"].shape)
        x_t = _add(graph, Slice(index), [xs], x_type, f"{step.name}.x@{t}", location)
        mapping = dict(bound)
        mapping[step.x] = x_t
        mapping.update(zip(step.states, state, strict=True))
        for node in step.order:
            data = nodes[node]
            if data["kind"] == CONSTANT:
                if node not in constants:
                    constant = graph.constant(
                        data["value"], name=f"{step.name}.{data['name']}"
                    )
                    graph.nx.nodes[constant.node]["location"] = data["location"]
                    constants[node] = constant.node
                mapping[node] = constants[node]
                continue
            name = (
                f"{names[node]}@{t}"
                if node in names
                else f"{step.name}.{data['name']}@{t}"
            )
            args = [mapping[n] for n in step.operands[node]]
            mapping[node] = _add(
                graph,
                data["op"],
                args,
                data["type"],
                name,
                data["location"],
                exact=node in names,
            )
        state = _named_states(graph, step, mapping, t, location)
        ys.append(mapping[step.output])

    return _Unrolled(step, ys, state, location)


def _copy_names(step: StepGraph) -> dict[int, str]:
    """Names for the step's results; their copies get ``@t`` appended."""
    names: dict[int, str] = {}
    for state_name, node in zip(step.state_names, step.new_states, strict=True):
        if step.graph.nx.nodes[node]["kind"] == OP:
            names.setdefault(node, f"{step.name}.{state_name}")
    if step.graph.nx.nodes[step.output]["kind"] == OP:
        names.setdefault(step.output, f"{step.name}.y")
    return names


def _named_states(
    graph: Graph,
    step: StepGraph,
    mapping: dict[int, int],
    t: int,
    location: Location | None,
) -> list[int]:
    """Return the states after step t, each reachable as ``NAME.STATE@t``.

    A state that the step passes through unchanged, or that shares its node
    with another state, gets an identity reshape to carry its name.
    """
    state = []
    for state_name, node in zip(step.state_names, step.new_states, strict=True):
        value = mapping[node]
        name = f"{step.name}.{state_name}@{t}"
        if graph.nx.nodes[value]["name"] != name:
            ttype = graph.nx.nodes[value]["type"]
            value = _add(
                graph, Reshape(ttype.shape), [value], ttype, name, location, exact=True
            )
        state.append(value)
    return state


def _stack(
    graph: Graph, step: StepGraph, ys: list[int], location: Location | None
) -> int:
    """Stack the per-step outputs y_t into one (T, ...) value."""
    y_type = graph.nx.nodes[ys[0]]["type"]
    row_type = TensorType((1,) + y_type.shape, y_type.dtype)
    rows = [
        _add(
            graph,
            Reshape(row_type.shape),
            [y],
            row_type,
            f"{step.name}.row@{t}",
            location,
        )
        for t, y in enumerate(ys)
    ]
    if len(rows) == 1:
        return rows[0]
    stacked_type = TensorType((len(ys),) + y_type.shape, y_type.dtype)
    return _add(
        graph, Concat(0), rows, stacked_type, f"{step.name}.outputs@all", location
    )


def _add(
    graph: Graph,
    op: Op,
    operands: Sequence[int],
    ttype: TensorType,
    name: str,
    location: Location | None,
    exact: bool = False,
) -> int:
    """Add an op node with a known type and the location it stands for.

    With ``exact``, ``name`` must be free, because callers look the value
    up by that name (compile()'s ``wrt`` accepts it).
    """
    if exact and name in graph:
        raise GraphError(
            f"graph {graph.name!r} already has a value named {name!r}, the name the "
            "unrolled recurrence gives one of its states; rename that value"
        )
    tensor = graph.add_op(op, [Tensor(graph, n) for n in operands], ttype, name=name)
    graph.nx.nodes[tensor.node]["location"] = location
    return tensor.node
