"""Statement order and buffer reuse for the generated NumPy module.

``statement_order`` runs each op just before the first statement that
needs it, which keeps few values live; ``plan_buffers`` then reuses
buffers by liveness over that order.

Each op that writes with ``out=`` needs a buffer of its type. A buffer is
free again after the last statement that reads its value, directly or
through views of it (slice, reshape, transpose, broadcast_to), so a later
value of the same shape and dtype can take it. A statement's output never
shares a buffer with its operands, because buffers are freed only after
the statement that reads them last. Outputs and new state values keep
their buffers to the end, where ``run`` copies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lightnet_graph.graph import OP, Graph


@dataclass
class BufferPlan:
    """The buffer each value is written into, and the values of each buffer."""

    buffer_of: dict[int, str] = field(default_factory=dict)
    types: dict[str, tuple[tuple[int, ...], object]] = field(default_factory=dict)
    values: dict[str, list[int]] = field(default_factory=dict)


def plan_buffers(
    graph: Graph,
    order: list[int],
    outputs: Mapping[str, int],
    names: Mapping[int, str],
) -> BufferPlan:
    """Assign a buffer to every value written with ``out=``, reusing dead ones."""
    position = {node: index for index, node in enumerate(order)}
    writes = {
        node
        for node in order
        if graph.nx.nodes[node]["kind"] == OP and graph.nx.nodes[node]["op"].writes_out
    }
    # The written values whose buffer each value's memory lies in.
    owners: dict[int, frozenset[int]] = {}
    for node in order:
        if node in writes:
            owners[node] = frozenset((node,))
        elif graph.nx.nodes[node]["kind"] == OP:
            owners[node] = frozenset().union(*(owners[n] for n in graph.operands(node)))
        else:
            owners[node] = frozenset()

    end = len(order)
    last_use = {node: position[node] for node in writes}
    for node in order:
        for operand in graph.operands(node):
            for owner in owners[operand]:
                last_use[owner] = max(last_use[owner], position[node])
    for node in list(outputs.values()) + list(graph.updates.values()):
        for owner in owners[node]:
            last_use[owner] = end
    freed_after: dict[int, list[int]] = {}
    for owner, index in last_use.items():
        freed_after.setdefault(index, []).append(owner)

    plan = BufferPlan()
    free: dict[tuple, list[str]] = {}
    for index, node in enumerate(order):
        if node in writes:
            ttype = graph.nx.nodes[node]["type"]
            key = (ttype.shape, ttype.dtype)
            pool = free.get(key)
            name = pool.pop() if pool else names[node]
            if name not in plan.types:
                plan.types[name] = key
                plan.values[name] = []
            plan.buffer_of[node] = name
            plan.values[name].append(node)
        for owner in freed_after.get(index, ()):
            ttype = graph.nx.nodes[owner]["type"]
            free.setdefault((ttype.shape, ttype.dtype), []).append(
                plan.buffer_of[owner]
            )
    return plan


def statement_order(graph: Graph, outputs: Mapping[str, int]) -> list[int]:
    """Return the order of the generated statements, chosen to keep few values live.

    Inputs, parameters, states and constants come first, by id. Ops follow
    depth first from each output and then each new state value, so every
    op runs just before the first statement that needs it: a backward
    step's terms are computed where the step runs, not all at the start
    of the backward pass. Ops that nothing needs come last.
    """
    order = [n for n in sorted(graph.nx) if graph.nx.nodes[n]["kind"] != OP]
    seen = set(order)
    for root in list(outputs.values()) + list(graph.updates.values()):
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(graph.operands(root)))]
        while stack:
            node, operands = stack[-1]
            for operand in operands:
                if operand not in seen:
                    seen.add(operand)
                    stack.append((operand, iter(graph.operands(operand))))
                    break
            else:
                stack.pop()
                order.append(node)
    order += [n for n in graph.topological_order() if n not in seen]
    return order
