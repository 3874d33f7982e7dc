"""Graph analysis for the OpenCL backend: views, in-place assembly and fusion.

The analysis decides, for every node of an optimized graph, where its
value lives and which kernel computes it:

- views (transpose, slice, broadcast_to, stop_gradient and most reshapes)
  share the storage of the value they read;
- an ``add`` whose operand is a matrix product or a reduction read by
  nothing else becomes that kernel's *addend* (C = A B + X), so gradient
  sums over time steps accumulate in place, and a division of a sum by a
  constant becomes the reduction's divisor;
- ``concat`` and sums of ``unslice`` values over disjoint boxes become an
  *assembly*: each piece is written straight into its region of the
  result by the kernel that computes it, or copied there when it cannot be;
- elementwise ops are grouped into fused kernels by the level rule below.

The fusion rule, which assigns each kernel its level, is in :mod:`.fusion`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from lightnet_graph.errors import UnknownOpError
from lightnet_graph.graph import CONSTANT, INPUT, OP, PARAMETER, STATE, Graph

from . import views
from .views import View

logger = logging.getLogger(__name__)

LEAF = "leaf"
VIEW = "view"
POINTWISE = "pointwise"
HEAVY = "heavy"
ASSEMBLE = "assemble"
ABSORBED = "absorbed"

ELEMENTWISE_OPS = {
    "add",
    "sub",
    "mul",
    "div",
    "equal",
    "neg",
    "exp",
    "log",
    "sqrt",
    "relu",
    "leaky_relu",
    "step",
    "tanh",
    "sigmoid",
    "cast",
}
# Pointwise ops whose operands are read at other positions than the output's.
INDEXED_OPS = {"one_hot", "gather", "unslice"}
VIEW_OPS = {"reshape", "transpose", "slice", "broadcast_to", "stop_gradient"}
HEAVY_OPS = {
    "matmul",
    "linear",
    "sum",
    "mean",
    "max",
    "sum_to",
    "softmax",
    "softmax_cross_entropy",
    "batch_norm",
    "batch_norm_grad",
    "scatter_add",
}
# Kernels that can add a value to their result while writing it.
ADDEND_OPS = {"matmul", "sum", "mean", "sum_to", "softmax_cross_entropy"}
# Reductions that can divide their result by a constant while writing it.
DIVISOR_OPS = {"sum", "sum_to", "softmax_cross_entropy"}

ViewOp = tuple  # ("permute", perm) | ("index", items) | ("broadcast", shape) | ("reshape", shape)


def apply_view_op(view: View, op: ViewOp) -> View | None:
    kind, argument = op
    if kind == "permute":
        return views.permute(view, argument)
    if kind == "index":
        return views.index(view, argument)
    if kind == "broadcast":
        return views.broadcast(view, argument)
    return views.reshape(view, argument)


def replay(chain: tuple[ViewOp, ...], view: View) -> View | None:
    for op in chain:
        view = apply_view_op(view, op)
        if view is None:
            return None
    return view


@dataclass
class Piece:
    """One operand of an assembly and the index of its region."""

    node: int  # the assembly operand (a value of the graph)
    items: tuple  # normalized index of the region in the assembly's shape
    placed: bool = False


@dataclass
class Assembly:
    node: int
    pieces: list[Piece]
    covered: bool  # the pieces tile the whole result, so no zero fill is needed
    members: tuple[int, ...] = ()  # the unslice and add nodes it replaces


@dataclass
class Analysis:
    """The storage and the kernel of every value of an optimized graph."""

    graph: Graph
    order: list[int]
    position: dict[int, int]
    kind: dict[int, str]
    ref: dict[int, tuple[int, tuple]]  # node -> (base node, view chain)
    addend: dict[int, int] = field(default_factory=dict)  # heavy node -> addend value
    divisor: dict[int, float] = field(default_factory=dict)  # reduction -> constant
    alias: dict[int, int] = field(default_factory=dict)  # absorbed add -> heavy node
    assemblies: dict[int, Assembly] = field(default_factory=dict)
    placement: dict[int, tuple[int, tuple]] = field(default_factory=dict)
    level: dict[int, int] = field(default_factory=dict)
    fusible: set[tuple[int, int]] = field(default_factory=set)
    clusters: list[list[int]] = field(default_factory=list)
    roots: set[int] = field(default_factory=set)  # outputs and state-update values
    operands: dict[int, list[int]] = field(default_factory=dict)
    consumers: dict[int, list[int]] = field(default_factory=dict)
    _views: dict[int, tuple[int, View]] = field(default_factory=dict)
    # (reader, elementwise op) pairs where the reader should get its own copy.
    recompute: list[tuple[int, int]] = field(default_factory=list)

    # -- storage --------------------------------------------------------------

    def storage_view(self, base: int) -> tuple[int, View]:
        """Return the storage node that contains ``base`` and the view of ``base`` in it."""
        found = self._views.get(base)
        if found is not None:
            return found
        shape = self.graph.nx.nodes[base]["type"].shape
        if base not in self.placement:
            return base, views.contiguous(shape)
        outer, chain = self.placement[base]
        root, view = self.storage_view(outer)
        placed = replay(chain, view)
        assert placed is not None, "placement was checked to replay"
        return root, placed

    def freeze(self) -> None:
        """Remember every storage view; placements must not change after this."""
        for base in self.order:
            self._views[base] = self.storage_view(base)

    def resolve(self, node: int) -> tuple[int, View]:
        """Return the storage node and the view that ``node``'s value is read through."""
        base, chain = self.ref[node]
        root, view = self.storage_view(base)
        resolved = replay(chain, view)
        assert resolved is not None, "view chains are checked before placement"
        return root, resolved

    def unit(self, node: int) -> int | None:
        """Return the kernel node whose output ``node`` reads, or None for leaves."""
        base = self.ref[node][0]
        base = self.alias.get(base, base)
        return None if self.kind[base] == LEAF else base


def prepare(graph: Graph, outputs: Mapping[str, int]) -> Analysis:
    """Classify nodes, fold epilogues and place assembly pieces; levels come later."""
    order = graph.topological_order()
    result = Analysis(graph, order, {n: i for i, n in enumerate(order)}, {}, {})
    result.roots = set(outputs.values()) | set(graph.updates.values())
    for node in order:
        result.operands[node] = graph.operands(node)
        result.consumers[node] = graph.consumers(node)
    _classify(result)
    _absorb_epilogues(result)
    _find_assemblies(result)
    _place_pieces(result)
    result.freeze()
    return result


# -- classification and views ----------------------------------------------------


def _classify(a: Analysis) -> None:
    nodes = a.graph.nx.nodes
    for node in a.order:
        data = nodes[node]
        if data["kind"] in (INPUT, PARAMETER, STATE, CONSTANT):
            a.kind[node] = LEAF
            a.ref[node] = (node, ())
            continue
        if data["kind"] != OP:
            raise UnknownOpError(
                f"value {data['name']!r} has unknown kind {data['kind']!r}"
            )
        op = data["op"]
        name = op.name
        if name in VIEW_OPS:
            (operand,) = a.operands[node]
            base, chain = a.ref[operand]
            step = _view_op(op, nodes[operand]["type"].shape, data["type"].shape)
            chain = chain + ((step,) if step is not None else ())
            start = views.contiguous(nodes[base]["type"].shape)
            if replay(chain, start) is not None:
                a.kind[node] = VIEW
                a.ref[node] = (base, chain)
                continue
            # A reshape of a view that no strides can express: copy it.
            a.kind[node] = POINTWISE
        elif name in ELEMENTWISE_OPS or name in INDEXED_OPS:
            a.kind[node] = POINTWISE
        elif name in HEAVY_OPS:
            a.kind[node] = HEAVY
        elif name == "concat":
            a.kind[node] = ASSEMBLE
        else:
            raise UnknownOpError(
                f"value {data['name']!r} uses op {name!r}, which the OpenCL backend "
                "does not implement; compile it with backend='numpy'"
            )
        a.ref[node] = (node, ())


def _view_op(op, in_shape: tuple, out_shape: tuple) -> ViewOp | None:
    if op.name == "stop_gradient":
        return None
    if op.name == "transpose":
        return ("permute", op.perm)
    if op.name == "slice":
        return ("index", op.index)
    if op.name == "broadcast_to":
        return ("broadcast", tuple(out_shape))
    return ("reshape", tuple(out_shape))


def consumers(a: Analysis, node: int) -> list[int]:
    return a.consumers[node]


def _absorb_epilogues(a: Analysis) -> None:
    """Fold a division by a constant, then an addition, into the kernel before them.

    ``sum(x) / c`` becomes a reduction that divides by c, and ``A B + X``
    a matrix product that adds X while writing. The absorbed ops become
    aliases of the kernel's output.
    """
    nodes = a.graph.nx.nodes
    for node in a.order:
        data = nodes[node]
        if a.kind.get(node) != POINTWISE or data["op"].name != "div":
            continue
        heavy, divisor = a.operands[node]
        heavy = a.alias.get(heavy, heavy)
        if not _can_absorb(a, heavy, node, DIVISOR_OPS) or heavy in a.divisor:
            continue
        op = nodes[heavy]["op"]
        if op.name == "softmax_cross_entropy" and op.reduction != "sum":
            continue
        constant = nodes[divisor]
        if constant["kind"] != CONSTANT or constant["type"].size != 1:
            continue
        if constant["type"].dtype != data["type"].dtype:
            continue
        a.divisor[heavy] = float(constant["value"].reshape(-1)[0])
        _alias(a, node, heavy)
    for node in a.order:
        data = nodes[node]
        if a.kind.get(node) != POINTWISE or data["op"].name != "add":
            continue
        left, right = a.operands[node]
        for heavy, other in ((left, right), (right, left)):
            heavy = a.alias.get(heavy, heavy)
            if heavy == a.alias.get(other, other) or heavy in a.addend:
                continue
            if not _can_absorb(a, heavy, node, ADDEND_OPS):
                continue
            if nodes[other]["type"] != data["type"]:
                continue
            a.addend[heavy] = other
            _alias(a, node, heavy)
            break
    # Views of an absorbed op read the kernel's output instead.
    for node, (base, chain) in a.ref.items():
        if base in a.alias:
            a.ref[node] = (a.alias[base], chain)


def _can_absorb(a: Analysis, heavy: int, node: int, ops: set[str]) -> bool:
    """True when ``node`` alone reads kernel ``heavy``'s output, at its full type.

    ``node`` reads either ``heavy`` or an op that ``heavy`` already absorbed.
    """
    nodes = a.graph.nx.nodes
    if a.kind.get(heavy) != HEAVY or nodes[heavy]["op"].name not in ops:
        return False
    if nodes[heavy]["type"] != nodes[node]["type"]:
        return False
    read = [n for n in a.operands[node] if a.alias.get(n, n) == heavy]
    if len(read) != 1 or read[0] in a.roots:
        return False
    return consumers(a, read[0]) == [node]


def _alias(a: Analysis, node: int, heavy: int) -> None:
    a.alias[node] = heavy
    a.kind[node] = ABSORBED
    a.ref[node] = (heavy, ())


# -- assemblies ----------------------------------------------------------------------


def _find_assemblies(a: Analysis) -> None:
    nodes = a.graph.nx.nodes
    taken: set[int] = set()
    for node in reversed(a.order):
        if node in taken:
            continue
        kind = a.kind.get(node)
        op = nodes[node].get("op")
        if kind == ASSEMBLE:
            a.assemblies[node] = _concat_assembly(a, node)
            continue
        if kind != POINTWISE or op.name not in ("add", "unslice"):
            continue
        found = _unslice_tree(a, node)
        if found is None:
            continue
        pieces, members = found
        if not _disjoint_boxes([p.items for p in pieces]):
            continue
        shape = nodes[node]["type"].shape
        total = sum(views.index(views.contiguous(shape), p.items).size for p in pieces)
        covered = total == int(np.prod(shape, dtype=np.int64))
        a.assemblies[node] = Assembly(node, pieces, covered, tuple(members))
        a.kind[node] = ASSEMBLE
        for member in members:
            if member != node:
                a.kind[member] = ABSORBED
                taken.add(member)


def _concat_assembly(a: Analysis, node: int) -> Assembly:
    op = a.graph.nx.nodes[node]["op"]
    shape = a.graph.nx.nodes[node]["type"].shape
    pieces = []
    start = 0
    for operand in a.operands[node]:
        width = a.graph.nx.nodes[operand]["type"].shape[op.axis]
        items = tuple(
            (start, start + width, 1) if axis == op.axis else (0, dim, 1)
            for axis, dim in enumerate(shape)
        )
        pieces.append(Piece(operand, items))
        start += width
    return Assembly(node, pieces, True)


def _unslice_tree(a: Analysis, root: int) -> tuple[list[Piece], list[int]] | None:
    """Return the unslice pieces of the sum at ``root``, or None if it is not one."""
    nodes = a.graph.nx.nodes
    root_type = nodes[root]["type"]
    pieces: list[Piece] = []
    members: list[int] = []
    stack = [root]
    while stack:
        node = stack.pop()
        data = nodes[node]
        if data["type"] != root_type or a.kind.get(node) != POINTWISE:
            return None
        if node != root and (
            consumers(a, node) != [_parent(a, node)] or node in a.roots
        ):
            return None
        members.append(node)
        if data["op"].name == "unslice":
            (operand,) = a.operands[node]
            pieces.append(Piece(operand, data["op"].index))
        elif data["op"].name == "add":
            left, right = a.operands[node]
            if left == right:
                return None
            stack.extend([left, right])
        else:
            return None
    return pieces, members


def _parent(a: Analysis, node: int) -> int | None:
    found = consumers(a, node)
    return found[0] if len(found) == 1 else None


def _disjoint_boxes(indices: list[tuple]) -> bool:
    """True when every index is a box (unit steps) and no two boxes overlap."""
    boxes = []
    for items in indices:
        box = []
        for item in items:
            if isinstance(item, int):
                box.append((item, item + 1))
            elif item[2] == 1:
                box.append((item[0], max(item[0], item[1])))
            else:
                return False
        boxes.append(box)
    if len(boxes) > 256:
        return False
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            if all(
                lo1 < hi2 and lo2 < hi1
                for (lo1, hi1), (lo2, hi2) in zip(boxes[i], boxes[j], strict=True)
            ):
                return False
    return True


def _place_pieces(a: Analysis) -> None:
    """Let the kernel computing each piece write it into its assembly's region."""
    referencing: dict[int, list[int]] = {}
    for node, (base, _) in a.ref.items():
        referencing.setdefault(base, []).append(node)
    nodes = a.graph.nx.nodes
    for node in reversed(a.order):
        assembly = a.assemblies.get(node)
        if assembly is None:
            continue
        for piece in assembly.pieces:
            base, chain = a.ref[piece.node]
            base = a.alias.get(base, base)
            if base in a.placement or a.kind[base] not in (POINTWISE, HEAVY):
                continue
            if any(step[0] != "reshape" for step in a.ref[piece.node][1]):
                continue
            base_shape = nodes[base]["type"].shape
            region: tuple = (("index", piece.items),)
            if nodes[piece.node]["type"].shape != base_shape:
                region += (("reshape", base_shape),)
            _, outer_view = a.storage_view(node)
            placed_view = replay(region, outer_view)
            if placed_view is None:
                continue
            if a.kind[base] == HEAVY and not placed_view.is_contiguous():
                continue
            # Every view of the piece must still be expressible inside the region.
            if any(
                replay(a.ref[user][1], placed_view) is None
                for user in referencing.get(base, [])
            ):
                continue
            a.placement[base] = (node, region)
            piece.placed = True
