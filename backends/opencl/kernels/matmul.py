"""Matrix products, with the kernel variant chosen per device.

C = A B (+ X) for A (M, K), B (K, N), an optional addend X (M, N) and
leading batch axes. Operands are read through row and column strides
passed as arguments, so transposed operands cost no copy. Whether an
operand is contiguous along K or along its other axis is part of the
kernel's structure, because it decides the vector loads.

- GPUs (local memory on chip) get the textbook tiled kernel: a TS x TS
  work-group stages TS x TS tiles of A and B in local memory. TS is the
  largest of 32, 16 and 8 whose tiles fit the device's max work-group size
  and local memory.
- CPUs get a register-blocked kernel: each work-item computes a 4 x 4 block
  of C in registers with vector (float4 or double4) loads along contiguous
  axes and no local memory, which on a CPU device is ordinary memory behind
  extra barriers.

Both handle any M, N, K: global sizes are rounded up to whole work-groups,
edge blocks take a guarded path, and tiles are zero-filled past the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..device import DeviceProfile
from .common import KernelBuilder, KernelSource, literal

BLOCK = 4


@dataclass(frozen=True)
class MatmulVariant:
    """The kernel family and its tile or block sizes."""

    kind: str  # "tiled" or "blocked"
    tile: int = 0  # tiled: the work-group is tile x tile, and so are the tiles
    block: int = BLOCK  # blocked: each work-item computes block x block outputs
    local: tuple[int, int] = (1, 1)


def choose_variant(
    profile: DeviceProfile, dtype: Any, force: str | None = None
) -> MatmulVariant:
    """Pick the matmul variant for a device: tiled on GPUs, register-blocked on CPUs."""
    kind = force or ("tiled" if profile.is_gpu else "blocked")
    itemsize = np.dtype(dtype).itemsize
    limit_x, limit_y = (profile.max_work_item_sizes + (1, 1))[:2]
    if kind == "tiled":
        for tile in (32, 16, 8, 4, 2, 1):
            fits_group = tile * tile <= profile.max_work_group_size
            fits_items = tile <= limit_x and tile <= limit_y
            fits_local = 2 * tile * (tile + 1) * itemsize <= profile.local_mem_size
            if fits_group and fits_items and fits_local:
                return MatmulVariant("tiled", tile=tile, local=(tile, tile))
        raise AssertionError("a 1 x 1 tile always fits")
    side = 8
    while side > 1 and (
        side * side > profile.max_work_group_size or side > limit_x or side > limit_y
    ):
        side //= 2
    return MatmulVariant("blocked", block=BLOCK, local=(side, side))


@dataclass(frozen=True)
class Layout:
    """The contiguous axis of each operand ("k" or the other one) and the addend."""

    a: str  # "k" (row-major A) or "m"
    b: str  # "k" (B stored transposed) or "n" (row-major B)
    addend: bool


def matmul_kernel(
    variant: MatmulVariant,
    layout: Layout,
    dtype: Any,
    storages: dict[str, Any],
    sizes: dict[str, int],
) -> tuple[KernelSource, list]:
    """Generate a matmul kernel and its arguments.

    ``storages`` names the storage of "a", "b", "c" and, with an addend,
    "x"; ``sizes`` contains M, N, K and the offsets and strides
    (a_off, a_rs, a_cs, a_bs, and likewise for b, c and x).
    """
    k = KernelBuilder(
        f"matmul_{variant.kind}_{layout.a}{layout.b}"
        + ("_acc" if layout.addend else "")
    )
    t = k.note_dtype(dtype)
    for name in ("M", "N", "K"):
        k.integer(name, sizes[name])
    k.buffer("c", dtype, storages["c"], writable=True)
    k.integer("c_off", sizes["c_off"])
    k.integer("c_bs", sizes["c_bs"])
    for operand in ("a", "b") + (("x",) if layout.addend else ()):
        k.buffer(operand, dtype, storages[operand])
        for suffix in ("off", "rs", "cs", "bs"):
            k.integer(f"{operand}_{suffix}", sizes[f"{operand}_{suffix}"])
    k.line("const int batch = get_global_id(2);")
    k.line("const __global " + t + "* A = a + a_off + batch * a_bs;")
    k.line("const __global " + t + "* B = b + b_off + batch * b_bs;")
    k.line(f"__global {t}* C = c + c_off + batch * c_bs;")
    if layout.addend:
        k.line("const __global " + t + "* X = x + x_off + batch * x_bs;")
    if variant.kind == "tiled":
        _tiled_body(k, variant, layout, t, dtype)
        attributes = (
            f"__attribute__((reqd_work_group_size({variant.tile}, {variant.tile}, 1))) "
        )
    else:
        _blocked_body(k, layout, t, dtype)
        attributes = ""
    return k.finish(attributes)


def global_size(
    variant: MatmulVariant, m: int, n: int, batch: int
) -> tuple[int, int, int]:
    """Return the NDRange for C of M x N, rounded up to whole work-groups."""
    lx, ly = variant.local
    if variant.kind == "tiled":
        cols, rows = n, m
    else:
        cols, rows = -(-n // variant.block), -(-m // variant.block)
    return (-(-max(cols, 1) // lx) * lx, -(-max(rows, 1) // ly) * ly, batch)


def _store(layout: Layout, row: str, col: str, value: str) -> str:
    if layout.addend:
        value = f"{value} + X[({row}) * x_rs + ({col}) * x_cs]"
    return f"C[({row}) * N + ({col})] = {value};"


def _tiled_body(
    k: KernelBuilder, variant: MatmulVariant, layout: Layout, t: str, dtype: Any
) -> None:
    ts = variant.tile
    zero = literal(0, dtype)
    k.line("const int tx = get_local_id(0);")
    k.line("const int ty = get_local_id(1);")
    k.line(f"const int col = get_group_id(0) * {ts} + tx;")
    k.line(f"const int row = get_group_id(1) * {ts} + ty;")
    k.line(f"__local {t} tile_a[{ts}][{ts + 1}];")
    k.line(f"__local {t} tile_b[{ts}][{ts + 1}];")
    k.line(f"{t} acc = {zero};")
    k.line(f"for (int k0 = 0; k0 < K; k0 += {ts}) {{")
    k.line("    const int ka = k0 + tx;")
    k.line("    const int kb = k0 + ty;")
    k.line(
        f"    tile_a[ty][tx] = (row < M && ka < K) ? A[row * a_rs + ka * a_cs] : {zero};"
    )
    k.line(
        f"    tile_b[ty][tx] = (kb < K && col < N) ? B[kb * b_rs + col * b_cs] : {zero};"
    )
    k.line("    barrier(CLK_LOCAL_MEM_FENCE);")
    k.line(f"    for (int kk = 0; kk < {ts}; ++kk) {{")
    k.line("        acc += tile_a[ty][kk] * tile_b[kk][tx];")
    k.line("    }")
    k.line("    barrier(CLK_LOCAL_MEM_FENCE);")
    k.line("}")
    k.line("if (row < M && col < N) {")
    k.line("    " + _store(layout, "row", "col", "acc"))
    k.line("}")


def _blocked_body(k: KernelBuilder, layout: Layout, t: str, dtype: Any) -> None:
    b = BLOCK
    t4 = f"{t}{b}"
    zero = literal(0, dtype)
    k.line(f"const int n0 = get_global_id(0) * {b};")
    k.line(f"const int m0 = get_global_id(1) * {b};")
    k.line("if (m0 >= M || n0 >= N) return;")
    k.line(f"if (m0 + {b} <= M && n0 + {b} <= N) {{")
    if layout.a == "k" and layout.b == "k":
        _dot_block(k, layout, t4, zero)
    else:
        _outer_block(k, layout, t, t4, zero)
    k.line("} else {")
    # Edge blocks: scalar loops, reading only rows and columns inside C.
    k.line(f"    {t} acc[{b}][{b}];")
    k.line(
        f"    for (int i = 0; i < {b}; ++i) for (int j = 0; j < {b}; ++j) acc[i][j] = {zero};"
    )
    k.line(f"    const int rows = min({b}, M - m0);")
    k.line(f"    const int cols = min({b}, N - n0);")
    k.line("    for (int kk = 0; kk < K; ++kk) {")
    k.line("        for (int i = 0; i < rows; ++i) {")
    k.line(f"            const {t} av = A[(m0 + i) * a_rs + kk * a_cs];")
    k.line("            for (int j = 0; j < cols; ++j) {")
    k.line("                acc[i][j] += av * B[kk * b_rs + (n0 + j) * b_cs];")
    k.line("            }")
    k.line("        }")
    k.line("    }")
    k.line("    for (int i = 0; i < rows; ++i) for (int j = 0; j < cols; ++j) {")
    k.line("        " + _store(layout, "m0 + i", "n0 + j", "acc[i][j]"))
    k.line("    }")
    k.line("}")


def _outer_block(k: KernelBuilder, layout: Layout, t: str, t4: str, zero: str) -> None:
    """Emit a 4 x 4 block as a sum of outer products: column of A times row of B.

    K advances four at a time, so each step loads a 4 x 4 tile of A and of
    B as four vectors each where a layout makes them contiguous.
    """
    b = BLOCK
    for i in range(b):
        k.line(f"    {t4} acc{i} = ({t4})({zero});")
    k.line(f"    const int k4 = K - K % {b};")
    k.line(f"    for (int kk = 0; kk < k4; kk += {b}) {{")
    if layout.a == "m":
        # Row r of the tile contains A[m0 .. m0 + 3, kk + r].
        for r in range(b):
            k.line(
                f"        const {t4} ac{r} = vload{b}(0, A + (kk + {r}) * a_cs + m0);"
            )
        terms = [[f"ac{r}.s{i}" for r in range(b)] for i in range(b)]
    else:
        for i in range(b):
            k.line(
                f"        const {t4} ar{i} = vload{b}(0, A + (m0 + {i}) * a_rs + kk);"
            )
        terms = [[f"ar{i}.s{r}" for r in range(b)] for i in range(b)]
    for r in range(b):
        k.line(f"        const {t4} br{r} = {_b_row(layout, t4, f'kk + {r}')};")
    for i in range(b):
        products = " + ".join(f"{terms[i][r]} * br{r}" for r in range(b))
        k.line(f"        acc{i} += {products};")
    k.line("    }")
    k.line("    for (int kk = k4; kk < K; ++kk) {")
    k.line(f"        const {t4} bv = {_b_row(layout, t4, 'kk')};")
    for i in range(b):
        k.line(f"        acc{i} += A[(m0 + {i}) * a_rs + kk * a_cs] * bv;")
    k.line("    }")
    for i in range(b):
        _store_row(k, layout, t4, i, f"acc{i}")


def _b_row(layout: Layout, t4: str, row: str) -> str:
    """B[row, n0 .. n0 + 3] as a vector."""
    if layout.b == "n":
        return f"vload{BLOCK}(0, B + ({row}) * b_rs + n0)"
    gathered = ", ".join(f"B[({row}) + (n0 + {j}) * b_cs]" for j in range(BLOCK))
    return f"({t4})({gathered})"


def _dot_block(k: KernelBuilder, layout: Layout, t4: str, zero: str) -> None:
    """Emit a 4 x 4 block of dot products, for A and B both contiguous along K."""
    b = BLOCK
    for i in range(b):
        for j in range(b):
            k.line(f"    {t4} acc{i}{j} = ({t4})({zero});")
    k.line(f"    const int k4 = K - K % {b};")
    k.line(f"    for (int kk = 0; kk < k4; kk += {b}) {{")
    for i in range(b):
        k.line(f"        const {t4} av{i} = vload{b}(0, A + (m0 + {i}) * a_rs + kk);")
    for j in range(b):
        k.line(f"        const {t4} bv{j} = vload{b}(0, B + (n0 + {j}) * b_cs + kk);")
    for i in range(b):
        for j in range(b):
            k.line(f"        acc{i}{j} += av{i} * bv{j};")
    k.line("    }")
    for i in range(b):
        sums = ", ".join(
            f"acc{i}{j}.s0 + acc{i}{j}.s1 + acc{i}{j}.s2 + acc{i}{j}.s3"
            for j in range(b)
        )
        k.line(f"    {t4} row{i} = ({t4})({sums});")
    k.line("    for (int kk = k4; kk < K; ++kk) {")
    k.line(
        f"        const {t4} bv = ({t4})("
        + ", ".join(f"B[(n0 + {j}) * b_cs + kk]" for j in range(b))
        + ");"
    )
    for i in range(b):
        k.line(f"        row{i} += A[(m0 + {i}) * a_rs + kk] * bv;")
    k.line("    }")
    for i in range(b):
        _store_row(k, layout, t4, i, f"row{i}")


def _store_row(k: KernelBuilder, layout: Layout, t4: str, i: int, value: str) -> None:
    b = BLOCK
    if layout.addend:
        gathered = ", ".join(
            f"X[(m0 + {i}) * x_rs + (n0 + {j}) * x_cs]" for j in range(b)
        )
        value = f"{value} + ({t4})({gathered})"
    k.line(f"    vstore{b}({value}, 0, C + (m0 + {i}) * N + n0);")
