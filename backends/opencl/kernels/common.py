"""Shared pieces of kernel generation: C types, literals and a kernel builder.

A :class:`KernelBuilder` collects a kernel's parameters together with the
argument each launch passes, so the generated source depends only on the
structure of the computation while sizes, offsets and strides travel as
arguments. Two launches with the same structure get the same source, which
is built once.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UnsupportedDTypeError
from ..views import Access, access_parameters, address

INT_MAX = 2**31 - 1

_C_TYPES = {
    np.dtype("float32"): "float",
    np.dtype("float64"): "double",
    np.dtype("int8"): "char",
    np.dtype("int16"): "short",
    np.dtype("int32"): "int",
    np.dtype("int64"): "long",
    np.dtype("uint8"): "uchar",
    np.dtype("uint16"): "ushort",
    np.dtype("uint32"): "uint",
    np.dtype("uint64"): "ulong",
    np.dtype("bool"): "uchar",
}


def ctype(dtype: Any) -> str:
    dtype = np.dtype(dtype)
    try:
        return _C_TYPES[dtype]
    except KeyError:
        raise UnsupportedDTypeError(
            f"dtype {dtype} has no OpenCL backend support; use float32, float64 "
            "or an integer dtype"
        ) from None


def literal(value: float | int, dtype: Any) -> str:
    """Return an OpenCL C literal of ``value`` in ``dtype``, exact for the dtype."""
    dtype = np.dtype(dtype)
    c = ctype(dtype)
    if dtype.kind != "f":
        return f"(({c}){int(value)})"
    value = float(dtype.type(value))
    if math.isnan(value):
        return f"(({c})NAN)"
    if math.isinf(value):
        return f"(({c})INFINITY)" if value > 0 else f"(-({c})INFINITY)"
    # repr() round-trips the float64 value, which equals the float32 one exactly.
    text = repr(value)
    if "e" not in text and "." not in text:
        text += ".0"
    return f"({text}f)" if dtype == np.float32 else f"({text})"


@dataclass(frozen=True)
class KernelSource:
    """One distinct kernel: its name and complete OpenCL C source."""

    name: str
    source: str
    kind: str


# Kernel arguments: ("buffer", storage id), ("int", value) or ("scalar", dtype, value).
Argument = tuple


@dataclass
class KernelBuilder:
    """Accumulates parameters, their launch arguments and the body of a kernel."""

    kind: str
    params: list[str] = field(default_factory=list)
    args: list[Argument] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    helpers: list[str] = field(default_factory=list)
    uses_double: bool = False
    _names: set[str] = field(default_factory=set)

    def _declare(self, declaration: str, name: str, argument: Argument) -> str:
        if name in self._names:
            raise ValueError(f"kernel parameter {name} declared twice")
        self._names.add(name)
        self.params.append(declaration)
        self.args.append(argument)
        return name

    def note_dtype(self, dtype: Any) -> str:
        dtype = np.dtype(dtype)
        if dtype == np.float64:
            self.uses_double = True
        return ctype(dtype)

    def buffer(
        self, name: str, dtype: Any, storage: Any, writable: bool = False
    ) -> str:
        qualifier = "" if writable else "const "
        c = self.note_dtype(dtype)
        return self._declare(
            f"__global {qualifier}{c}* {name}", name, ("buffer", storage)
        )

    def integer(self, name: str, value: int) -> str:
        value = int(value)
        if not -INT_MAX - 1 <= value <= INT_MAX:
            raise OverflowError(
                f"kernel argument {name} = {value} exceeds 32-bit indexing; the OpenCL "
                "backend handles values of fewer than 2**31 elements"
            )
        return self._declare(f"const int {name}", name, ("int", value))

    def scalar(self, name: str, dtype: Any, value: Any) -> str:
        c = self.note_dtype(dtype)
        return self._declare(
            f"const {c} {name}", name, ("scalar", np.dtype(dtype), value)
        )

    def access(self, prefix: str, acc: Access) -> tuple:
        """Declare an access's integer parameters; return its structure."""
        structure = acc.structure
        for name, value in zip(
            access_parameters(prefix, structure), acc.arguments(), strict=True
        ):
            self.integer(name, value)
        return structure

    def address(self, prefix: str, structure: tuple, index: str) -> str:
        return address(prefix, structure, index)

    def helper(self, text: str) -> None:
        if text not in self.helpers:
            self.helpers.append(text)

    def line(self, text: str) -> None:
        self.body.append(text)

    def finish(self, attributes: str = "") -> tuple[KernelSource, list[Argument]]:
        """Return the kernel, named by a hash of its text, and the launch arguments."""
        params = ",\n    ".join(self.params)
        body = "\n".join("    " + line if line else "" for line in self.body)
        header = (
            "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n\n"
            if self.uses_double
            else ""
        )
        helpers = "".join(h.strip() + "\n\n" for h in self.helpers)
        text = (
            f"{header}{helpers}__kernel {attributes}void KERNEL_NAME(\n    {params})\n"
            f"{{\n{body}\n}}\n"
        )
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        name = f"{self.kind}_{digest}"
        return KernelSource(
            name, text.replace("KERNEL_NAME", name), self.kind
        ), self.args


_KERNEL_START = re.compile(r"^__kernel\b", re.MULTILINE)


def split_preamble(source: str) -> tuple[list[str], str]:
    """Split a kernel's source into the blocks before ``__kernel`` and the kernel.

    The blocks are the helper functions and pragmas that the kernel needs.
    Two kernels may define the same helper, which one program can hold only
    once.
    """
    start = _KERNEL_START.search(source)
    cut = 0 if start is None else start.start()
    blocks = [block.strip() for block in source[:cut].split("\n\n") if block.strip()]
    return blocks, source[cut:]


def program_source(kernels: Sequence[KernelSource]) -> str:
    """Return one OpenCL C program that defines every kernel, each helper once."""
    written: set[str] = set()
    parts = []
    for kernel in kernels:
        blocks, text = split_preamble(kernel.source)
        for block in blocks:
            if block not in written:
                written.add(block)
                parts.append(block + "\n")
        parts.append(text.rstrip("\n") + "\n")
    return "\n".join(parts)
