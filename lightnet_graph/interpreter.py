"""A reference evaluator that runs a graph node by node with each op's forward.

It is slow and allocates freely. Constant folding and gradient checking use
it, and tests use it as a second opinion on generated code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import networkx as nx
import numpy as np

from .errors import UnboundInputError
from .graph import CONSTANT, INPUT, OP, PARAMETER, STATE, Graph


def evaluate(
    graph: Graph,
    targets: Iterable[int],
    feeds: Mapping[str, np.ndarray] | None = None,
    parameters: Mapping[str, np.ndarray] | None = None,
    states: Mapping[str, np.ndarray] | None = None,
    stop: Callable[[np.ndarray], bool] | None = None,
) -> dict[int, np.ndarray]:
    """Return the value of every node that ``targets`` depend on, keyed by node.

    Parameters and states default to their initial values in the graph.
    With ``stop``, evaluation ends after the first op value for which
    ``stop(value)`` is true.
    """
    feeds = feeds or {}
    parameters = parameters or {}
    states = states or {}
    targets = list(targets)
    needed = set(targets)
    for node in targets:
        needed |= nx.ancestors(graph.nx, node)
    values: dict[int, np.ndarray] = {}
    for node in graph.topological_order(needed):
        data = graph.nx.nodes[node]
        kind, name = data["kind"], data["name"]
        if kind == OP:
            operands = [values[n] for n in graph.operands(node)]
            values[node] = data["op"].forward(*operands)
            if stop is not None and stop(values[node]):
                break
        elif kind == CONSTANT:
            values[node] = data["value"]
        elif kind == PARAMETER:
            values[node] = np.asarray(parameters.get(name, data["value"]))
        elif kind == STATE:
            values[node] = np.asarray(states.get(name, data["value"]))
        elif kind == INPUT:
            if name not in feeds:
                raise UnboundInputError(
                    f"input {name!r} ({data['type']}) was given no value"
                )
            values[node] = np.asarray(feeds[name], dtype=data["type"].dtype)
    return values
