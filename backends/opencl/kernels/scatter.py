"""scatter_add without atomics: per-row linked lists of positions.

y[r] = sum of x[p] over the positions p whose index is r, added in
increasing p, the order np.add.at uses. Two kernels:

1. the links: ``first[r]``, the smallest position whose index is r, or
   -1, and ``next[p]``, the next position after p with the same index, or -1;
2. each output element walks its row's list and sums in order.

Indices outside [0, rows) are skipped; the host checks fed indices first.
"""

from __future__ import annotations

from typing import Any

from ..views import Access
from .common import KernelBuilder, KernelSource, literal


def links_kernel(
    index_dtype: Any,
    indices: tuple[Any, Access],
    first: Any,
    following: Any,
    rows: int,
    positions: int,
) -> tuple[KernelSource, list]:
    """Work-items [0, rows) fill ``first``; the next ``positions`` fill ``next``."""
    k = KernelBuilder("scatter_links")
    k.integer("rows", rows)
    k.integer("positions", positions)
    k.buffer("first", "int32", first, writable=True)
    k.buffer("next", "int32", following, writable=True)
    k.buffer("idx", index_dtype, indices[0])
    ia = k.access("idx", indices[1])
    k.line("const int w = get_global_id(0);")
    k.line("if (w >= rows + positions) return;")
    k.line("if (w < rows) {")
    k.line("    int found = -1;")
    k.line("    for (int p = 0; p < positions; ++p) {")
    k.line(
        f"        if (idx[{k.address('idx', ia, 'p')}] == w) {{ found = p; break; }}"
    )
    k.line("    }")
    k.line("    first[w] = found;")
    k.line("    return;")
    k.line("}")
    k.line("const int p = w - rows;")
    k.line(f"const long mine = (long)idx[{k.address('idx', ia, 'p')}];")
    k.line("int found = -1;")
    k.line("for (int q = p + 1; q < positions; ++q) {")
    k.line(f"    if (idx[{k.address('idx', ia, 'q')}] == mine) {{ found = q; break; }}")
    k.line("}")
    k.line("next[p] = found;")
    return k.finish()


def sum_kernel(
    dtype: Any,
    values: tuple[Any, Access],
    first: Any,
    following: Any,
    out: tuple[Any, int],
    rows: int,
    width: int,
) -> tuple[KernelSource, list]:
    k = KernelBuilder("scatter_sum")
    t = k.note_dtype(dtype)
    k.integer("n", rows * width)
    k.integer("width", width)
    k.buffer("out", dtype, out[0], writable=True)
    k.integer("out_off", out[1])
    k.buffer("x", dtype, values[0])
    xa = k.access("x", values[1])
    k.buffer("first", "int32", first)
    k.buffer("next", "int32", following)
    k.line("const int i = get_global_id(0);")
    k.line("if (i >= n) return;")
    k.line("const int r = i / width;")
    k.line("const int j = i - r * width;")
    k.line(f"{t} acc = {literal(0, dtype)};")
    k.line("for (int p = first[r]; p >= 0; p = next[p]) {")
    k.line(f"    acc += x[{k.address('x', xa, 'p * width + j')}];")
    k.line("}")
    k.line("out[out_off + i] = acc;")
    return k.finish()
