"""The autodiff pass: reverse-mode differentiation through gradient rules.

Each op's gradient rule declares ordinary graph nodes, so the backward graph
is optimized and code-generated like the forward one. A value read by
several ops receives the sum of their gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import ops as F
from ..errors import GradientError, ShapeError
from ..graph import OP, Tensor


def grad(y: Tensor, xs: Sequence[Tensor], dy: Tensor | None = None) -> list[Tensor]:
    """Declare the gradients of ``y`` with respect to each of ``xs``.

    ``xs`` may be any values of the graph: parameters, inputs, states or
    intermediate results such as a hidden state. ``y`` must be a scalar
    unless ``dy``, the gradient flowing into ``y``, is given. A value that
    ``y`` does not depend on gets a zero gradient.
    """
    graph = y.graph
    for x in xs:
        graph.check_owned(x)
        if x.dtype.kind != "f":
            raise GradientError(
                f"grad: {x.name!r} has dtype {x.dtype}; only float values have gradients"
            )
    if dy is None:
        if y.shape != ():
            raise ShapeError(
                f"grad: {y.name!r} has shape {y.shape}; reduce it to a scalar "
                "(sum or mean) or pass dy, the gradient flowing into it"
            )
        dy = graph.constant(1.0, dtype=y.dtype, name=f"d_{y.name}")
    elif dy.type != y.type:
        raise ShapeError(f"grad: dy is {dy.type} but {y.name!r} is {y.type}")

    sources = {x.node for x in xs}
    reachable = _closure(graph.nx._succ, sources)
    relevant = _closure(graph.nx._pred, {y.node}) & reachable

    adjoints: dict[int, Tensor] = {y.node: dy}
    for node in reversed(graph.topological_order(relevant)):
        if node in adjoints and graph.nx.nodes[node]["kind"] == OP:
            _propagate(graph.tensor(node), adjoints, relevant)

    results = []
    for x in xs:
        g = adjoints.get(x.node)
        if g is None:
            zero = graph.constant(0.0, dtype=x.dtype, name=f"d_{x.name}")
            g = F.broadcast_to(zero, x.shape)
        results.append(g)
    return results


def _closure(neighbours: dict, start: set[int]) -> set[int]:
    """Return ``start`` and every node reachable from it through ``neighbours``.

    ``neighbours`` is networkx's successor or predecessor dict, so this is
    descendants() or ancestors() of all of ``start`` in one walk.
    """
    found = set(start)
    stack = list(start)
    while stack:
        for node in neighbours[stack.pop()]:
            if node not in found:
                found.add(node)
                stack.append(node)
    return found


def _propagate(out: Tensor, adjoints: dict[int, Tensor], relevant: set[int]) -> None:
    op = out.op
    inputs = out.inputs
    grads = op.gradient(inputs, out, adjoints[out.node])
    if len(grads) != len(inputs):
        raise GradientError(
            f"gradient rule of {op.name} returned {len(grads)} values for {len(inputs)} operands"
        )
    for x, g in zip(inputs, grads, strict=True):
        if g is None or x.node not in relevant:
            continue
        if g.type != x.type:
            raise GradientError(
                f"gradient rule of {op.name} (value {out.name!r}) returned {g.type} for "
                f"an operand of type {x.type}; a rule must return its operand's type"
            )
        previous = adjoints.get(x.node)
        adjoints[x.node] = g if previous is None else F.add(previous, g)
