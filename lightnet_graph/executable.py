"""The object every backend returns: run it, read its code, see its plan.

Parameters and states live in the executable as NumPy arrays keyed by
their names, so weights can be read, saved and replaced as a dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputValueError, NumericsError, UnboundInputError
from .graph import INPUT, OP, PARAMETER, STATE, Graph, TensorType


@dataclass(frozen=True)
class KernelInfo:
    """One unit of generated code and the graph values it computes."""

    name: str
    source: str
    nodes: tuple[str, ...]
    launches: int = 1
    global_size: tuple[int, ...] | None = None
    local_size: tuple[int, ...] | None = None


@dataclass(frozen=True)
class BufferInfo:
    """One preallocated buffer of a memory plan."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    values: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class MemoryPlan:
    """The buffers a program allocates, with and without reuse."""

    buffers: tuple[BufferInfo, ...]
    peak_bytes: int
    peak_bytes_without_reuse: int


class Executable:
    """A compiled program. Backends subclass it and implement ``_execute``."""

    backend_name = ""

    #: When true, every run also evaluates the graph op by op and raises
    #: NumericsError naming the first op whose output holds NaN or Inf.
    check_numerics = False

    def __init__(
        self, graph: Graph, outputs: Mapping[str, int], stages: Mapping[str, Graph]
    ):
        self.graph = graph
        self.outputs = dict(outputs)
        self.stages = dict(stages)
        self.input_types: dict[str, TensorType] = {}
        self.parameters: dict[str, np.ndarray] = {}
        self.states: dict[str, np.ndarray] = {}
        for _, data in graph.nx.nodes(data=True):
            if data["kind"] == INPUT:
                self.input_types[data["name"]] = data["type"]
            elif data["kind"] == PARAMETER:
                self.parameters[data["name"]] = data["value"].copy()
            elif data["kind"] == STATE:
                self.states[data["name"]] = data["value"].copy()
        self.state_updates = {
            graph.nx.nodes[state]["name"]: value
            for state, value in graph.updates.items()
        }

    # -- running --------------------------------------------------------------

    def run(
        self, feeds: Mapping[str, Any] | None = None, /, **named: Any
    ) -> dict[str, np.ndarray]:
        """Run the program on ``feeds`` (or keyword inputs) and return its outputs.

        States and parameters given new values with ``Graph.assign`` take
        them afterwards.
        """
        values = dict(feeds or {})
        values.update(named)
        bound = self.bind_inputs(values)
        if self.check_numerics:
            self.find_nonfinite(bound)
        outputs, updates = self._execute(bound)
        for name, value in updates.items():
            target = self.parameters if name in self.parameters else self.states
            target[name] = value
        return outputs

    def bind_inputs(self, values: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Check fed values against the declared inputs and convert their dtype."""
        unknown = sorted(set(values) - set(self.input_types))
        if unknown:
            raise InputValueError(
                f"{unknown[0]!r} is not an input of {self.graph.name!r}; its inputs are "
                f"{_describe(self.input_types)}"
            )
        missing = [name for name in self.input_types if name not in values]
        if missing:
            raise UnboundInputError(
                f"input {missing[0]!r} ({self.input_types[missing[0]]}) was given no value; "
                f"pass every input of {self.graph.name!r}: {_describe(self.input_types)}"
            )
        bound = {}
        for name, ttype in self.input_types.items():
            array = np.asarray(values[name])
            if array.shape != ttype.shape:
                raise InputValueError(
                    f"input {name!r} has shape {array.shape}, expected {ttype.shape}"
                )
            if not np.can_cast(array.dtype, ttype.dtype, casting="same_kind"):
                raise InputValueError(
                    f"input {name!r} has dtype {array.dtype}, expected {ttype.dtype}; "
                    f"convert it with .astype({ttype.dtype.name!r})"
                )
            # np.ascontiguousarray would turn a 0-d value into shape (1,).
            bound[name] = np.asarray(array, dtype=ttype.dtype, order="C")
        return bound

    def find_nonfinite(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Evaluate the graph op by op; raise at the first NaN or Inf output."""
        from .interpreter import evaluate

        graph = self.graph
        with np.errstate(all="ignore"):
            values = evaluate(
                graph,
                list(self.outputs.values()) + list(graph.updates.values()),
                inputs,
                self.get_parameters(),
                self.get_states(),
                stop=_first_nonfinite,
            )
        for node, value in values.items():
            if not _first_nonfinite(value):
                continue
            data = graph.nx.nodes[node]
            bad = "NaN" if np.isnan(value).any() else "Inf"
            if data["kind"] != OP:
                raise NumericsError(
                    f"{data['kind']} {data['name']!r} holds {bad} before any op runs"
                )
            operands = ", ".join(
                graph.nx.nodes[n]["name"] for n in graph.operands(node)
            )
            where = f", declared at {data['location']}" if data["location"] else ""
            raise NumericsError(
                f"{data['op'].name} {data['name']!r}{where} produced {bad} from "
                f"finite operands ({operands}); check the values that reach it"
            )

    def _execute(
        self, inputs: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        raise NotImplementedError

    # -- parameters and states --------------------------------------------------

    def get_parameters(self) -> dict[str, np.ndarray]:
        """Return a copy of every parameter, keyed by name."""
        return {name: value.copy() for name, value in self.parameters.items()}

    def set_parameters(self, values: Mapping[str, Any], strict: bool = True) -> None:
        """Replace parameters by name; with ``strict``, every parameter must be given."""
        _assign(self.parameters, values, "parameter", strict)

    def get_states(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self.states.items()}

    def set_states(self, values: Mapping[str, Any], strict: bool = False) -> None:
        _assign(self.states, values, "state", strict)

    # -- inspection -----------------------------------------------------------

    @property
    def source(self) -> str:
        """The whole generated program as text."""
        raise NotImplementedError

    @property
    def kernels(self) -> list[KernelInfo]:
        raise NotImplementedError

    def memory_plan(self) -> MemoryPlan:
        raise NotImplementedError


def _first_nonfinite(value: np.ndarray) -> bool:
    return value.dtype.kind == "f" and not bool(np.all(np.isfinite(value)))


def _describe(types: Mapping[str, TensorType]) -> str:
    return ", ".join(f"{name} {ttype}" for name, ttype in types.items()) or "none"


def _assign(
    target: dict[str, np.ndarray], values: Mapping[str, Any], kind: str, strict: bool
) -> None:
    unknown = sorted(set(values) - set(target))
    if unknown:
        raise InputValueError(
            f"{unknown[0]!r} is not a {kind} of this program; its {kind}s are {sorted(target)}"
        )
    if strict:
        missing = sorted(set(target) - set(values))
        if missing:
            raise InputValueError(
                f"{kind} {missing[0]!r} was not given; pass all of {sorted(target)}"
            )
    for name, value in values.items():
        array = np.asarray(value)
        current = target[name]
        if array.shape != current.shape:
            raise InputValueError(
                f"{kind} {name!r} has shape {array.shape}, expected {current.shape}"
            )
        target[name] = np.array(array, dtype=current.dtype, copy=True)
