"""The batch-steps pass: one matrix product for every time step's input projection.

After unrolling, step t of a recurrence computes linear(xs[t], W, b) with
the same W and b at every step. When every slice xs[0], ..., xs[T-1] of a
sequence feeds such a product with one (W, b), the pass computes all of
them as one product over the sequence's rows,

    Y = reshape(linear(reshape(xs, (T * rows, in)), W, b), (T, ..., out)),

and step t reads Y[t]. The same holds for matmul(xs[t], M) with one 2-D M.
A single large product runs far faster than T small ones, and its
gradient is again one product for W, one for xs and one sum for b.
"""

from __future__ import annotations

import logging

import numpy as np

import lightnet_graph.ops as F

from ..graph import OP, Graph, Tensor

logger = logging.getLogger(__name__)


def batch_steps(graph: Graph, kept: set[int]) -> dict[int, int]:
    """Batch the per-step products of ``graph`` in place.

    ``kept`` are nodes that must stay (outputs). Return a map from each
    removed product node to the slice that now holds its value.
    """
    replaced: dict[int, int] = {}
    for source in list(graph.topological_order()):
        if source not in graph.nx:
            continue
        for operands, products in _step_products(graph, source, kept).items():
            replaced |= _batch(graph, source, operands, products)
    if replaced:
        logger.debug("batch_steps: %d per-step products batched", len(replaced))
    return replaced


def _step_products(
    graph: Graph, source: int, kept: set[int]
) -> dict[tuple, dict[int, int]]:
    """Group the products over whole-step slices of ``source`` by their other operands.

    Returns, per (op name, other operands), a map from step index to the
    product node; only groups that cover every step are kept.
    """
    shape = graph.nx.nodes[source]["type"].shape
    if len(shape) < 2 or shape[0] < 2:
        return {}
    groups: dict[tuple, dict[int, int]] = {}
    for consumer in graph.consumers(source):
        step = _whole_step(graph, consumer, shape)
        if step is None:
            continue
        for product in graph.consumers(consumer):
            data = graph.nx.nodes[product]
            if data["kind"] != OP or product in kept:
                continue
            operands = graph.operands(product)
            if operands[0] != consumer or consumer in operands[1:]:
                continue
            name = data["op"].name
            if name == "matmul" and len(graph.nx.nodes[operands[1]]["type"].shape) != 2:
                continue
            if name not in ("linear", "matmul"):
                continue
            key = (name, tuple(operands[1:]))
            groups.setdefault(key, {}).setdefault(step, product)
    return {
        key: products for key, products in groups.items() if len(products) == shape[0]
    }


def _whole_step(graph: Graph, node: int, shape: tuple[int, ...]) -> int | None:
    """Return t when ``node`` is the slice x[t, :, ..., :] of a value of ``shape``."""
    data = graph.nx.nodes[node]
    if data["kind"] != OP or data["op"].name != "slice":
        return None
    first, *rest = data["op"].index
    if not isinstance(first, int):
        return None
    for item, size in zip(rest, shape[1:], strict=True):
        if isinstance(item, int) or tuple(item) != (0, size, 1):
            return None
    return first


def _batch(
    graph: Graph, source: int, operands: tuple, products: dict[int, int]
) -> dict[int, int]:
    name, others = operands
    shape = graph.nx.nodes[source]["type"].shape
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    flat = F.reshape(graph.tensor(source), (rows, shape[-1]))
    weights = [graph.tensor(n) for n in others]
    if name == "linear":
        product = F.linear(flat, *weights)
    else:
        product = F.matmul(flat, *weights)
    out_features = product.shape[-1]
    batched = F.reshape(product, shape[:-1] + (out_features,))
    location = graph.nx.nodes[products[0]]["location"]
    for node in (flat.node, product.node, batched.node):
        graph.nx.nodes[node]["location"] = location
    replaced = {}
    for step, node in sorted(products.items()):
        view: Tensor = batched[step]
        graph.nx.nodes[view.node]["location"] = graph.nx.nodes[node]["location"]
        graph.replace_uses(node, view.node)
        graph.remove_node(node)
        replaced[node] = view.node
    return replaced
