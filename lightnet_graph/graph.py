"""The dataflow graph: value nodes, op nodes and symbolic tensor handles.

A :class:`Graph` stores its nodes in a networkx ``MultiDiGraph``. Every node
is one value with a static :class:`TensorType`. Op nodes keep their
:class:`~lightnet_graph.ops.base.Op`, and each edge into an op node carries
the operand slot as its key, so ``x * x`` is two edges from the same node.
"""

from __future__ import annotations

import heapq
import keyword
import os
import re
import sys
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from .errors import GraphError, ShapeError

if TYPE_CHECKING:
    from .ops.base import Op

INPUT = "input"
PARAMETER = "parameter"
CONSTANT = "constant"
STATE = "state"
OP = "op"
LEAF_KINDS = (INPUT, PARAMETER, CONSTANT, STATE)

FLOAT_DTYPES = (np.dtype("float32"), np.dtype("float64"))
INDEX_DTYPES = (np.dtype("int32"), np.dtype("int64"))

# Frames from these files and folders are library code, skipped when a node
# records the line of the user's code that declared it. Modules that declare
# models on the user's behalf (the built-in models) register as user code.
_INTERNAL_PATHS: list[str] = [os.path.dirname(os.path.abspath(__file__)) + os.sep]
_USER_PATHS: list[str] = []


# For each absolute filename, whether its frames are user code. It is cached
# because every declared node looks up several frames; marking a path clears it.
_USER_FILE_CACHE: dict[str, bool] = {}


def mark_internal(path: str) -> None:
    """Treat frames from ``path`` (a file or folder) as library code."""
    _INTERNAL_PATHS.append(_normalized(path))
    _USER_FILE_CACHE.clear()


def mark_user_code(path: str) -> None:
    """Treat frames from ``path`` as user code even inside the library."""
    _USER_PATHS.append(_normalized(path))
    _USER_FILE_CACHE.clear()


def _normalized(path: str) -> str:
    path = os.path.abspath(path)
    return path + os.sep if os.path.isdir(path) else path


@dataclass(frozen=True)
class Location:
    """A file and line of user code that declared a node."""

    filename: str
    lineno: int

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}"


def caller_location() -> Location | None:
    """Return the innermost frame on the stack that is not library code."""
    frame = sys._getframe(1)
    while frame is not None:
        if _is_user_file(frame.f_code.co_filename):
            return Location(frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return None


def _is_user_file(filename: str) -> bool:
    user = _USER_FILE_CACHE.get(filename)
    if user is None:
        path = os.path.abspath(filename)
        user = path.startswith(tuple(_USER_PATHS)) or not path.startswith(
            tuple(_INTERNAL_PATHS)
        )
        # A relative name resolves against the current directory, which can change.
        if os.path.isabs(filename):
            _USER_FILE_CACHE[filename] = user
    return user


@dataclass(frozen=True)
class TensorType:
    """The static shape and dtype of a value."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __str__(self) -> str:
        return f"{self.dtype.name}{list(self.shape)}"


def python_identifier(name: str) -> str:
    """Turn a user's value name into a safe Python identifier."""
    ident = re.sub(r"\W", "_", name, flags=re.ASCII) or "v"
    if ident[0].isdigit():
        ident = "v_" + ident
    if keyword.iskeyword(ident) or ident in ("np", "k"):
        ident += "_"
    return ident


class Tensor:
    """A symbolic handle to one value of a graph.

    Arithmetic operators declare ops, so ``(x @ w + b).tanh()`` builds
    three nodes. Equality and hashing are by identity of the node, which
    lets tensors be dictionary keys.
    """

    __slots__ = ("graph", "node")

    def __init__(self, graph: Graph, node: int) -> None:
        self.graph = graph
        self.node = node

    @property
    def type(self) -> TensorType:
        return self.graph.nx.nodes[self.node]["type"]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> np.dtype:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def name(self) -> str:
        return self.graph.nx.nodes[self.node]["name"]

    @property
    def kind(self) -> str:
        return self.graph.nx.nodes[self.node]["kind"]

    @property
    def op(self) -> Op | None:
        return self.graph.nx.nodes[self.node].get("op")

    @property
    def inputs(self) -> list[Tensor]:
        return [Tensor(self.graph, n) for n in self.graph.operands(self.node)]

    def __repr__(self) -> str:
        what = self.op.name if self.op is not None else self.kind
        return f"<Tensor {self.name!r} {what} {self.type}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Tensor)
            and other.graph is self.graph
            and other.node == self.node
        )

    def __hash__(self) -> int:
        return hash((id(self.graph), self.node))

    def __bool__(self) -> bool:
        raise TypeError(
            "a symbolic Tensor has no truth value; compare values after "
            "compiling and running the graph"
        )

    # Operators declare ops; the imports are local because ops import this
    # module.
    def __add__(self, other: Any) -> Tensor:
        from . import ops

        return ops.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        from . import ops

        return ops.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        from . import ops

        return ops.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        from . import ops

        return ops.sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        from . import ops

        return ops.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        from . import ops

        return ops.mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        from . import ops

        return ops.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        from . import ops

        return ops.div(other, self)

    def __neg__(self) -> Tensor:
        from . import ops

        return ops.neg(self)

    def __matmul__(self, other: Tensor) -> Tensor:
        from . import ops

        return ops.matmul(self, other)

    def __rmatmul__(self, other: Tensor) -> Tensor:
        from . import ops

        return ops.matmul(other, self)

    def __getitem__(self, index: Any) -> Tensor:
        from . import ops

        return ops.slice(self, index)

    @property
    def T(self) -> Tensor:
        from . import ops

        return ops.transpose(self)

    def reshape(self, *shape: Any) -> Tensor:
        from . import ops

        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.reshape(self, shape)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        from . import ops

        return ops.sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        from . import ops

        return ops.mean(self, axis, keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        from . import ops

        return ops.max(self, axis, keepdims)


Initializer = Callable[[np.random.Generator, tuple[int, ...], np.dtype], np.ndarray]


def _copy_multidigraph(graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """Return what graph.copy() returns, building networkx's dicts directly.

    As in networkx, each edge's key dict is shared by the successor and
    the predecessor maps, and node and edge attribute dicts are shallow
    copies. This is about twice as fast as copy() on unrolled graphs.
    """
    clone = graph.__class__()
    clone.graph.update(graph.graph)
    clone._node.update((node, dict(data)) for node, data in graph._node.items())
    successors, predecessors = clone._succ, clone._pred
    for node in graph._node:
        successors[node] = {}
        predecessors[node] = {}
    for u, neighbours in graph._succ.items():
        out = successors[u]
        for v, keys in neighbours.items():
            copied = {key: dict(data) for key, data in keys.items()}
            out[v] = copied
            predecessors[v][u] = copied
    return clone


def _smallest_first_order(graph: nx.MultiDiGraph, nodes: Container[int]) -> list[int]:
    """Return Kahn's topological order of ``nodes``, smallest ready node first.

    This is networkx's lexicographical_topological_sort of the induced
    subgraph, computed on the adjacency dicts directly, several times
    faster on large graphs. On a cycle the order misses the nodes on and
    after it.
    """
    predecessors, successors = graph._pred, graph._succ
    waiting = {node: sum(1 for p in predecessors[node] if p in nodes) for node in nodes}
    ready = [node for node, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for successor in successors[node]:
            if successor not in nodes:
                continue
            waiting[successor] -= 1
            if waiting[successor] == 0:
                heapq.heappush(ready, successor)
    return order


class Graph:
    """A model under construction: its values, ops and state updates.

    Parameters
    ----------
    name:
        Used in generated code and error messages.
    dtype:
        The float dtype of values declared without one (float32 by default).
    seed:
        Seeds the generator that initializers draw from.
    """

    def __init__(self, name: str = "model", dtype: Any = "float32", seed: int = 0):
        self.name = name
        self.dtype = np.dtype(dtype)
        if self.dtype not in FLOAT_DTYPES:
            raise GraphError(
                f"graph dtype {self.dtype} is not supported; use float32 or float64"
            )
        self.nx = nx.MultiDiGraph()
        self.rng = np.random.default_rng(seed)
        self.updates: dict[int, int] = {}
        self._next_id = 0
        self._names: dict[str, int] = {}

    # -- declaring values ---------------------------------------------------

    def input(self, name: str, shape: Sequence[int], dtype: Any = None) -> Tensor:
        """Declare a value that the caller feeds on every run."""
        return self._leaf(INPUT, name, shape, dtype)

    def parameter(
        self,
        name: str,
        shape: Sequence[int] | None = None,
        init: np.ndarray | Initializer | float | None = None,
        dtype: Any = None,
    ) -> Tensor:
        """Declare a trainable value with its initial value.

        ``init`` is an array, a scalar to fill with, or a function
        ``init(rng, shape, dtype)``; by default the parameter starts at zero.
        """
        dtype = np.dtype(dtype or self.dtype)
        value = self._initial_value(name, shape, init, dtype)
        return self._leaf(PARAMETER, name, value.shape, dtype, value=value)

    def state(
        self,
        name: str,
        shape: Sequence[int] | None = None,
        init: np.ndarray | Initializer | float | None = None,
        dtype: Any = None,
    ) -> Tensor:
        """Declare a value kept between runs, such as a running statistic.

        A state is read like an input and changed only by :meth:`assign`;
        gradients do not flow into it unless they are asked for.
        """
        dtype = np.dtype(dtype or self.dtype)
        value = self._initial_value(name, shape, init, dtype)
        return self._leaf(STATE, name, value.shape, dtype, value=value)

    def constant(
        self, value: Any, dtype: Any = None, name: str | None = None
    ) -> Tensor:
        """Declare a fixed value; Python scalars in op calls become these."""
        array = np.asarray(value, dtype=dtype or None)
        if dtype is None and array.dtype.kind == "f":
            array = array.astype(self.dtype)
        array = np.array(array, copy=True)
        array.setflags(write=False)
        return self._leaf(
            CONSTANT, name or "const", array.shape, array.dtype, value=array
        )

    def assign(self, target: Tensor, value: Tensor) -> None:
        """Make ``value`` the new content of ``target`` after every run.

        ``target`` is a state or a parameter (optimizers update parameters
        this way). Every run reads the old contents; the new ones are
        written after all outputs are computed.
        """
        self.check_owned(target)
        self.check_owned(value)
        if target.kind not in (STATE, PARAMETER):
            raise GraphError(
                f"assign: {target.name!r} is a {target.kind}, not a state or parameter; "
                "declare it with Graph.state()"
            )
        if value.type != target.type:
            raise ShapeError(
                f"assign: {target.name!r} is {target.type} but the new value "
                f"{value.name!r} is {value.type}; they must match"
            )
        self.updates[target.node] = value.node

    # -- queries ------------------------------------------------------------

    def tensor(self, node: int) -> Tensor:
        return Tensor(self, node)

    def __getitem__(self, name: str) -> Tensor:
        try:
            return Tensor(self, self._names[name])
        except KeyError:
            raise KeyError(f"graph {self.name!r} has no value named {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def nodes_of_kind(self, kind: str) -> list[Tensor]:
        return [Tensor(self, n) for n, k in self.nx.nodes(data="kind") if k == kind]

    @property
    def inputs(self) -> list[Tensor]:
        return self.nodes_of_kind(INPUT)

    @property
    def parameters(self) -> list[Tensor]:
        return self.nodes_of_kind(PARAMETER)

    @property
    def states(self) -> list[Tensor]:
        return self.nodes_of_kind(STATE)

    def operands(self, node: int) -> list[int]:
        """Return the operand nodes of ``node`` in slot order."""
        # Reading networkx's predecessor dict directly is several times faster
        # than an in_edges view or the pred view, and every pass calls this
        # once per node.
        predecessors = self.nx._pred[node]
        if len(predecessors) == 1:
            ((operand, slots),) = predecessors.items()
            return [operand] * len(slots)
        pairs = sorted(
            (slot, operand) for operand, slots in predecessors.items() for slot in slots
        )
        return [operand for _, operand in pairs]

    def consumers(self, node: int) -> list[int]:
        return sorted(self.nx._succ[node])

    def topological_order(self, nodes: Iterable[int] | None = None) -> list[int]:
        """Return nodes in a deterministic topological order (by node id)."""
        # Ops are usually created after their operands, so the ids in
        # increasing order are already the lexicographically smallest
        # topological order; checking that is linear, sorting is not.
        known = self.nx._node
        chosen = known if nodes is None else {n for n in nodes if n in known}
        successors = self.nx._succ
        order = sorted(chosen)
        if all(v > u for u in order for v in successors[u] if v in chosen):
            return order
        order = _smallest_first_order(self.nx, chosen)
        if len(order) == len(chosen):
            return order
        view = self.nx if nodes is None else self.nx.subgraph(nodes)
        try:
            return list(nx.lexicographical_topological_sort(view))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(view)
            names = " -> ".join(self.nx.nodes[u]["name"] for u, *_ in cycle)
            raise GraphError(
                f"graph {self.name!r} has a cycle: {names}; "
                "carry values across steps with a recurrence or a state instead"
            ) from None

    def check_owned(self, tensor: Any) -> None:
        if not isinstance(tensor, Tensor):
            raise TypeError(f"expected a Tensor, got {type(tensor).__name__}")
        if tensor.graph is not self:
            raise GraphError(
                f"value {tensor.name!r} belongs to graph {tensor.graph.name!r}, "
                f"not {self.name!r}; build each model in a single graph"
            )

    # -- building -----------------------------------------------------------

    def add_op(
        self,
        op: Op,
        operands: Sequence[Tensor],
        out_type: TensorType,
        name: str | None = None,
    ) -> Tensor:
        """Add an op node over ``operands``; called by the op functions."""
        node = self._new_node(OP, name or op.name, out_type, op=op)
        for slot, operand in enumerate(operands):
            self.nx.add_edge(operand.node, node, key=slot)
        return Tensor(self, node)

    def copy(self) -> Graph:
        """Return a copy whose nodes and edges can change independently."""
        clone = Graph.__new__(Graph)
        clone.__dict__.update(self.__dict__)
        clone.nx = _copy_multidigraph(self.nx)
        clone.updates = dict(self.updates)
        clone._names = dict(self._names)
        return clone

    def replace_uses(self, old: int, new: int) -> None:
        """Point every edge that reads ``old`` at ``new`` instead."""
        for _, consumer, slot in list(self.nx.out_edges(old, keys=True)):
            self.nx.remove_edge(old, consumer, key=slot)
            self.nx.add_edge(new, consumer, key=slot)
        for state, value in self.updates.items():
            if value == old:
                self.updates[state] = new

    def remove_node(self, node: int) -> None:
        name = self.nx.nodes[node]["name"]
        if self._names.get(name) == node:
            del self._names[name]
        self.nx.remove_node(node)

    def _leaf(
        self,
        kind: str,
        name: str,
        shape: Sequence[int] | None,
        dtype: Any,
        value: np.ndarray | None = None,
    ) -> Tensor:
        if not isinstance(name, str) or not name:
            raise GraphError(f"a {kind} needs a non-empty string name, got {name!r}")
        if kind != CONSTANT and name in self._names:
            raise GraphError(
                f"graph {self.name!r} already has a value named {name!r}; "
                f"give this {kind} another name"
            )
        shape = _check_shape(name, shape)
        dtype = np.dtype(dtype or self.dtype)
        node = self._new_node(kind, name, TensorType(shape, dtype), value=value)
        return Tensor(self, node)

    def _new_node(self, kind: str, name: str, ttype: TensorType, **attrs: Any) -> int:
        node = self._next_id
        self._next_id += 1
        unique = name
        if unique in self._names:
            unique = f"{name}_{node}"
        self._names[unique] = node
        self.nx.add_node(
            node,
            kind=kind,
            name=unique,
            type=ttype,
            location=caller_location(),
            **attrs,
        )
        return node

    def _initial_value(
        self, name: str, shape: Sequence[int] | None, init: Any, dtype: np.dtype
    ) -> np.ndarray:
        if isinstance(init, np.ndarray):
            value = init
            if shape is not None and tuple(shape) != value.shape:
                raise ShapeError(
                    f"{name!r}: declared shape {tuple(shape)} but the initial "
                    f"value has shape {value.shape}"
                )
        else:
            if shape is None:
                raise GraphError(f"{name!r}: give a shape or an initial array")
            shape = _check_shape(name, shape)
            if init is None:
                value = np.zeros(shape, dtype)
            elif callable(init):
                value = np.asarray(init(self.rng, shape, dtype))
            else:
                value = np.full(shape, init, dtype)
            if value.shape != shape:
                raise ShapeError(
                    f"{name!r}: the initializer returned shape {value.shape}, "
                    f"expected {shape}"
                )
        return np.array(value, dtype=dtype, copy=True)


def _check_shape(name: str, shape: Any) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in shape)
    except TypeError:
        raise ShapeError(
            f"{name!r}: shape must be a sequence of ints, got {shape!r}"
        ) from None
    if any(d < 0 for d in dims):
        raise ShapeError(f"{name!r}: shape {dims} has a negative dimension")
    return dims
