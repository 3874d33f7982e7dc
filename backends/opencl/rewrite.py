"""Graph rewrites that let the OpenCL backend fuse more, applied to its own copy."""

from __future__ import annotations

from collections.abc import Mapping

import lightnet_graph.ops as F
from lightnet_graph.graph import OP, Graph, Location, Tensor


def swap_transposed_products(
    graph: Graph, outputs: Mapping[str, int]
) -> dict[str, int]:
    """Rewrite transpose(a @ b), over the last two axes, as b^T @ a^T.

    The gradient of a weight used as ``x @ w.T`` arrives transposed. As a
    product of transposed views it is a plain matmul again, which can add
    the next time step's gradient in place. Returns the updated outputs.
    """
    outputs = dict(outputs)
    kept = set(outputs.values()) | set(graph.updates.values())
    known = set(graph.nx)
    for node in graph.topological_order():
        data = graph.nx.nodes.get(node)
        if data is None or data["kind"] != OP or data["op"].name != "transpose":
            continue
        (product,) = graph.operands(node)
        product_data = graph.nx.nodes[product]
        if product_data["kind"] != OP or product_data["op"].name != "matmul":
            continue
        ndim = len(data["type"].shape)
        if data["op"].perm != _swap_last(ndim):
            continue
        if graph.consumers(product) != [node] or product in kept:
            continue
        left, right = (graph.tensor(n) for n in graph.operands(product))
        swapped = F.matmul(
            F.transpose(right, _swap_last(right.ndim)),
            F.transpose(left, _swap_last(left.ndim)),
        )
        _locate(graph, swapped.node, known, data["location"])
        graph.replace_uses(node, swapped.node)
        for name, value in outputs.items():
            if value == node:
                outputs[name] = swapped.node
        graph.remove_node(node)
        graph.remove_node(product)
    return outputs


def _swap_last(ndim: int) -> tuple[int, ...]:
    return tuple(range(ndim - 2)) + (ndim - 1, ndim - 2)


def group_unslice_sums(graph: Graph, outputs: dict[str, int]) -> None:
    """Rewrite a sum of unslices that repeat a region as one unslice per region.

    Autodiff sums the gradient of a weight slice used at every time step as
    unslice(g_1) + unslice(g_2) + ..., one unslice per step. Summing each
    region's terms first, in the same order, gives the same value exactly
    (the other terms add zeros there) and leaves a sum of disjoint regions,
    which the backend assembles in place.
    """
    kept = set(outputs.values()) | set(graph.updates.values())
    known = set(graph.nx)
    for root in reversed(graph.topological_order()):
        if root not in graph.nx or not _is_add(graph, root):
            continue
        parents = graph.consumers(root)
        if len(parents) == 1 and root not in kept and _is_add(graph, parents[0]):
            if graph.nx.nodes[parents[0]]["type"] == graph.nx.nodes[root]["type"]:
                continue  # not the top of its sum
        leaves, inner = _sum_leaves(graph, root, kept)
        if leaves is None:
            continue
        groups: dict[tuple, list[int]] = {}
        for leaf in leaves:
            groups.setdefault(graph.nx.nodes[leaf]["op"].index, []).append(leaf)
        if len(groups) == len(leaves):
            continue
        result = _regrouped_sum(graph, list(groups.values()))
        _locate(graph, result.node, known, graph.nx.nodes[root]["location"])
        graph.replace_uses(root, result.node)
        for name, value in list(outputs.items()):
            if value == root:
                outputs[name] = result.node
        for node in inner + leaves:
            graph.remove_node(node)


def _is_add(graph: Graph, node: int) -> bool:
    data = graph.nx.nodes[node]
    return data["kind"] == OP and data["op"].name == "add"


def _sum_leaves(
    graph: Graph, root: int, kept: set[int]
) -> tuple[list[int] | None, list[int]]:
    """Return the unslice leaves of the add tree at ``root`` in order, and its adds."""
    ttype = graph.nx.nodes[root]["type"]
    leaves: list[int] = []
    inner: list[int] = []
    stack = [root]
    while stack:
        node = stack.pop()
        data = graph.nx.nodes[node]
        if data["type"] != ttype or (
            node != root and (node in kept or len(graph.consumers(node)) != 1)
        ):
            return None, inner
        if _is_add(graph, node):
            left, right = graph.operands(node)
            if left == right:
                return None, inner
            inner.append(node)
            stack.extend([right, left])
        elif data["kind"] == OP and data["op"].name == "unslice":
            leaves.append(node)
        else:
            return None, inner
    return leaves, inner


def _regrouped_sum(graph: Graph, groups: list[list[int]]) -> Tensor:
    terms = []
    for group in groups:
        parts = [graph.tensor(graph.operands(leaf)[0]) for leaf in group]
        total = parts[0]
        for part in parts[1:]:
            total = F.add(total, part)
        op = graph.nx.nodes[group[0]]["op"]
        terms.append(F.apply(type(op)(op.shape, op.index), total))
    result = terms[0]
    for term in terms[1:]:
        result = F.add(result, term)
    return result


def _locate(
    graph: Graph, result: int, known: set[int], location: Location | None
) -> None:
    """Give the op nodes a rewrite added under ``result`` the replaced node's location."""
    stack = [result]
    while stack:
        node = stack.pop()
        if node in known:
            continue
        known.add(node)
        graph.nx.nodes[node]["location"] = location
        stack.extend(graph.operands(node))
