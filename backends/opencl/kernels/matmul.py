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
- CPUs get a register-blocked kernel. Each work-item computes 8 rows of C
  by one 64-byte vector (16 float32 or 8 float64 columns) in registers, and
  a 4 x 8 work-group covers a 64 x 64 tile (64 x 32 for float64). PoCL
  runs a work-group's items one after another on one core, so the
  work-group is the unit of cache blocking. Per step its items copy
  64-deep slices of A and B into local memory, which on a CPU is ordinary
  cached memory, and every item then reads those contiguous copies. Read
  in place, the rows of a row-major 1024-wide B lie 4 KiB apart, map to
  the same cache sets and evict each other. When A and B are both
  contiguous along K, items instead stream rows of both through 4 x 4
  blocks of dot products and use no local memory.

Both handle any M, N, K: global sizes are rounded up to whole work-groups,
edge blocks take a guarded path, and tiles and slices are zero-filled past
the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..device import DeviceProfile
from .common import KernelBuilder, KernelSource, literal

# The side of the dot-product blocks of the CPU kernel for A and B contiguous
# along K.
DOT = 4


@dataclass(frozen=True)
class MatmulVariant:
    """The kernel family and its tile or block sizes."""

    kind: str  # "tiled" or "blocked"
    tile: int = 0  # tiled: the work-group is tile x tile, and so are the tiles
    block_m: int = 0  # blocked: rows of C per work-item
    block_n: int = 0  # blocked: columns of C per work-item, one vector
    depth: int = 0  # blocked: the K extent of the slices staged per step
    local: tuple[int, int] = (1, 1)  # (along N, along M)


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
    # Each work-item computes 8 rows of 64 bytes (16 float32, one AVX-512
    # register), so a 4 x 8 work-group covers a 64 x 64 tile of C. Its
    # 64-deep slices of A and B take 32 KiB of local memory for float32.
    # This shape was the fastest measured with benchmarks/peer.py gemm on
    # PoCL 3.1 on a 2-core AMD EPYC with AVX-512.
    block_m, block_n = 8, max(64 // itemsize, 1)
    side_x, side_y = 4, 8
    while side_x * side_y > profile.max_work_group_size or side_y > limit_y:
        if side_y > 1:
            side_y //= 2
        elif side_x > 1:
            side_x //= 2
        else:
            break
    while side_x > limit_x:
        side_x //= 2
    depth = 64
    while depth > 1 and (
        (block_m * side_y + block_n * side_x) * depth * itemsize
        > profile.local_mem_size
    ):
        depth //= 2
    return MatmulVariant(
        "blocked",
        block_m=block_m,
        block_n=block_n,
        depth=depth,
        local=(side_x, side_y),
    )


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

    Whether there is an addend is the has_x argument, not part of the
    source, so products with and without one share a kernel. That matters
    because PoCL compiles each distinct kernel at its first launch, 0.3 to
    0.7 s for these. Without an addend, x is A's buffer and is never read.
    """
    k = KernelBuilder(f"matmul_{variant.kind}_{layout.a}{layout.b}")
    t = k.note_dtype(dtype)
    for name in ("M", "N", "K"):
        k.integer(name, sizes[name])
    k.buffer("c", dtype, storages["c"], writable=True)
    k.integer("c_off", sizes["c_off"])
    k.integer("c_bs", sizes["c_bs"])
    for operand in ("a", "b", "x"):
        storage = storages.get(operand, storages["a"])
        k.buffer(operand, dtype, storage)
        for suffix in ("off", "rs", "cs", "bs"):
            k.integer(f"{operand}_{suffix}", sizes.get(f"{operand}_{suffix}", 0))
    k.integer("has_x", int(layout.addend))
    k.line("const int batch = get_global_id(2);")
    k.line("const __global " + t + "* A = a + a_off + batch * a_bs;")
    k.line("const __global " + t + "* B = b + b_off + batch * b_bs;")
    k.line(f"__global {t}* C = c + c_off + batch * c_bs;")
    k.line("const __global " + t + "* X = x + x_off + batch * x_bs;")
    if variant.kind == "tiled":
        _tiled_body(k, variant, layout, t, dtype)
        attributes = (
            f"__attribute__((reqd_work_group_size({variant.tile}, {variant.tile}, 1))) "
        )
    else:
        _blocked_body(k, variant, layout, t, dtype)
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
        cols, rows = -(-n // variant.block_n), -(-m // variant.block_m)
    return (-(-max(cols, 1) // lx) * lx, -(-max(rows, 1) // ly) * ly, batch)


def _store(row: str, col: str, value: str) -> str:
    addend = f"X[({row}) * x_rs + ({col}) * x_cs]"
    return f"C[({row}) * N + ({col})] = has_x ? {value} + {addend} : {value};"


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
    k.line("    " + _store("row", "col", "acc"))
    k.line("}")


def _blocked_body(
    k: KernelBuilder, variant: MatmulVariant, layout: Layout, t: str, dtype: Any
) -> None:
    if layout.a == "k" and layout.b == "k":
        _dot_blocks(k, variant, layout, t, dtype)
    else:
        _staged_blocks(k, variant, layout, t, dtype)


def _staged_blocks(
    k: KernelBuilder, variant: MatmulVariant, layout: Layout, t: str, dtype: Any
) -> None:
    """Emit the work-group's tile of C, staging slices of A and B in local memory."""
    rows, cols = variant.block_m, variant.block_n
    local_x, local_y = variant.local
    tile_m, tile_n, depth = rows * local_y, cols * local_x, variant.depth
    itemsize = np.dtype(dtype).itemsize
    vector = f"{t}{cols}"
    zero = literal(0, dtype)
    k.line(f"__local {t} tile_a[{tile_m * depth}];")
    k.line(f"__local {t} tile_b[{depth * tile_n}];")
    k.line("const int tx = get_local_id(0);")
    k.line("const int ty = get_local_id(1);")
    k.line(f"const int item = ty * {local_x} + tx;")
    k.line(f"const int gm = get_group_id(1) * {tile_m};")
    k.line(f"const int gn = get_group_id(0) * {tile_n};")
    k.line(f"{vector} acc[{rows}];")
    k.line(f"for (int i = 0; i < {rows}; ++i) acc[i] = ({vector})({zero});")

    k.line(f"for (int k0 = 0; k0 < K; k0 += {depth}) {{")
    k.line(f"    const int kn = min({depth}, K - k0);")
    # Each slice is staged with loads along the operand's contiguous axis.
    # tile_a is (tile_m, depth) for A contiguous along K, else (depth,
    # tile_m). tile_b is always (depth, tile_n), so the product loop loads
    # whole vectors of B, and B contiguous along K is transposed on the way.
    if layout.a == "k":
        a_copy = _SliceCopy("A + (gm + r) * a_rs + k0", tile_m, depth, "M - gm", "kn")
        a_value = f"tile_a[(ty * {rows} + i) * {depth} + kk]"
    else:
        a_copy = _SliceCopy("A + (k0 + r) * a_cs + gm", depth, tile_m, "kn", "M - gm")
        a_value = f"tile_a[kk * {tile_m} + ty * {rows} + i]"
    if layout.b == "n":
        b_copy = _SliceCopy("B + (k0 + r) * b_rs + gn", depth, tile_n, "kn", "N - gn")
    else:
        b_copy = _SliceCopy(
            "B + (gn + r) * b_cs + k0", tile_n, depth, "N - gn", "kn", transpose=True
        )

    a_copy.emit(k, "tile_a", local_x * local_y, t, itemsize, zero)
    b_copy.emit(k, "tile_b", local_x * local_y, t, itemsize, zero)
    k.line("    barrier(CLK_LOCAL_MEM_FENCE);")

    k.line("    for (int kk = 0; kk < kn; ++kk) {")
    k.line(
        f"        const {vector} bv = vload{cols}(0, tile_b + kk * {tile_n} + tx * {cols});"
    )
    k.line(f"        for (int i = 0; i < {rows}; ++i) acc[i] += {a_value} * bv;")
    k.line("    }")
    # The next slice overwrites the tiles only after every item has read them.
    k.line("    barrier(CLK_LOCAL_MEM_FENCE);")
    k.line("}")
    _store_block(k, t, rows, cols)


def _store_block(k: KernelBuilder, t: str, rows: int, cols: int) -> None:
    """Store the rows x cols block in acc, whole vectors where it lies inside C."""
    k.line(f"const int m0 = gm + ty * {rows};")
    k.line(f"const int n0 = gn + tx * {cols};")
    k.line(f"{t} row[{cols}];")
    k.line(f"for (int i = 0; i < {rows} && m0 + i < M; ++i) {{")
    k.line(f"    if (!has_x && n0 + {cols} <= N) {{")
    k.line(f"        vstore{cols}(acc[i], 0, C + (m0 + i) * N + n0);")
    k.line("        continue;")
    k.line("    }")
    k.line(f"    vstore{cols}(acc[i], 0, row);")
    k.line(f"    for (int j = 0; j < {cols} && n0 + j < N; ++j) {{")
    k.line("        " + _store("m0 + i", "n0 + j", "row[j]"))
    k.line("    }")
    k.line("}")


def _dot_blocks(
    k: KernelBuilder, variant: MatmulVariant, layout: Layout, t: str, dtype: Any
) -> None:
    """Emit a work-item's block of C as 4 x 4 blocks of dot products along K.

    With A and B both contiguous along K, each 4 x 4 block streams four rows
    of A and four of B with vector loads and needs no staging. At
    M = N = K = 1024 on PoCL 3.1 (2-core AMD EPYC), this was about 20%
    faster than staging B through a transposing copy.
    """
    rows, cols = variant.block_m, variant.block_n
    t4 = f"{t}{DOT}"
    zero = literal(0, dtype)
    k.line(f"const int item_m = get_global_id(1) * {rows};")
    k.line(f"const int item_n = get_global_id(0) * {cols};")
    # Blocks along a row of the item run one after another, so they reuse
    # the same four rows of A from the cache.
    k.line(f"for (int block = 0; block < {rows // DOT * (cols // DOT)}; ++block) {{")
    k.line(f"    const int m0 = item_m + block / {cols // DOT} * {DOT};")
    k.line(f"    const int n0 = item_n + block % {cols // DOT} * {DOT};")
    k.line("    if (m0 >= M || n0 >= N) continue;")
    start = len(k.body)
    k.line(f"if (m0 + {DOT} <= M && n0 + {DOT} <= N) {{")
    _dot_block(k, t4, zero)
    k.line("} else {")
    # Edge blocks: scalar loops, reading only rows and columns inside C.
    k.line(f"    {t} acc[{DOT}][{DOT}];")
    k.line(
        f"    for (int i = 0; i < {DOT}; ++i) for (int j = 0; j < {DOT}; ++j) acc[i][j] = {zero};"
    )
    k.line(f"    const int rows = min({DOT}, M - m0);")
    k.line(f"    const int cols = min({DOT}, N - n0);")
    k.line("    for (int kk = 0; kk < K; ++kk) {")
    k.line("        for (int i = 0; i < rows; ++i) {")
    k.line(f"            const {t} av = A[(m0 + i) * a_rs + kk];")
    k.line("            for (int j = 0; j < cols; ++j) {")
    k.line("                acc[i][j] += av * B[kk + (n0 + j) * b_cs];")
    k.line("            }")
    k.line("        }")
    k.line("    }")
    k.line("    for (int i = 0; i < rows; ++i) for (int j = 0; j < cols; ++j) {")
    k.line("        " + _store("m0 + i", "n0 + j", "acc[i][j]"))
    k.line("    }")
    k.line("}")
    k.body[start:] = ["    " + line for line in k.body[start:]]
    k.line("}")


def _dot_block(k: KernelBuilder, t4: str, zero: str) -> None:
    """Emit a 4 x 4 block of dot products, for A and B both contiguous along K."""
    b = DOT
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
        _store_row(k, t4, i, f"row{i}")


def _store_row(k: KernelBuilder, t4: str, i: int, value: str) -> None:
    b = DOT
    gathered = ", ".join(f"X[(m0 + {i}) * x_rs + (n0 + {j}) * x_cs]" for j in range(b))
    value = f"(has_x ? {value} + ({t4})({gathered}) : {value})"
    k.line(f"    vstore{b}({value}, 0, C + (m0 + {i}) * N + n0);")


@dataclass(frozen=True)
class _SliceCopy:
    """A copy of one operand slice from global into local memory.

    The source is ``rows`` rows of ``cols`` elements, contiguous along the
    row, and ``row_start`` (a C expression of ``r``) points at row ``r``.
    Rows from ``row_limit`` on and columns from ``col_limit`` on lie past
    the matrix and are stored as zeros. The local tile is (rows, cols), or
    (cols, rows) with ``transpose``.
    """

    row_start: str
    rows: int
    cols: int
    row_limit: str
    col_limit: str
    transpose: bool = False

    def emit(
        self,
        k: KernelBuilder,
        tile: str,
        items: int,
        t: str,
        itemsize: int,
        zero: str,
    ) -> None:
        # The widest vector of at most 64 bytes, one AVX-512 register, that
        # divides the rows (when transposing) and the columns.
        width = next(
            w
            for w in (16, 8, 4, 2, 1)
            if w * itemsize <= 64
            and self.cols % w == 0
            and (not self.transpose or self.rows % w == 0)
        )
        vector = t if width == 1 else f"{t}{width}"
        load = _load_helper(k, t, width, zero)

        if not self.transpose:
            k.line(f"    for (int r = item; r < {self.rows}; r += {items}) {{")
            k.line(f"        const __global {t}* src = {self.row_start};")
            k.line(
                f"        const int inside = r < {self.row_limit} ? {self.col_limit} : 0;"
            )
            k.line(f"        for (int c = 0; c < {self.cols}; c += {width}) {{")
            value = f"{load}(src + c, inside - c)"
            k.line(
                f"            {_vstore(width, value, f'{tile} + r * {self.cols} + c')};"
            )
            k.line("        }")
            k.line("    }")
            return

        # Transpose width x width blocks in registers, so that every store to
        # the tile is a whole vector.
        across = self.cols // width
        k.line(
            f"    for (int blk = item; blk < {self.rows // width * across}; blk += {items}) {{"
        )
        k.line(f"        const int r0 = blk / {across} * {width};")
        k.line(f"        const int c0 = blk % {across} * {width};")
        k.line(f"        {vector} v[{width}];")
        k.line(f"        for (int q = 0; q < {width}; ++q) {{")
        k.line("            const int r = r0 + q;")
        k.line(
            f"            v[q] = {load}({self.row_start} + c0, "
            f"r < {self.row_limit} ? {self.col_limit} - c0 : 0);"
        )
        k.line("        }")
        for j in range(width):
            if width == 1:
                value = "v[0]"
            else:
                value = (
                    f"({vector})("
                    + ", ".join(f"v[{q}].s{j:x}" for q in range(width))
                    + ")"
                )
            pointer = f"{tile} + (c0 + {j}) * {self.rows} + r0"
            k.line(f"        {_vstore(width, value, pointer)};")
        k.line("    }")


def _load_helper(k: KernelBuilder, t: str, width: int, zero: str) -> str:
    """Define a function loading ``width`` elements, zeros from ``inside`` on."""
    name = f"matmul_load_{t}{width}"
    vector = t if width == 1 else f"{t}{width}"
    lines = [
        f"{vector} {name}(const __global {t}* src, const int inside) {{",
        f"    if (inside >= {width}) return {_vload(width, 'src')};",
        f"    {vector} v = ({vector})({zero});",
    ]
    if width == 1:
        lines = lines[:1] + [f"    return inside >= 1 ? *src : {zero};"]
    else:
        lines += [f"    if ({j} < inside) v.s{j:x} = src[{j}];" for j in range(width)]
        lines.append("    return v;")
    k.helper("\n".join(lines) + "\n}")
    return name


def _vload(width: int, pointer: str) -> str:
    return f"*({pointer})" if width == 1 else f"vload{width}(0, {pointer})"


def _vstore(width: int, value: str, pointer: str) -> str:
    if width == 1:
        return f"*({pointer}) = {value}"
    return f"vstore{width}({value}, 0, {pointer})"
