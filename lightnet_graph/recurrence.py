"""Recurrences: a step function declared once and unrolled over T steps.

A step function ``step(params, state, x_t) -> (new_state, y_t)`` is plain
Python written with the public ops::

    def step(params, state, x_t):
        (h,) = state
        h = lg.tanh(lg.linear(x_t, params["w_x"], params["b"]) + h @ params["w_h"].T)
        return (h,), h

:func:`recurrence` traces it once into a graph of its own, whose inputs
stand for the parameters, the carried state and one step ``x_t`` of the
input sequence, and declares a ``recurrence`` node for each value it
returns. The unroll pass (:mod:`lightnet_graph.passes.unroll`) later copies
the traced step graph T times into the compiled graph, so autodiff derives
back-propagation through time from the gradient rules of the copied ops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np

from .errors import DTypeError, GradientError, GraphError, ShapeError
from .graph import CONSTANT, INPUT, OP, Graph, Tensor, TensorType
from .ops.base import Op, apply, register

StepFunction = Callable[
    [dict[str, Tensor], tuple[Tensor, ...], Tensor], tuple[Sequence[Tensor], Tensor]
]

# The values a recurrence node can select: the stacked outputs (T, ...), the
# last step's output, or (an int i) the final value of state i.
OUTPUTS = "outputs"
LAST = "last"
Select = str | int


class StepGraph:
    """A step function traced once: its graph, placeholders and results.

    ``x``, ``states`` and ``params`` are the placeholder (input) nodes of
    the step graph, ``new_states`` and ``output`` the nodes that the step
    function returned, and ``order`` the topological order of the constant
    and op nodes that those results need. ``steps`` is T.
    """

    def __init__(
        self,
        name: str,
        graph: Graph,
        steps: int,
        x: int,
        states: Sequence[int],
        state_names: Sequence[str],
        params: Sequence[tuple[str, int]],
        new_states: Sequence[int],
        output: int,
    ) -> None:
        self.name = name
        self.graph = graph
        self.steps = steps
        self.x = x
        self.states = tuple(states)
        self.state_names = tuple(state_names)
        self.params = tuple(params)
        self.new_states = tuple(new_states)
        self.output = output
        results = set(self.new_states) | {output}
        needed = set(results)
        for node in results:
            needed |= nx.ancestors(graph.nx, node)
        self.order = [
            node
            for node in graph.topological_order(needed)
            if graph.nx.nodes[node]["kind"] != INPUT
        ]
        self.operands = {node: graph.operands(node) for node in self.order}

    def __repr__(self) -> str:
        ops = sum(1 for n in self.order if self.graph.nx.nodes[n]["kind"] == OP)
        return f"<step {self.name!r}: {ops} ops, T={self.steps}>"

    @property
    def operand_types(self) -> list[TensorType]:
        """The types of a recurrence node's operands: xs, states, params."""
        nodes = self.graph.nx.nodes
        xs = nodes[self.x]["type"]
        types = [TensorType((self.steps,) + xs.shape, xs.dtype)]
        types += [nodes[n]["type"] for n in self.states]
        types += [nodes[n]["type"] for _, n in self.params]
        return types

    def result_type(self, select: Select) -> TensorType:
        """Return the type of the value that ``select`` picks."""
        nodes = self.graph.nx.nodes
        if select == OUTPUTS:
            y = nodes[self.output]["type"]
            return TensorType((self.steps,) + y.shape, y.dtype)
        if select == LAST:
            return nodes[self.output]["type"]
        return nodes[self.new_states[select]]["type"]

    def describe(self) -> str:
        """Return the step graph as text, one line per op, for inspection."""
        nodes = self.graph.nx.nodes
        lines = [f"recurrence {self.name!r} over T = {self.steps} steps"]
        inputs = [self.x, *self.states, *(n for _, n in self.params)]
        for node in inputs:
            lines.append(f"  {nodes[node]['name']}: {nodes[node]['type']} (input)")
        for node in self.order:
            data = nodes[node]
            if data["kind"] == OP:
                args = ", ".join(nodes[n]["name"] for n in self.operands[node])
                what = f"{data['op'].name}({args})"
            else:
                what = "constant"
            lines.append(f"  {data['name']}: {data['type']} = {what}")
        results = [
            f"{n} = {nodes[s]['name']}"
            for n, s in zip(self.state_names, self.new_states, strict=True)
        ]
        results.append(f"y = {nodes[self.output]['name']}")
        lines.append("  returns " + ", ".join(results))
        return "\n".join(lines)

    def evaluate(self, arrays: Sequence[np.ndarray]) -> dict[Select, np.ndarray]:
        """Run the step graph T times on concrete operands, op by op.

        This is the reference meaning of a recurrence node, used by the
        interpreter; compiled programs run the unrolled graph instead.
        """
        xs, rest = arrays[0], arrays[1:]
        values: dict[int, np.ndarray] = {}
        for (_, node), value in zip(self.params, rest[len(self.states) :], strict=True):
            values[node] = value
        state = list(rest[: len(self.states)])
        ys = []
        nodes = self.graph.nx.nodes
        for t in range(self.steps):
            values[self.x] = xs[t]
            values.update(zip(self.states, state, strict=True))
            for node in self.order:
                data = nodes[node]
                if data["kind"] == CONSTANT:
                    values[node] = data["value"]
                else:
                    operands = [values[n] for n in self.operands[node]]
                    values[node] = data["op"].forward(*operands)
            state = [values[n] for n in self.new_states]
            ys.append(values[self.output])
        results: dict[Select, np.ndarray] = {OUTPUTS: np.stack(ys), LAST: ys[-1]}
        results.update(enumerate(state))
        return results


@register
class Recurrence(Op):
    """One value of a step function run over the T steps of a sequence.

    Operands: the input sequence xs (T, ...), the initial states, then the
    parameters in the order of the step's ``params``. ``select`` picks the
    value: ``"outputs"`` stacks every step's y_t into (T, ...), ``"last"``
    is y_T, and an int i is state i after the last step. The unroll pass
    replaces recurrence nodes before autodiff and code generation, so the
    op has no gradient rule and no NumPy template of its own.
    """

    name = "recurrence"
    arity = None

    def __init__(self, step: StepGraph, select: Select) -> None:
        self._set_attrs(step=step, select=select)

    def __repr__(self) -> str:
        return f"recurrence({self.step.name!r}, T={self.step.steps}, select={self.select!r})"

    def infer(self, *types: TensorType) -> TensorType:
        expected = self.step.operand_types
        if len(types) != len(expected):
            raise ShapeError(
                f"recurrence {self.step.name!r} takes {len(expected)} operands "
                f"(xs, states, parameters), got {len(types)}"
            )
        for position, (got, want) in enumerate(zip(types, expected, strict=True)):
            if got != want:
                raise ShapeError(
                    f"recurrence {self.step.name!r}: operand {position} is {got} but "
                    f"the step function was traced with {want}"
                )
        return self.step.result_type(self.select)

    def numpy(self, args: Sequence[str], out: str) -> str:
        raise GraphError(
            f"recurrence {self.step.name!r} reached code generation without being "
            "unrolled; compile it with lightnet_graph.compile(), which unrolls it"
        )

    def forward(self, *arrays: np.ndarray) -> np.ndarray:
        return self.step.evaluate(arrays)[self.select]

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        raise GradientError(
            f"recurrence {self.step.name!r} has no gradient rule of its own: "
            "back-propagation through time comes from its unrolled steps. Use "
            "lightnet_graph.compile(loss=..., wrt=...), which unrolls before autodiff"
        )


def recurrence(
    step: StepFunction,
    xs: Tensor,
    initial_states: Tensor | Sequence[Tensor],
    params: Mapping[str, Tensor] | None = None,
    *,
    name: str = "recurrence",
    outputs: str = "all",
    state_names: Sequence[str] | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Declare ``step`` run over the sequence ``xs``; return (outputs, final states).

    ``step(params, state, x_t)`` returns ``(new_state, y_t)``, where
    ``new_state`` has one tensor per initial state, of the same shape and
    dtype. It may read only the tensors it is given, so every weight must
    come in through ``params``. ``xs`` has shape (T, ...) with T >= 1, and
    step t reads ``x_t = xs[t]``. With ``outputs="all"`` the first result
    stacks every y_t into shape (T, ...); with ``"last"`` it is the last y_t.

    After compile() unrolls the recurrence, the state produced by step t
    (t = 0 .. T-1) is the value named ``f"{name}.{state_name}@{t}"``, and
    y_t, when it is not one of those states, ``f"{name}.y@{t}"``. Pass these
    names in compile()'s ``wrt`` to get gradients with respect to every
    step's state. ``state_names`` default to ``state0``, ``state1``, ...
    """
    if not isinstance(xs, Tensor):
        raise TypeError(
            f"recurrence {name!r}: xs must be a Tensor, got {type(xs).__name__}"
        )
    graph = xs.graph
    states = (
        [initial_states] if isinstance(initial_states, Tensor) else list(initial_states)
    )
    params = dict(params or {})
    state_names = _state_names(name, state_names, len(states))
    _check_declaration(graph, name, xs, states, params, outputs, state_names)

    traced = _trace(step, name, xs, states, params, state_names)
    operands = [xs, *states, *params.values()]
    select = OUTPUTS if outputs == "all" else LAST
    result = apply(Recurrence(traced, select), *operands, name=f"{name}.{select}")
    finals = tuple(
        apply(Recurrence(traced, i), *operands, name=f"{name}.{state_name}")
        for i, state_name in enumerate(state_names)
    )
    return result, finals


def _state_names(name: str, names: Sequence[str] | None, count: int) -> tuple[str, ...]:
    if names is None:
        return tuple(f"state{i}" for i in range(count))
    names = tuple(names)
    if len(names) != count:
        raise GraphError(
            f"recurrence {name!r}: {len(names)} state names {list(names)} for "
            f"{count} initial states; give one name per state"
        )
    return names


def _check_declaration(
    graph: Graph,
    name: str,
    xs: Tensor,
    states: list[Any],
    params: dict[str, Any],
    outputs: str,
    state_names: tuple[str, ...],
) -> None:
    if outputs not in ("all", "last"):
        raise GraphError(
            f"recurrence {name!r}: outputs={outputs!r} is invalid; use 'all' or 'last'"
        )
    if xs.ndim < 1 or xs.shape[0] == 0:
        raise ShapeError(
            f"recurrence {name!r}: the input sequence {xs.name!r} has shape {xs.shape}, "
            "so there are no time steps; its axis 0 is time and needs T >= 1"
        )
    if not states:
        raise GraphError(
            f"recurrence {name!r}: initial states are missing; give at least one"
        )
    for state in states:
        graph.check_owned(state)
    for key, value in params.items():
        if not isinstance(key, str) or not key:
            raise GraphError(
                f"recurrence {name!r}: parameter key {key!r} is invalid; use a non-empty string"
            )
        graph.check_owned(value)
    placeholders = ["x_t", *state_names, *params]
    repeated = sorted({p for p in placeholders if placeholders.count(p) > 1})
    if repeated:
        raise GraphError(
            f"recurrence {name!r}: {repeated[0]!r} names two of x_t, the states and "
            "the parameters; give each a distinct name"
        )
    taken = [
        f"{name}.{s}" for s in (OUTPUTS, LAST, *state_names) if f"{name}.{s}" in graph
    ]
    if taken:
        raise GraphError(
            f"graph {graph.name!r} already has a value named {taken[0]!r}; give this "
            "recurrence another name= (each recurrence of a graph needs its own)"
        )


def _trace(
    step: StepFunction,
    name: str,
    xs: Tensor,
    states: list[Tensor],
    params: dict[str, Tensor],
    state_names: tuple[str, ...],
) -> StepGraph:
    """Run ``step`` once on placeholders in a graph of its own."""
    local = Graph(f"{name}.step", dtype=xs.graph.dtype)
    x_t = local.input("x_t", xs.shape[1:], xs.dtype)
    state_in = tuple(
        local.input(state_name, s.shape, s.dtype)
        for state_name, s in zip(state_names, states, strict=True)
    )
    params_in = {key: local.input(key, p.shape, p.dtype) for key, p in params.items()}
    try:
        result = step(dict(params_in), state_in, x_t)
    except (ShapeError, DTypeError) as error:
        raise type(error)(
            f"in the step function of recurrence {name!r}: {error}"
        ) from None
    except GraphError as error:
        raise GraphError(
            f"in the step function of recurrence {name!r}: {error}. A step function "
            "may read only the tensors it is given; pass weights through params"
        ) from None

    new_states, y = _unpack(name, result, len(states))
    for value in (*new_states, y):
        if value.graph is not local:
            raise GraphError(
                f"the step function of recurrence {name!r} returned {value.name!r}, a "
                "value of the enclosing graph; a step function may read only the "
                "tensors it is given, so pass weights through params"
            )
    for state_name, before, after in zip(
        state_names, state_in, new_states, strict=True
    ):
        if after.type != before.type:
            raise ShapeError(
                f"recurrence {name!r}: state {state_name!r} is {before.type} but the step "
                f"function returns {after.type} for it; a state keeps its shape and "
                "dtype from step to step"
            )
    _check_step_nodes(
        name,
        local,
        {x_t.node, *(s.node for s in state_in), *(p.node for p in params_in.values())},
    )
    return StepGraph(
        name,
        local,
        xs.shape[0],
        x_t.node,
        [s.node for s in state_in],
        state_names,
        [(key, p.node) for key, p in params_in.items()],
        [s.node for s in new_states],
        y.node,
    )


def _unpack(name: str, result: Any, count: int) -> tuple[list[Tensor], Tensor]:
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise GraphError(
            f"the step function of recurrence {name!r} returned {type(result).__name__}; "
            "it must return (new_state, y_t)"
        )
    new_states, y = result
    if isinstance(new_states, Tensor):
        new_states = [new_states]
    new_states = list(new_states)
    if len(new_states) != count or not all(isinstance(s, Tensor) for s in new_states):
        raise GraphError(
            f"the step function of recurrence {name!r} returned {len(new_states)} new "
            f"states for {count} initial states; return one Tensor per state"
        )
    if not isinstance(y, Tensor):
        raise GraphError(
            f"the step function of recurrence {name!r} returned y_t of type "
            f"{type(y).__name__}; y_t must be a Tensor"
        )
    return new_states, y


def _check_step_nodes(name: str, local: Graph, placeholders: set[int]) -> None:
    for node, data in local.nx.nodes(data=True):
        if data["kind"] in (OP, CONSTANT) and not isinstance(
            data.get("op"), Recurrence
        ):
            continue
        if node in placeholders:
            continue
        what = (
            "a recurrence"
            if data["kind"] == OP
            else f"the {data['kind']} {data['name']!r}"
        )
        raise GraphError(
            f"the step function of recurrence {name!r} declares {what}; a step "
            "function may only apply ops to the tensors it is given (declare "
            "parameters outside it and pass them through params; nested "
            "recurrences are not supported)"
        )
