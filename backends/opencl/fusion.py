"""The fusion rule: which kernel computes each elementwise op, and in what order.

Every kernel gets a level. A matrix product, reduction or other whole
kernel sits one level above the kernels it reads. An
elementwise op sits at the level of the ops it reads element for element
(a *fusible edge*) and above everything else it reads. It then moves as
late as its readers allow when that joins it to a reader's kernel, unless
the move would turn a value kept in registers into a written one. A cheap
op that would be left behind is copied instead. The connected groups of
fusible edges within one level are the fused kernels, and groups of one
level that read the same value join too.

Every edge between two kernels climbs at least one level, so ordering
kernels by level is a valid schedule. The rule never looks at what the
ops are, so an LSTM's or GRU's gate math, or a cell nobody has declared
before, fuses the same way.

A matrix product between two elementwise steps of a cell splits them,
however: the default GRU multiplies R * h by a weight before its
candidate, so each of its steps runs two elementwise kernels each way,
where the reset-after form runs one.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Mapping

from lightnet_graph.graph import Graph

from .analysis import (
    ASSEMBLE,
    ELEMENTWISE_OPS,
    HEAVY,
    INDEXED_OPS,
    POINTWISE,
    Analysis,
    prepare,
)

logger = logging.getLogger(__name__)

# Sums of more terms than this are split into one in-place add per term, so
# that a sum over T time steps is T launches of one kernel, not one kernel
# whose source grows with T.
MAX_FUSED_SUM_TERMS = 4
# Rounds of copying cheap ops into the kernels that read them.
MAX_RECOMPUTE_ROUNDS = 3
# Kernels joined because they read the same value stop growing at this size.
MAX_FUSED_OPS = 64


def analyze(graph: Graph, outputs: Mapping[str, int]) -> Analysis:
    """Run the whole analysis on an optimized graph.

    When a move would leave a cheap elementwise op behind in an earlier
    kernel, the op is copied for the later kernel (recomputed, not stored)
    and the analysis runs again on the changed graph.
    """
    for _ in range(MAX_RECOMPUTE_ROUNDS):
        result = _analyze_once(graph, outputs)
        if not result.recompute:
            return result
        for reader, producer in result.recompute:
            _copy_for(graph, reader, producer)
    return _analyze_once(graph, outputs, recompute=False)


def _copy_for(graph: Graph, reader: int, producer: int) -> None:
    """Let ``reader`` read its own copy of the elementwise op ``producer``."""
    data = graph.nx.nodes[producer]
    operands = [graph.tensor(n) for n in graph.operands(producer)]
    copy = graph.add_op(data["op"], operands, data["type"], name=data["name"])
    graph.nx.nodes[copy.node]["location"] = data["location"]
    for _, target, slot in list(graph.nx.out_edges(producer, keys=True)):
        if target == reader:
            graph.nx.remove_edge(producer, reader, key=slot)
            graph.nx.add_edge(copy.node, reader, key=slot)


def _analyze_once(
    graph: Graph, outputs: Mapping[str, int], recompute: bool = True
) -> Analysis:
    result = prepare(graph, outputs)
    _assign_levels(result, recompute)
    return result


def _reads(a: Analysis, node: int) -> list[int]:
    """Return the values a kernel node reads: operands, addend or assembly pieces."""
    if a.kind[node] == ASSEMBLE:
        return [p.node for p in a.assemblies[node].pieces]
    reads = list(a.operands[node])
    if node in a.addend:
        reads.append(a.addend[node])
    return reads


def _identity_read(a: Analysis, consumer: int, operand: int) -> bool:
    """True when ``consumer`` reads ``operand`` element for element."""
    nodes = a.graph.nx.nodes
    op = nodes[consumer]["op"]
    if op.name in INDEXED_OPS or a.kind[consumer] != POINTWISE:
        return False
    if op.name not in ELEMENTWISE_OPS:  # a reshape that copies
        return False
    if nodes[operand]["type"].shape != nodes[consumer]["type"].shape:
        return False
    base, chain = a.ref[operand]
    if a.kind.get(base) != POINTWISE:
        return False
    if any(step[0] != "reshape" for step in chain):
        return False
    return nodes[base]["type"].size == nodes[consumer]["type"].size


def _unit_order(a: Analysis) -> list[int]:
    """Kernel nodes in an order where each follows the kernels it reads.

    The graph's order is not always one: an absorbed addend may be computed
    after the matrix product that now reads it.
    """
    units = [n for n in a.order if a.kind[n] in (POINTWISE, HEAVY, ASSEMBLE)]
    waiting: dict[int, int] = {}
    readers: dict[int, list[int]] = {}
    for node in units:
        producers = {a.unit(value) for value in _reads(a, node)} - {None}
        waiting[node] = len(producers)
        for producer in producers:
            readers.setdefault(producer, []).append(node)
    ready = [a.position[n] for n in units if waiting[n] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        node = a.order[heapq.heappop(ready)]
        order.append(node)
        for reader in readers.get(node, []):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, a.position[reader])
    assert len(order) == len(units), "absorbing addends made a cycle"
    return order


def _assign_levels(a: Analysis, recompute: bool = True) -> None:
    units = _unit_order(a)

    # Fusible edges, minus the links of long sums.
    for node in units:
        if a.kind[node] != POINTWISE:
            continue
        for operand in a.operands[node]:
            if _identity_read(a, node, operand):
                a.fusible.add((a.ref[operand][0], node))
    _cut_long_sums(a)

    # As soon as possible.
    asap: dict[int, int] = {}
    for node in units:
        level = 1
        for value in _reads(a, node):
            producer = a.unit(value)
            if producer is None:
                continue
            step = 0 if (producer, node) in a.fusible else 1
            level = max(level, asap[producer] + step)
        asap[node] = level

    # As late as the readers allow, for elementwise ops.
    readers: dict[int, list[int]] = {}
    for node in units:
        for value in _reads(a, node):
            producer = a.unit(value)
            if producer is not None:
                readers.setdefault(producer, []).append(node)
    level = dict(asap)
    # Each op first moves as late as its readers allow, when it joins the
    # kernel of a reader there...
    for node in reversed(units):
        if a.kind[node] != POINTWISE or node in a.roots or not readers.get(node):
            continue
        bound = min(
            level[reader] - (0 if (node, reader) in a.fusible else 1)
            for reader in readers[node]
        )
        joins = any(
            (node, reader) in a.fusible and level[reader] == bound
            for reader in readers[node]
        )
        if bound > level[node] and joins:
            level[node] = bound
    # ...then returns to the earliest level its operands allow if the move
    # would make a value that its kernel otherwise keeps in registers a
    # written output. So 1 - y of a gate output y, which the backward pass
    # reads anyway, moves into the backward kernel, while dc * f stays with
    # the dc it reads.
    for node in units:
        if a.kind[node] != POINTWISE:
            continue
        earliest = 1
        kept: list[int] = []
        for value in _reads(a, node):
            producer = a.unit(value)
            if producer is None:
                continue
            fused = (producer, node) in a.fusible
            earliest = max(earliest, level[producer] + (0 if fused else 1))
            if fused and level[producer] < level[node]:
                if not _written_anyway(a, producer, node, readers, level):
                    kept.append(producer)
        if not kept:
            continue
        if recompute and all(_cheap_copy(a, p, readers, level) for p in kept):
            a.recompute.extend((node, p) for p in kept)
        else:
            level[node] = earliest
    a.level = level

    # Fused kernels: fusible edges within one level, then siblings.
    parent = {n: n for n in units if a.kind[n] == POINTWISE}

    def find(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for producer, consumer in sorted(a.fusible):
        if level[producer] == level[consumer]:
            parent[find(producer)] = find(consumer)
    _merge_siblings(a, units, level, parent, find)
    groups: dict[int, list[int]] = {}
    for node in units:
        if node in parent:
            groups.setdefault(find(node), []).append(node)
    a.clusters = sorted(groups.values(), key=lambda g: a.position[g[0]])
    logger.debug(
        "fusion: %d elementwise ops in %d kernels", len(parent), len(a.clusters)
    )


def _cheap_copy(
    a: Analysis, producer: int, readers: dict, level: dict[int, int]
) -> bool:
    """True when an elementwise op reads only values that are stored anyway."""
    if a.graph.nx.nodes[producer]["op"].name not in ELEMENTWISE_OPS:
        return False
    for value in a.operands[producer]:
        source = a.unit(value)
        if source is None or (source, producer) not in a.fusible:
            continue
        if level[source] == level[producer] and not _written_anyway(
            a, source, producer, readers, level
        ):
            return False
    return True


def _written_anyway(
    a: Analysis, producer: int, reader: int, readers: dict, level: dict[int, int]
) -> bool:
    """True when ``producer`` leaves its kernel for a reader other than ``reader``."""
    if producer in a.roots or producer in a.placement:
        return True
    return any(
        other != reader
        and ((producer, other) not in a.fusible or level[other] != level[producer])
        for other in readers.get(producer, [])
    )


def _merge_siblings(
    a: Analysis,
    units: list[int],
    level: dict[int, int],
    parent: dict[int, int],
    find: Callable[[int], int],
) -> None:
    """Join kernels of one level that read the same computed value through one view.

    The derivatives of an LSTM's four gates share no intermediate value, but
    all read the step's dh, so they become one kernel. Values from leaves
    (parameters, inputs) do not join kernels, because every time step reads
    the same weights. A joined kernel grows to MAX_FUSED_OPS ops at most.
    """
    size: dict[int, int] = {}
    for node in parent:
        root = find(node)
        size[root] = size.get(root, 0) + 1
    readers: dict[tuple, list[int]] = {}
    for node in units:
        if node not in parent:
            continue
        for operand in a.operands[node]:
            base, chain = a.ref[operand]
            if a.kind.get(base) not in (POINTWISE, HEAVY, ASSEMBLE):
                continue
            if (base, node) in a.fusible and level[base] == level[node]:
                continue
            readers.setdefault((level[node], base, chain), []).append(node)
    nodes = a.graph.nx.nodes
    for group in readers.values():
        for other in group[1:]:
            if nodes[group[0]]["type"].size != nodes[other]["type"].size:
                continue  # one kernel has one index space
            first, second = find(group[0]), find(other)
            if first != second and size[first] + size[second] <= MAX_FUSED_OPS:
                parent[second] = first
                size[first] += size.pop(second)


def _cut_long_sums(a: Analysis) -> None:
    """Make each add of a sum of many terms a kernel of its own."""
    nodes = a.graph.nx.nodes

    def is_sum(node: int) -> bool:
        return a.kind.get(node) == POINTWISE and nodes[node]["op"].name in (
            "add",
            "sub",
        )

    links = [(p, c) for p, c in a.fusible if is_sum(p) and is_sum(c)]
    if not links:
        return
    parent = {}
    for p, c in links:
        parent.setdefault(p, p)
        parent.setdefault(c, c)

    def find(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for p, c in links:
        parent[find(p)] = find(c)
    size: dict[int, int] = {}
    for n in parent:
        size[find(n)] = size.get(find(n), 0) + 1
    for p, c in links:
        # A tree of k adds sums k + 1 terms.
        if size[find(p)] + 1 > MAX_FUSED_SUM_TERMS:
            a.fusible.discard((p, c))
