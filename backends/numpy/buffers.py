"""Buffer reuse for the generated NumPy module: liveness over the statement order.

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
