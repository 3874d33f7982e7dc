"""Strided views: how a kernel reads a value that shares another's storage.

Transpose, slice, broadcast_to, stop_gradient and most reshapes change no
data: they are views, an element offset and one stride per axis into the
storage of the value they read. Kernels read a view through an *access*:
the view's strides coalesced so that as few axes as possible remain, with
the sizes, strides and offset passed as kernel arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class View:
    """A logical shape laid over storage by an element offset and strides."""

    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def is_contiguous(self) -> bool:
        """True when the view reads ``size`` consecutive elements in order."""
        return coalesce(self.shape, self.strides) in ((), ((self.size,), (1,)))

    def is_identity(self, size: int) -> bool:
        """True when the view is the whole of a contiguous storage of ``size``."""
        return self.offset == 0 and self.size == size and self.is_contiguous()


def contiguous(shape: Sequence[int], offset: int = 0) -> View:
    shape = tuple(int(d) for d in shape)
    strides = []
    step = 1
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return View(shape, tuple(reversed(strides)), offset)


def broadcast(view: View, shape: Sequence[int]) -> View:
    """Broadcast ``view`` to ``shape`` by NumPy's rules (size-1 axes get stride 0)."""
    shape = tuple(shape)
    lead = len(shape) - len(view.shape)
    strides = [0] * lead
    for dim, target, stride in zip(view.shape, shape[lead:], view.strides, strict=True):
        strides.append(stride if dim == target else 0)
    return View(shape, tuple(strides), view.offset)


def permute(view: View, perm: Sequence[int]) -> View:
    return View(
        tuple(view.shape[p] for p in perm),
        tuple(view.strides[p] for p in perm),
        view.offset,
    )


def index(view: View, items: Sequence[int | tuple[int, int, int]]) -> View:
    """Apply a normalized basic index (ints and (start, stop, step) triples)."""
    shape, strides = [], []
    offset = view.offset
    for item, stride in zip(items, view.strides, strict=True):
        if isinstance(item, int):
            offset += item * stride
            continue
        start, stop, step = item
        count = (
            len(range(start, stop, step)) if stop >= 0 else len(range(start, -1, step))
        )
        if count:
            offset += start * stride
        shape.append(count)
        strides.append(stride * step)
    return View(tuple(shape), tuple(strides), offset)


def reshape(view: View, shape: Sequence[int]) -> View | None:
    """Return ``view`` reshaped without copying, or None when that needs a copy.

    Groups of old axes that are contiguous among themselves can be split or
    merged freely, as NumPy's no-copy reshape does.
    """
    shape = tuple(int(d) for d in shape)
    if view.is_contiguous():
        return contiguous(shape, view.offset)
    old = [(d, s) for d, s in zip(view.shape, view.strides, strict=True) if d != 1]
    new = [d for d in shape if d != 1]
    new_strides: list[int] = []
    i = j = 0
    while i < len(old) and j < len(new):
        # Grow a group of old axes and one of new axes until their sizes match.
        old_end, new_end = i + 1, j + 1
        old_size, new_size = old[i][0], new[j]
        while old_size != new_size:
            if old_size < new_size:
                old_size *= old[old_end][0]
                old_end += 1
            else:
                new_size *= new[new_end]
                new_end += 1
        for k in range(i, old_end - 1):
            if old[k][1] != old[k + 1][1] * old[k + 1][0]:
                return None
        stride = old[old_end - 1][1]
        group = []
        for k in range(new_end - 1, j - 1, -1):
            group.append(stride)
            stride *= new[k]
        new_strides.extend(reversed(group))
        i, j = old_end, new_end
    if i != len(old) or j != len(new):
        return None
    strides_iter = iter(new_strides)
    strides = tuple(0 if d == 1 else next(strides_iter) for d in shape)
    return View(shape, strides, view.offset)


def coalesce(shape: Sequence[int], strides: Sequence[int]) -> tuple:
    """Merge axes so that the same elements are read in the same order.

    Size-1 axes are dropped, and axis k merges into axis k + 1 when
    ``stride[k] == stride[k + 1] * shape[k + 1]`` (this covers two
    broadcast axes, whose strides are both 0). Returns () for a single
    element, else (dims, strides).
    """
    dims: list[int] = []
    steps: list[int] = []
    for dim, stride in zip(shape, strides, strict=True):
        if dim == 1:
            continue
        if dims and steps[-1] == stride * dim:
            dims[-1] *= dim
            steps[-1] = stride
        else:
            dims.append(dim)
            steps.append(stride)
    if not dims:
        return ()
    return tuple(dims), tuple(steps)


@dataclass(frozen=True)
class Access:
    """The address computation of element i of a view, for a kernel.

    ``dims`` and ``strides`` are the coalesced axes, ``offset`` the view's
    offset. ``structure`` is what the generated code depends on: the number
    of axes and which of them have stride 0. Everything else is passed as
    a kernel argument, so one kernel serves views that differ only in sizes
    and offsets.
    """

    dims: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int

    @property
    def structure(self) -> tuple:
        if not self.dims:
            return ("scalar",)
        if len(self.dims) == 1 and self.strides[0] == 1:
            return ("linear",)
        return ("strided", tuple(s != 0 for s in self.strides))

    def arguments(self) -> list[int]:
        """Return the integer kernel arguments, in the order ``address`` names them."""
        args = [self.offset]
        if self.structure[0] != "strided":
            return args
        rank = len(self.dims)
        for k, (dim, stride) in enumerate(zip(self.dims, self.strides, strict=True)):
            if stride == 0:
                continue
            if k < rank - 1:
                args.append(int(np.prod(self.dims[k + 1 :], dtype=np.int64)))
            if k > 0:
                args.append(dim)
            args.append(stride)
        return args


def access(view: View) -> Access:
    """Return the access that reads element i (in row-major order) of ``view``."""
    merged = coalesce(view.shape, view.strides)
    if not merged:
        return Access((), (), view.offset)
    dims, strides = merged
    if len(dims) == 1 and strides[0] == 0:
        return Access((), (), view.offset)
    return Access(dims, strides, view.offset)


def access_parameters(prefix: str, structure: tuple) -> list[str]:
    """Return the kernel parameter names of an access, matching ``arguments``."""
    names = [f"{prefix}_off"]
    if structure[0] != "strided":
        return names
    nonzero = structure[1]
    rank = len(nonzero)
    for k, used in enumerate(nonzero):
        if not used:
            continue
        if k < rank - 1:
            names.append(f"{prefix}_p{k}")
        if k > 0:
            names.append(f"{prefix}_d{k}")
        names.append(f"{prefix}_s{k}")
    return names


def address(prefix: str, structure: tuple, i: str) -> str:
    """Return the OpenCL C expression of the address of element ``i``."""
    if structure[0] == "scalar":
        return f"{prefix}_off"
    if structure[0] == "linear":
        return f"{prefix}_off + {i}"
    nonzero = structure[1]
    rank = len(nonzero)
    terms = [f"{prefix}_off"]
    for k, used in enumerate(nonzero):
        if not used:
            continue
        position = i if k == rank - 1 else f"({i} / {prefix}_p{k})"
        if k > 0:
            position = f"({position} % {prefix}_d{k})"
        terms.append(f"{position} * {prefix}_s{k}")
    return " + ".join(terms)
