"""Rewrites of sums that backpropagation through time leaves, for the NumPy backend.

Autodiff sums a gradient term for every use of a value. After unrolling,
two sums repeat once per time step and dominate a step of NumPy code:

- unslice(g_1) + unslice(g_2) + ...: the gradient of a value read in
  slices (an LSTM's four gates, a sequence read one step at a time). Each
  term is a zero-filled array of the full shape, so T steps cost T^2 work.
  ``assemble_unslice_sums`` writes all the slices into one buffer.
- A_1^T B_1 + A_2^T B_2 + ...: the gradient of a weight used at every
  step, one small product and one full-size addition per step.
  ``merge_product_sums`` computes it as one product of the concatenated
  operands, [A_1; A_2; ...]^T [B_1; B_2; ...].

Both run on the backend's own copy of the optimized graph.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

import lightnet_graph.ops as F
from lightnet_graph.errors import ShapeError
from lightnet_graph.graph import OP, Graph, Location, Tensor, TensorType
from lightnet_graph.ops.base import Op, float_dtype
from lightnet_graph.ops.shape import IndexItem, _sliced_shape, index_object_source

# Past this many grid cells, disjointness of the slices is not checked and
# the assembled buffer is zero-filled before the slices are added.
_COVER_CHECK_LIMIT = 1 << 22


class Assemble(Op):
    """y = zeros of ``shape`` with each operand added at its index in ``indices``.

    With ``exact_cover`` the indices are disjoint and cover every element,
    so each operand is written in place and nothing is zero-filled. Only
    the NumPy backend creates it, after autodiff, so it has no gradient.
    """

    name = "assemble"
    arity = None

    def __init__(
        self,
        shape: Sequence[int],
        indices: tuple[tuple[IndexItem, ...], ...],
        exact_cover: bool,
    ) -> None:
        self._set_attrs(
            shape=tuple(int(d) for d in shape), indices=indices, exact_cover=exact_cover
        )

    def infer(self, *types: TensorType) -> TensorType:
        dtype = float_dtype(self.name, *types)
        for index, value in zip(self.indices, types, strict=True):
            if _sliced_shape(index) != value.shape:
                raise ShapeError(
                    f"value shape {value.shape} does not fit index {index}"
                )
        return TensorType(self.shape, dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        values = _tuple_source(args)
        indices = _tuple_source([index_object_source(i) for i in self.indices])
        return (
            f"k.assemble({values}, {self.shape!r}, {indices}, "
            f"exact_cover={self.exact_cover}, out={out})"
        )


def _tuple_source(items: Sequence[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def assemble_unslice_sums(graph: Graph, outputs: dict[str, int]) -> None:
    """Replace every sum of two or more unslices of one shape by one Assemble."""
    kept = set(outputs.values()) | set(graph.updates.values())
    known = set(graph.nx)
    for root in _sum_roots(graph, kept):
        leaves, inner = _sum_terms(graph, root, kept)
        if len(leaves) < 2 or not all(_is_op(graph, n, "unslice") for n in leaves):
            continue
        # Terms at the same index are summed first, in their original order.
        groups: dict[tuple, list[Tensor]] = {}
        for leaf in leaves:
            index = graph.nx.nodes[leaf]["op"].index
            groups.setdefault(index, []).append(graph.tensor(graph.operands(leaf)[0]))
        values = []
        for parts in groups.values():
            total = parts[0]
            for part in parts[1:]:
                total = F.add(total, part)
            values.append(total)
        shape = graph.nx.nodes[root]["type"].shape
        indices = tuple(groups)
        op = Assemble(shape, indices, _exact_cover(shape, indices))
        result = F.apply(op, *values)
        _swap_in(graph, outputs, root, result, inner + leaves, known, kept)


def merge_product_sums(graph: Graph, outputs: dict[str, int]) -> None:
    """Replace two or more terms A_i^T B_i of a sum by [A_1; A_2; ...]^T [B_1; B_2; ...].

    A term is matmul(transpose(A), B), or transpose(matmul(transpose(B),
    A)), over 2-D values; terms merge when their A and B have the same
    number of columns. Other terms of the sum are added to the product.
    """
    kept = set(outputs.values()) | set(graph.updates.values())
    known = set(graph.nx)
    stacked = _stacked_assemblies(graph)
    for root in _sum_roots(graph, kept):
        leaves, inner = _sum_terms(graph, root, kept)
        groups: dict[tuple, list[tuple[int, int, int]]] = {}
        others = []
        for leaf in leaves:
            pair = _product_pair(graph, leaf, kept)
            if pair is None:
                others.append(leaf)
                continue
            a, b, removable = pair
            key = (
                graph.nx.nodes[a]["type"].shape[1],
                graph.nx.nodes[b]["type"].shape[1],
            )
            groups.setdefault(key, []).append((a, b, removable))
        merged = [group for group in groups.values() if len(group) > 1]
        if not merged:
            continue
        for group in groups.values():
            if len(group) == 1:
                others.append(group[0][2][0])
        terms = []
        removed = list(inner)
        for group in merged:
            # Terms in the order an Assemble stacks their A, when one does.
            group.sort(key=lambda term: stacked.get(term[0], (0, 0))[1])
            left = _joined(graph, [a for a, _, _ in group], stacked)
            right = _joined(graph, [b for _, b, _ in group], stacked)
            terms.append(F.matmul(F.transpose(left, (1, 0)), right))
            for _, _, removable in group:
                removed += removable
        result = terms[0]
        for term in terms[1:] + [graph.tensor(n) for n in others]:
            result = F.add(result, term)
        _swap_in(graph, outputs, root, result, removed, known, kept)


def _joined(graph: Graph, nodes: list[int], stacked: dict[int, tuple]) -> Tensor:
    """Return the 2-D values of ``nodes`` joined along axis 0.

    When an Assemble already stacks these values along its first axis in
    this order, consecutively, its buffer holds the joined rows: return a
    view of it instead of copying them again.
    """
    if len(nodes) == 1:
        return graph.tensor(nodes[0])
    places = [stacked.get(n) for n in nodes]
    if all(p is not None and p[0] == places[0][0] for p in places):
        assembled = places[0][0]
        steps = [p[1] for p in places]
        if steps == list(range(steps[0], steps[0] + len(steps))):
            shape = graph.nx.nodes[assembled]["type"].shape
            rows, columns = shape[1], shape[2]
            flat = F.reshape(graph.tensor(assembled), (shape[0] * rows, columns))
            if len(steps) == shape[0]:
                return flat
            return flat[steps[0] * rows : (steps[-1] + 1) * rows, :]
    return F.concat([graph.tensor(n) for n in nodes], axis=0)


def _stacked_assemblies(graph: Graph) -> dict[int, tuple[int, int]]:
    """Map each value that a 3-D Assemble stacks along axis 0 to (Assemble, step)."""
    stacked: dict[int, tuple[int, int]] = {}
    for node, op in graph.nx.nodes(data="op"):
        if op is None or op.name != "assemble" or not op.exact_cover:
            continue
        if len(op.shape) != 3:
            continue
        whole = all(
            isinstance(index[0], int)
            and all(
                not isinstance(item, int) and tuple(item) == (0, size, 1)
                for item, size in zip(index[1:], op.shape[1:], strict=True)
            )
            for index in op.indices
        )
        if not whole:
            continue
        for operand, index in zip(graph.operands(node), op.indices, strict=True):
            stacked.setdefault(operand, (node, index[0]))
    return stacked


def _product_pair(
    graph: Graph, leaf: int, kept: set[int]
) -> tuple[int, int, list[int]] | None:
    """Return (A, B, the term's own nodes, ``leaf`` first) when ``leaf`` is A^T B."""
    removable = [leaf]
    product, swapped = leaf, False
    if _is_op(graph, leaf, "transpose") and graph.nx.nodes[leaf]["op"].perm == (1, 0):
        (product,) = graph.operands(leaf)
        if product in kept or len(graph.consumers(product)) != 1:
            return None
        removable.append(product)
        swapped = True
    if not _is_op(graph, product, "matmul"):
        return None
    first, second = graph.operands(product)
    if not _is_op(graph, first, "transpose") or graph.nx.nodes[first]["op"].perm != (
        1,
        0,
    ):
        return None
    (a,) = graph.operands(first)
    if first not in kept and len(graph.consumers(first)) == 1:
        removable.append(first)
    types = [graph.nx.nodes[n]["type"] for n in (a, second)]
    if any(len(t.shape) != 2 for t in types):
        return None
    # transpose(A^T B) = B^T A.
    return (second, a, removable) if swapped else (a, second, removable)


def _sum_roots(graph: Graph, kept: set[int]) -> list[int]:
    """Return the add nodes that are the top of their sum, last first."""
    roots = []
    for node in reversed(graph.topological_order()):
        if not _is_op(graph, node, "add"):
            continue
        parents = graph.consumers(node)
        if len(parents) == 1 and node not in kept and _is_op(graph, parents[0], "add"):
            if graph.nx.nodes[parents[0]]["type"] == graph.nx.nodes[node]["type"]:
                continue
        roots.append(node)
    return roots


def _sum_terms(graph: Graph, root: int, kept: set[int]) -> tuple[list[int], list[int]]:
    """Return the terms of the add tree at ``root`` in order, and its add nodes.

    An add joins the tree when it has the root's type, only one consumer
    and is no output; anything else is a term. A tree that broadcasts has
    no terms.
    """
    ttype = graph.nx.nodes[root]["type"]
    terms: list[int] = []
    inner: list[int] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if graph.nx.nodes[node]["type"] != ttype:
            return [], []
        inside = node == root or (node not in kept and len(graph.consumers(node)) == 1)
        if inside and _is_op(graph, node, "add"):
            left, right = graph.operands(node)
            if left == right:
                return [], []
            inner.append(node)
            stack.extend([right, left])
        else:
            terms.append(node)
    return terms, inner


def _exact_cover(shape: tuple[int, ...], indices: tuple[tuple, ...]) -> bool:
    """Return True when the indices are disjoint and together cover ``shape``.

    Each index is a box: an int or a step-1 range per axis. Counting how
    many boxes cover each cell of the grid that the boxes' edges cut the
    array into gives the answer without touching every element.
    """
    boxes = []
    for index in indices:
        box = []
        for item in index:
            if isinstance(item, int):
                box.append((item, item + 1))
            elif item[2] == 1:
                box.append((item[0], item[1]))
            else:
                return False
        boxes.append(box)
    edges = [
        sorted({0, size} | {edge for box in boxes for edge in box[axis]})
        for axis, size in enumerate(shape)
    ]
    cells = int(np.prod([len(e) - 1 for e in edges], dtype=np.int64))
    if cells > _COVER_CHECK_LIMIT:
        return False
    counts = np.zeros([len(e) - 1 for e in edges], np.int32)
    for box in boxes:
        window = tuple(
            slice(bisect.bisect_left(e, start), bisect.bisect_left(e, stop))
            for e, (start, stop) in zip(edges, box, strict=True)
        )
        counts[window] += 1
    return bool((counts == 1).all())


def _is_op(graph: Graph, node: int, name: str) -> bool:
    data = graph.nx.nodes[node]
    return data["kind"] == OP and data["op"].name == name


def _swap_in(
    graph: Graph,
    outputs: dict[str, int],
    root: int,
    result: Tensor,
    removed: list[int],
    known: set[int],
    kept: set[int],
) -> None:
    """Point the uses of ``root`` at ``result``; drop the replaced nodes nothing else reads."""
    _locate(graph, result.node, known, graph.nx.nodes[root]["location"])
    graph.replace_uses(root, result.node)
    for name, value in list(outputs.items()):
        if value == root:
            outputs[name] = result.node
    if root in kept:
        kept.discard(root)
        kept.add(result.node)
    for node in dict.fromkeys(removed):
        if node in graph.nx and node not in kept and not graph.consumers(node):
            graph.remove_node(node)


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
