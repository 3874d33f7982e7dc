"""Shape ops: transpose, reshape, concat, slicing, gather and one-hot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import lightnet_graph.ops as F

from ..errors import DTypeError, ShapeError
from ..graph import FLOAT_DTYPES, INDEX_DTYPES, Tensor, TensorType
from .base import Op, apply, float_dtype, literal, register

# A normalized index item: an int picks one position and drops the axis, a
# (start, stop, step) triple keeps it, with stop -1 meaning "through index 0"
# for negative steps.
IndexItem = int | tuple[int, int, int]


@register
class Transpose(Op):
    """y = x with its axes permuted by ``perm``.  dz/dx = dy permuted back."""

    name = "transpose"
    writes_out = False

    def __init__(self, perm: Sequence[int] | None = None) -> None:
        self._set_attrs(perm=None if perm is None else tuple(int(p) for p in perm))

    def infer(self, x: TensorType) -> TensorType:
        perm = self.perm if self.perm is not None else tuple(reversed(range(x.ndim)))
        if sorted(perm) != list(range(x.ndim)):
            raise ShapeError(
                f"perm {perm} is not a permutation of the {x.ndim} axes of {x.shape}"
            )
        self._set_attrs(perm=tuple(perm))
        return TensorType(tuple(x.shape[p] for p in perm), x.dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"np.transpose({args[0]}, {self.perm!r})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [F.transpose(dy, tuple(int(i) for i in np.argsort(self.perm)))]


@register
class Reshape(Op):
    """y = x with a new shape of the same size (one -1 is inferred).

    dz/dx = dy reshaped to x's shape.
    """

    name = "reshape"
    writes_out = False

    def __init__(self, shape: Sequence[int]) -> None:
        self._set_attrs(shape=tuple(int(d) for d in shape))

    def infer(self, x: TensorType) -> TensorType:
        shape = list(self.shape)
        if shape.count(-1) > 1:
            raise ShapeError(f"shape {self.shape} has more than one -1")
        if -1 in shape:
            known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
            if known == 0 or x.size % known:
                raise ShapeError(
                    f"cannot reshape {x.shape} ({x.size} elements) to {self.shape}"
                )
            shape[shape.index(-1)] = x.size // known
        if int(np.prod(shape, dtype=np.int64)) != x.size or any(d < 0 for d in shape):
            raise ShapeError(
                f"cannot reshape {x.shape} ({x.size} elements) to {self.shape}"
            )
        self._set_attrs(shape=tuple(shape))
        return TensorType(tuple(shape), x.dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"np.reshape({args[0]}, {self.shape!r})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [F.reshape(dy, inputs[0].shape)]


@register
class Concat(Op):
    """y = the operands joined along ``axis``.  dz/dx_i = the matching slice of dy."""

    name = "concat"
    arity = None

    def __init__(self, axis: int = 0) -> None:
        self._set_attrs(axis=int(axis))

    def infer(self, *types: TensorType) -> TensorType:
        if not types:
            raise ShapeError("needs at least one operand")
        dtype = float_dtype(self.name, *types)
        first = types[0]
        axis = self.axis % first.ndim if first.ndim else 0
        if first.ndim == 0:
            raise ShapeError("cannot concatenate 0-d values; reshape them to (1,)")
        for t in types[1:]:
            same = t.ndim == first.ndim and all(
                a == b
                for i, (a, b) in enumerate(zip(t.shape, first.shape, strict=True))
                if i != axis
            )
            if not same:
                raise ShapeError(
                    f"shapes {first.shape} and {t.shape} differ outside axis {self.axis}"
                )
        self._set_attrs(axis=axis)
        shape = list(first.shape)
        shape[axis] = sum(t.shape[axis] for t in types)
        return TensorType(tuple(shape), dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"np.concatenate([{', '.join(args)}], axis={self.axis}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        grads = []
        start = 0
        for x in inputs:
            index = [slice(None)] * dy.ndim
            index[self.axis] = slice(start, start + x.shape[self.axis])
            grads.append(F.slice(dy, tuple(index)))
            start += x.shape[self.axis]
        return grads


def normalize_index(index: Any, shape: tuple[int, ...]) -> tuple[IndexItem, ...]:
    """Turn a basic NumPy index (ints, slices, one Ellipsis) into one item per axis."""
    items = list(index) if isinstance(index, tuple) else [index]
    if sum(item is Ellipsis for item in items) > 1:
        raise ShapeError(f"index {index!r} has more than one Ellipsis")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        fill = len(shape) - (len(items) - 1)
        items[at : at + 1] = [slice(None)] * fill
    if len(items) > len(shape):
        raise ShapeError(f"index {index!r} has {len(items)} items for shape {shape}")
    items += [slice(None)] * (len(shape) - len(items))
    result: list[IndexItem] = []
    for item, dim in zip(items, shape, strict=True):
        if isinstance(item, slice):
            result.append(item.indices(dim))
        elif isinstance(item, (int, np.integer)):
            if not -dim <= int(item) < dim:
                raise ShapeError(
                    f"index {int(item)} is out of range for an axis of size {dim}"
                )
            result.append(int(item) % dim)
        else:
            raise ShapeError(
                f"index item {item!r} is not supported; use ints, slices and '...', "
                "or gather() for integer arrays"
            )
    return tuple(result)


def index_source(index: tuple[IndexItem, ...]) -> str:
    """Return the Python source of a normalized index, as a subscript."""
    parts = []
    for item in index:
        if isinstance(item, int):
            parts.append(str(item))
            continue
        start, stop, step = item
        stop_text = "None" if stop < 0 else str(stop)
        parts.append(f"{start}:{stop_text}:{step}")
    return ", ".join(parts) + ("," if len(parts) == 1 else "")


def index_object_source(index: tuple[IndexItem, ...]) -> str:
    """Return the Python source of a normalized index as a tuple of slice objects."""
    parts = []
    for item in index:
        if isinstance(item, int):
            parts.append(str(item))
        else:
            start, stop, step = item
            parts.append(f"slice({start}, {None if stop < 0 else stop}, {step})")
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _sliced_shape(index: tuple[IndexItem, ...]) -> tuple[int, ...]:
    return tuple(len(range(*item)) for item in index if not isinstance(item, int))


@register
class Slice(Op):
    """y = x[index] for a basic index of ints and slices.

    dz/dx = zeros of x's shape with dy written at ``index`` (op ``unslice``).
    """

    name = "slice"
    writes_out = False

    def __init__(self, index: tuple[IndexItem, ...]) -> None:
        self._set_attrs(index=index)

    def infer(self, x: TensorType) -> TensorType:
        if len(self.index) != x.ndim:
            raise ShapeError(f"index has {len(self.index)} items for shape {x.shape}")
        return TensorType(_sliced_shape(self.index), x.dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"{args[0]}[{index_source(self.index)}]"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [apply(Unslice(inputs[0].shape, self.index), dy)]


@register
class Unslice(Op):
    """y = zeros of ``shape`` with x written at ``index``.  dz/dx = dy[index]."""

    name = "unslice"

    def __init__(self, shape: Sequence[int], index: tuple[IndexItem, ...]) -> None:
        self._set_attrs(shape=tuple(int(d) for d in shape), index=index)

    def infer(self, x: TensorType) -> TensorType:
        if _sliced_shape(self.index) != x.shape:
            raise ShapeError(
                f"value shape {x.shape} does not fit index of {self.shape}"
            )
        return TensorType(self.shape, x.dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"k.unslice({args[0]}, {self.shape!r}, {index_object_source(self.index)}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [apply(Slice(self.index), dy)]


def _index_dtype(t: TensorType, what: str) -> None:
    if t.dtype not in INDEX_DTYPES:
        raise DTypeError(f"{what} have dtype {t.dtype}; use int32 or int64")


@register
class Gather(Op):
    """y[..., :] = table[indices[...], :], an embedding lookup along axis 0.

    dz/dtable = scatter_add(indices, dy, rows): each row's gradient is the
    sum of dy over the positions that picked it.  Indices get no gradient.
    """

    name = "gather"
    arity = 2

    def infer(self, table: TensorType, indices: TensorType) -> TensorType:
        float_dtype(self.name, table)
        _index_dtype(indices, "indices")
        if table.ndim < 1:
            raise ShapeError(f"table shape {table.shape} needs at least one axis")
        return TensorType(indices.shape + table.shape[1:], table.dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"k.gather({args[0]}, {args[1]}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        table, indices = inputs
        return [apply(ScatterAdd(table.shape[0]), indices, dy), None]


@register
class ScatterAdd(Op):
    """y = zeros (rows, ...) with y[indices[p]] += x[p] for every position p.

    dz/dx = gather(dy, indices).
    """

    name = "scatter_add"
    arity = 2

    def __init__(self, rows: int) -> None:
        self._set_attrs(rows=int(rows))

    def infer(self, indices: TensorType, values: TensorType) -> TensorType:
        _index_dtype(indices, "indices")
        float_dtype(self.name, values)
        if values.shape[: indices.ndim] != indices.shape:
            raise ShapeError(
                f"values shape {values.shape} must start with the indices shape {indices.shape}"
            )
        return TensorType((self.rows,) + values.shape[indices.ndim :], values.dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"k.scatter_add({args[0]}, {args[1]}, {self.rows}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        indices, _ = inputs
        return [None, F.gather(dy, indices)]


@register
class OneHot(Op):
    """y[..., c] = 1 where indices[...] == c, else 0.  No gradient."""

    name = "one_hot"

    def __init__(self, depth: int, dtype: Any) -> None:
        self._set_attrs(depth=int(depth), dtype=np.dtype(dtype))

    def infer(self, indices: TensorType) -> TensorType:
        _index_dtype(indices, "indices")
        if self.dtype not in FLOAT_DTYPES:
            raise DTypeError(f"one_hot dtype {self.dtype} must be float32 or float64")
        if self.depth < 1:
            raise ShapeError(f"depth {self.depth} must be at least 1")
        return TensorType(indices.shape + (self.depth,), self.dtype)

    def numpy(self, args: Sequence[str], out: str) -> str:
        return f"k.one_hot({args[0]}, {self.depth}, {literal(self.dtype)}, out={out})"

    def gradient(
        self, inputs: list[Tensor], output: Tensor, dy: Tensor
    ) -> list[Tensor | None]:
        return [None]


def transpose(x: Tensor, perm: Sequence[int] | None = None) -> Tensor:
    return apply(Transpose(perm), x)


def reshape(x: Tensor, shape: Sequence[int]) -> Tensor:
    if tuple(shape) == x.shape:
        return x
    return apply(Reshape(shape), x)


def concat(values: Sequence[Tensor], axis: int = 0) -> Tensor:
    return apply(Concat(axis), *values)


def slice_index(x: Tensor, index: Any) -> Tensor:
    """x[index] for ints, slices and one Ellipsis, as in NumPy basic indexing."""
    return apply(Slice(normalize_index(index, x.shape)), x)


def gather(table: Tensor, indices: Tensor) -> Tensor:
    return apply(Gather(), table, indices)


def scatter_add(indices: Tensor, values: Tensor, rows: int) -> Tensor:
    return apply(ScatterAdd(rows), indices, values)


def one_hot(indices: Tensor, depth: int, dtype: Any = None) -> Tensor:
    return apply(OneHot(depth, dtype or indices.graph.dtype), indices)
