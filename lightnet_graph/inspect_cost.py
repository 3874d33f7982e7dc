"""Estimated floating-point operations and memory traffic of graph nodes.

These estimates feed a profile's GFLOP/s and GB/s columns. They are not
counts of what generated code executes. A matrix product of (m, k) by
(k, n), in matmul or linear, counts 2 m k n, plus one per output element
for linear's bias. Every other arithmetic op counts a fixed number of
operations per element, one unless ``_PER_ELEMENT`` lists more, so add,
tanh and exp count alike. Views and data movement (reshape, slice,
transpose, concat, gather, one_hot) count none. Memory traffic counts each
value that a group of nodes reads from outside the group once, plus each
value that the group writes for readers outside it, and ignores caches.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from .graph import OP, Graph

# Operations per element of the op's largest operand or output.
_PER_ELEMENT = {
    "softmax": 4,  # max, subtract and exp, sum, divide
    "softmax_cross_entropy": 5,
    "batch_norm": 8,
    "batch_norm_grad": 10,
    "leaky_relu": 2,
}
_FREE = {
    "reshape",
    "transpose",
    "slice",
    "unslice",
    "concat",
    "broadcast_to",
    "gather",
    "one_hot",
    "cast",
    "stop_gradient",
}


def node_flops(graph: Graph, node: int) -> int:
    """Return the estimated floating-point operations of one op node."""
    data = graph.nx.nodes[node]
    if data["kind"] != OP:
        return 0
    name = data["op"].name
    if name in _FREE:
        return 0
    out = data["type"]
    operands = [graph.nx.nodes[n]["type"] for n in graph.operands(node)]
    if name == "matmul":
        return 2 * operands[0].shape[-1] * out.size
    if name == "linear":
        return 2 * operands[0].shape[-1] * out.size + out.size
    largest = max([out.size, *(t.size for t in operands if t.dtype.kind == "f")])
    return _PER_ELEMENT.get(name, 1) * largest


def group_flops(graph: Graph, nodes: Iterable[int]) -> int:
    return sum(node_flops(graph, node) for node in nodes)


def group_bytes(graph: Graph, nodes: Collection[int], outputs: Collection[int]) -> int:
    """Return the bytes that computing ``nodes`` together reads and writes.

    ``outputs`` are nodes whose values leave the program (outputs and new
    values of states), which are written even when nothing reads them.
    """
    inside = set(nodes)
    read: set[int] = set()
    written = 0
    for node in inside:
        read.update(n for n in graph.operands(node) if n not in inside)
        consumers = graph.consumers(node)
        if node in outputs or any(c not in inside for c in consumers):
            written += graph.nx.nodes[node]["type"].nbytes
    return written + sum(graph.nx.nodes[n]["type"].nbytes for n in read)


def program_outputs(graph: Graph, outputs: Iterable[int]) -> set[int]:
    """Return the output nodes and the nodes that hold new values of states."""
    return set(outputs) | set(graph.updates.values())
