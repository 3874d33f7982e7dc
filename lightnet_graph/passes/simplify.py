"""The simplify pass: constant folding, algebraic identities, CSE and DCE.

It rewrites a graph in place and returns the output map with every output
pointing at the node that now computes it.
"""

from __future__ import annotations

import logging

import numpy as np

from ..graph import CONSTANT, OP, Graph

logger = logging.getLogger(__name__)

# Constants up to this many elements take part in CSE by value.
_CSE_CONSTANT_LIMIT = 4096


def simplify(graph: Graph, outputs: dict[str, int]) -> dict[str, int]:
    """Simplify ``graph`` until nothing changes; return the new output map."""
    outputs = dict(outputs)
    before = graph.nx.number_of_nodes()
    while True:
        changed = fold_constants(graph, outputs)
        changed |= apply_identities(graph, outputs)
        changed |= eliminate_common_subexpressions(graph, outputs)
        changed |= eliminate_dead_code(graph, outputs)
        if not changed:
            break
    logger.debug("simplify: %d -> %d nodes", before, graph.nx.number_of_nodes())
    return outputs


def _replace(graph: Graph, outputs: dict[str, int], old: int, new: int) -> None:
    graph.replace_uses(old, new)
    for name, node in outputs.items():
        if node == old:
            outputs[name] = new


def fold_constants(graph: Graph, outputs: dict[str, int]) -> bool:
    """Evaluate op nodes whose operands are all constants."""
    changed = False
    for node in graph.topological_order():
        data = graph.nx.nodes[node]
        if data["kind"] != OP:
            continue
        operands = graph.operands(node)
        if not all(graph.nx.nodes[n]["kind"] == CONSTANT for n in operands):
            continue
        try:
            value = data["op"].forward(*(graph.nx.nodes[n]["value"] for n in operands))
        except (ValueError, ArithmeticError) as error:
            # Leave it for run time, where the error names the failing op.
            logger.debug("not folding %s: %s", data["name"], error)
            continue
        folded = graph.constant(value.astype(data["type"].dtype), name=data["name"])
        graph.nx.nodes[folded.node]["location"] = data["location"]
        _replace(graph, outputs, node, folded.node)
        graph.remove_node(node)
        changed = True
    return changed


def _constant_fill(graph: Graph, node: int) -> float | None:
    """Return c when ``node`` is a constant whose every element equals c."""
    data = graph.nx.nodes[node]
    if data["kind"] != CONSTANT or data["value"].size == 0:
        return None
    value = data["value"]
    first = value.flat[0]
    if value.dtype.kind == "f" and np.all(value == first):
        return float(first)
    return None


def apply_identities(graph: Graph, outputs: dict[str, int]) -> bool:
    """Rewrite x * 1, x / 1, x + 0, x - 0, -(-x) and no-op shape changes to x."""
    changed = False
    for node in graph.topological_order():
        data = graph.nx.nodes.get(node)
        if data is None or data["kind"] != OP:
            continue
        name = data["op"].name
        operands = graph.operands(node)
        replacement = None
        if name in ("mul", "add", "sub", "div"):
            a, b = operands
            neutral = 1.0 if name in ("mul", "div") else 0.0
            commutes = name in ("mul", "add")
            if _constant_fill(graph, b) == neutral:
                replacement = a
            elif commutes and _constant_fill(graph, a) == neutral:
                replacement = b
        elif name in ("reshape", "transpose", "broadcast_to", "sum_to"):
            # A shape op whose output type equals its operand's changes nothing,
            # except a transpose that actually permutes equal-sized axes.
            (inner,) = operands
            perm = getattr(data["op"], "perm", None)
            if perm is None or perm == tuple(range(len(perm))):
                replacement = inner
        elif name == "neg":
            (inner,) = operands
            inner_data = graph.nx.nodes[inner]
            if inner_data["kind"] == OP and inner_data["op"].name == "neg":
                replacement = graph.operands(inner)[0]
        if (
            replacement is not None
            and graph.nx.nodes[replacement]["type"] == data["type"]
        ):
            _replace(graph, outputs, node, replacement)
            changed = True
    return changed


def eliminate_common_subexpressions(graph: Graph, outputs: dict[str, int]) -> bool:
    """Merge nodes that compute the same op over the same operands."""
    changed = False
    seen: dict[tuple, int] = {}
    for node in graph.topological_order():
        data = graph.nx.nodes[node]
        if data["kind"] == OP:
            key = ("op", data["op"].key(), tuple(graph.operands(node)))
        elif data["kind"] == CONSTANT and data["value"].size <= _CSE_CONSTANT_LIMIT:
            value = data["value"]
            key = ("constant", value.dtype.str, value.shape, value.tobytes())
        else:
            continue
        if key in seen:
            _replace(graph, outputs, node, seen[key])
            changed = True
        else:
            seen[key] = node
    return changed


def eliminate_dead_code(graph: Graph, outputs: dict[str, int]) -> bool:
    """Remove op and constant nodes that no output or state update needs."""
    roots = set(outputs.values()) | set(graph.updates.values())
    # One walk up from all roots at once: the roots share most ancestors.
    live = set(roots)
    stack = list(roots)
    while stack:
        for operand in graph.nx.pred[stack.pop()]:
            if operand not in live:
                live.add(operand)
                stack.append(operand)
    dead = [
        node
        for node, kind in graph.nx.nodes(data="kind")
        if node not in live and kind in (OP, CONSTANT)
    ]
    for node in dead:
        graph.remove_node(node)
    return bool(dead)
