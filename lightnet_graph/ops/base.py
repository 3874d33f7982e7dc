"""The op registry and the base class every op derives from.

An op is one small unit: its attributes, a type rule (:meth:`Op.infer`), its
NumPy meaning (:meth:`Op.numpy`, a source template that the NumPy backend
splices into the generated module and that :meth:`Op.forward` evaluates),
and its gradient rule (:meth:`Op.gradient`), which declares ordinary graph
nodes through the public op functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import DTypeError, GraphError, LightnetError, ShapeError, UnknownOpError
from ..graph import FLOAT_DTYPES, Graph, Tensor, TensorType, caller_location
from . import kernels

if TYPE_CHECKING:
    pass

REGISTRY: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    """Add an op class to the registry under its ``name``."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise GraphError(f"op {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls
    return cls


def get_op(name: str) -> type[Op]:
    """Return the op class registered as ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownOpError(
            f"unknown op {name!r}; registered ops are: {known}"
        ) from None


def literal(value: Any) -> str:
    """Return Python source for an attribute value."""
    if isinstance(value, float):
        if math.isinf(value):
            return "np.inf" if value > 0 else "-np.inf"
        if math.isnan(value):
            return "np.nan"
        return repr(value)
    if isinstance(value, np.dtype):
        return f"np.{value.name}"
    return repr(value)


class Op:
    """Base class of all ops.

    Subclasses set ``name`` and ``arity``, store their attributes in
    ``__init__`` through :meth:`_set_attrs`, and implement ``infer``,
    ``numpy`` and ``gradient``. Attributes must be hashable, because common
    subexpression elimination compares ops by ``(name, attrs)``.
    """

    name: ClassVar[str] = ""
    arity: ClassVar[int | None] = 1
    #: True when the NumPy template accepts ``out=`` and so can write into a
    #: preallocated buffer; False for views (reshape, transpose, slice).
    writes_out: ClassVar[bool] = True

    attrs: dict[str, Any]

    def __init__(self, **attrs: Any) -> None:
        self._set_attrs(**attrs)

    def _set_attrs(self, **attrs: Any) -> None:
        self.attrs = attrs
        for key, value in attrs.items():
            setattr(self, key, value)

    def key(self) -> tuple:
        return (self.name, tuple(sorted(self.attrs.items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.attrs.items())
        return f"{self.name}({args})"

    # -- the four parts of an op --------------------------------------------

    def infer(self, *types: TensorType) -> TensorType:
        """Return the output type, or raise ShapeError/DTypeError."""
        raise NotImplementedError

    def numpy(self, args: Sequence[str], out: str) -> str:
        """Return a NumPy expression computing the op.

        ``args`` are the operands' Python names and ``out`` is the name of a
        preallocated output buffer, or ``"None"`` to allocate a new array.
        """
        raise NotImplementedError

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        """Return the gradient of the loss for each input, given ``dy``.

        ``None`` means no gradient flows into that input (integer labels,
        masks, or a derivative that is zero almost everywhere).
        """
        raise NotImplementedError

    # -- derived --------------------------------------------------------------

    def forward(self, *arrays: np.ndarray) -> np.ndarray:
        """Evaluate the op's NumPy meaning on concrete arrays."""
        func = self.__dict__.get("_compiled")
        if func is None:
            names = [f"a{i}" for i in range(len(arrays))]
            source = f"lambda {', '.join(names)}: {self.numpy(names, 'None')}"
            func = eval(source, {"np": np, "k": kernels})  # noqa: S307 - our own template
            self.__dict__["_compiled"] = func
        return np.asarray(func(*arrays))


def apply(op: Op, *operands: Any, name: str | None = None) -> Tensor:
    """Declare ``op`` over ``operands`` in their graph and return its output.

    Python scalars and arrays among the operands become constants of the
    graph, in the float dtype of the tensor operands. Type errors are
    raised here, naming the op and the line of user code that declared it.
    """
    graph = _graph_of(op, operands)
    tensors = [_as_tensor(graph, value, operands) for value in operands]
    if op.arity is not None and len(tensors) != op.arity:
        raise GraphError(f"{op.name} takes {op.arity} operands, got {len(tensors)}")
    try:
        out_type = op.infer(*(t.type for t in tensors))
    except (ShapeError, DTypeError) as error:
        location = caller_location()
        where = f" (declared at {location})" if location else ""
        raise type(error)(f"{op.name}: {error}{where}") from None
    return graph.add_op(op, tensors, out_type, name=name)


def _graph_of(op: Op, operands: Sequence[Any]) -> Graph:
    graphs = {id(v.graph): v.graph for v in operands if isinstance(v, Tensor)}
    if not graphs:
        raise GraphError(f"{op.name}: at least one operand must be a Tensor")
    if len(graphs) > 1:
        names = sorted(g.name for g in graphs.values())
        raise GraphError(
            f"{op.name}: operands come from different graphs {names}; "
            "build each model in a single graph"
        )
    return next(iter(graphs.values()))


def _as_tensor(graph: Graph, value: Any, operands: Sequence[Any]) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, LightnetError):
        raise value
    float_dtypes = [
        v.dtype for v in operands if isinstance(v, Tensor) and v.dtype in FLOAT_DTYPES
    ]
    dtype = float_dtypes[0] if float_dtypes else graph.dtype
    array = np.asarray(value)
    if array.dtype.kind in "iub" and not float_dtypes:
        return graph.constant(array)
    return graph.constant(array, dtype=dtype)


def float_dtype(op_name: str, *types: TensorType) -> np.dtype:
    """Check that all operands share one float dtype and return it."""
    dtypes = {t.dtype for t in types}
    if len(dtypes) != 1:
        listed = " and ".join(str(t) for t in types)
        raise DTypeError(
            f"operands {listed} have different dtypes; cast one with "
            "lightnet_graph.cast() so both are the same"
        )
    dtype = next(iter(dtypes))
    if dtype not in FLOAT_DTYPES:
        raise DTypeError(
            f"operand dtype {dtype} is not a float; use float32 or float64"
        )
    return dtype


def normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """Turn None, an int or a sequence of ints into sorted positive axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    result = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise ShapeError(f"axis {a} is out of range for a value with {ndim} axes")
        result.append(a % ndim)
    if len(set(result)) != len(result):
        raise ShapeError(f"axis {axis} repeats an axis")
    return tuple(sorted(result))


def unary_float(types: Sequence[TensorType]) -> TensorType:
    (t,) = types
    float_dtype("", t)
    return t


GradientRule = Callable[[list[Tensor], Tensor, Tensor], list[Tensor | None]]
