"""The verify pass: types, shapes, acyclicity and a known op at every node."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import GraphError, ShapeError, UnknownOpError
from ..graph import LEAF_KINDS, OP, Graph
from ..ops.base import REGISTRY


def verify(graph: Graph, outputs: Mapping[str, int]) -> None:
    """Check that ``graph`` can be compiled for ``outputs``; raise if not."""
    graph.topological_order()  # raises GraphError naming a cycle
    for name, node in outputs.items():
        if node not in graph.nx:
            raise GraphError(f"output {name!r} is not a value of graph {graph.name!r}")
    for node, data in graph.nx.nodes(data=True):
        if data["kind"] in LEAF_KINDS:
            if graph.nx.in_degree(node):
                raise GraphError(f"{data['kind']} {data['name']!r} has operands")
            continue
        if data["kind"] != OP:
            raise GraphError(f"node {data['name']!r} has unknown kind {data['kind']!r}")
        op = data["op"]
        if REGISTRY.get(op.name) is not type(op):
            raise UnknownOpError(
                f"value {data['name']!r} uses op {op.name!r}, which is not registered; "
                "decorate its class with lightnet_graph.ops.register"
            )
        operand_types = [graph.nx.nodes[n]["type"] for n in graph.operands(node)]
        expected = op.infer(*operand_types)
        if expected != data["type"]:
            raise ShapeError(
                f"{op.name} value {data['name']!r} is recorded as {data['type']} but its "
                f"operands give {expected}; the graph was changed after declaration"
            )
    for state, value in graph.updates.items():
        if graph.nx.nodes[state]["type"] != graph.nx.nodes[value]["type"]:
            raise ShapeError(
                f"state {graph.nx.nodes[state]['name']!r} is assigned a value of "
                f"another type"
            )
