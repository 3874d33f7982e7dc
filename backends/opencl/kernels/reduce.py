"""Work-group reductions: sum, mean, max, softmax and softmax cross-entropy.

A work-group of (nx, ny) work-items reduces nx consecutive outputs: the ny
work-items of one output stride through the reduced elements, then combine
their partial results in a binary tree in local memory. No atomics are
used, so results are the same from run to run on a device. The split of the
work-group between outputs and lanes is chosen at launch from the sizes
(few outputs with long rows get many lanes), so one kernel source serves
every size.
"""

from __future__ import annotations

from typing import Any

from ..views import Access
from .common import KernelBuilder, KernelSource, literal


def launch_shape(
    outputs: int, reduced: int, group: int, max_x: int, cpu_cores: int | None = None
) -> tuple[tuple, tuple]:
    """Return global and local sizes for ``outputs`` rows of ``reduced`` elements.

    On a CPU device (``cpu_cores`` given) a work-group runs on one core as a
    loop over its work-items, so lanes buy no parallelism: each output gets
    one work-item, and the outputs are split so that every core gets a
    work-group. That cut the char-LSTM step's softmax over 2048 rows of 65
    from 4.5 to 0.5 ms on PoCL 3.1 (2-core AMD EPYC), where 128 lanes, 63 of
    them idle, had reduced each pair of rows. Fewer outputs than cores keep
    the lanes.
    """
    if cpu_cores is not None and outputs >= cpu_cores:
        width = 1
        while width * 2 <= min(group, max_x) and width * 2 * cpu_cores <= outputs:
            width *= 2
        groups = -(-outputs // width)
        return (groups * width, 1), (width, 1)
    lanes = 1
    while lanes < reduced and lanes < group:
        lanes *= 2
    width = max(1, min(group // lanes, max_x))
    while width > 1 and width // 2 >= outputs:
        width //= 2
    groups = -(-max(outputs, 1) // width)
    return (groups * width, lanes), (width, lanes)


def max_helper(t: str) -> str:
    # NaN wins, as in np.max.
    return f"inline {t} lg_max_{t}(const {t} a, const {t} b) {{ return (a > b || a != a) ? a : b; }}"


def prologue(k: KernelBuilder, group: int, t: str, arrays: int = 1) -> None:
    k.line("const int lx = get_local_id(0);")
    k.line("const int ly = get_local_id(1);")
    k.line("const int nx = get_local_size(0);")
    k.line("const int ny = get_local_size(1);")
    k.line("const int o = get_group_id(0) * nx + lx;")
    k.line("const int slot = ly * nx + lx;")
    for index in range(arrays):
        k.line(f"__local {t} partial{index}[{group}];")


def tree(k: KernelBuilder, values: list[tuple[str, str]]) -> None:
    """Combine each (value, combine template) across the ny lanes of an output.

    Value number j ends in ``partial{j}[lx]``.
    """
    for index, (value, _) in enumerate(values):
        k.line(f"partial{index}[slot] = {value};")
    k.line("barrier(CLK_LOCAL_MEM_FENCE);")
    k.line("for (int s = ny / 2; s > 0; s >>= 1) {")
    k.line("    if (ly < s) {")
    for index, (_, op) in enumerate(values):
        mine, theirs = f"partial{index}[slot]", f"partial{index}[slot + s * nx]"
        k.line(f"        {mine} = {op.format(a=mine, b=theirs)};")
    k.line("    }")
    k.line("    barrier(CLK_LOCAL_MEM_FENCE);")
    k.line("}")


def reduce_kernel(
    op: str,
    dtype: Any,
    group: int,
    x: tuple[Any, Access, Access],
    out: tuple[Any, int],
    outputs: int,
    reduced: int,
    divisor: float | None = None,
    addend: tuple[Any, Access] | None = None,
) -> tuple[KernelSource, list]:
    """out[o] = reduce over r of x[o, r] (sum or max) [/ divisor] [+ addend[o]].

    ``x`` is (storage, access over the kept axes, access over the reduced
    axes) and ``out`` is (storage, element offset). A mean divides by the
    number of elements; a sum followed by a division by a constant divides
    by that constant.
    """
    mean = divisor is not None
    kind = f"reduce_{op}"
    if mean:
        kind += "_div"
    if addend:
        kind += "_acc"
    k = KernelBuilder(kind)
    t = k.note_dtype(dtype)
    k.integer("n_out", outputs)
    k.integer("n_red", reduced)
    k.buffer("out", dtype, out[0], writable=True)
    k.integer("out_off", out[1])
    k.buffer("x", dtype, x[0])
    outer = k.access("xo", x[1])
    inner = k.access("xi", x[2])
    if mean:
        k.scalar("divisor", dtype, divisor)
    if addend:
        k.buffer("add", dtype, addend[0])
        added = k.access("add", addend[1])
    if op == "max":
        k.helper(max_helper(t))
        identity, combine = literal(float("-inf"), dtype), f"lg_max_{t}({{a}}, {{b}})"
    else:
        identity, combine = literal(0, dtype), "{a} + {b}"
    prologue(k, group, t)
    k.line(f"{t} acc = {identity};")
    k.line("if (o < n_out) {")
    k.line(f"    const int base = {k.address('xo', outer, 'o')};")
    k.line("    for (int r = ly; r < n_red; r += ny) {")
    value = f"x[base + {k.address('xi', inner, 'r')}]"
    k.line(f"        acc = {combine.format(a='acc', b=value)};")
    k.line("    }")
    k.line("}")
    tree(k, [("acc", combine)])
    k.line("if (ly == 0 && o < n_out) {")
    k.line(f"    {t} value = partial0[lx];")
    if mean:
        k.line("    value = value / divisor;")
    if addend:
        k.line(f"    value = value + add[{k.address('add', added, 'o')}];")
    k.line("    out[out_off + o] = value;")
    k.line("}")
    return k.finish()


def softmax_kernel(
    dtype: Any,
    group: int,
    x: tuple[Any, Access, Access],
    out: tuple[Any, Access, Access],
    rows: int,
    length: int,
) -> tuple[KernelSource, list]:
    """out = e^(x - max) / sum e^(x - max) along each row of ``length`` elements."""
    k = KernelBuilder("softmax")
    t = k.note_dtype(dtype)
    k.integer("n_out", rows)
    k.integer("n_red", length)
    k.buffer("out", dtype, out[0], writable=True)
    out_outer = k.access("yo", out[1])
    out_inner = k.access("yi", out[2])
    k.buffer("x", dtype, x[0])
    outer = k.access("xo", x[1])
    inner = k.access("xi", x[2])
    k.helper(max_helper(t))
    prologue(k, group, t)
    k.line(f"const int base = o < n_out ? {k.address('xo', outer, 'o')} : 0;")
    k.line(f"const int out_base = o < n_out ? {k.address('yo', out_outer, 'o')} : 0;")
    k.line(f"{t} top = {literal(float('-inf'), dtype)};")
    k.line("if (o < n_out) {")
    k.line("    for (int r = ly; r < n_red; r += ny) {")
    k.line(f"        top = lg_max_{t}(top, x[base + {k.address('xi', inner, 'r')}]);")
    k.line("    }")
    k.line("}")
    tree(k, [("top", f"lg_max_{t}({{a}}, {{b}})")])
    k.line("top = partial0[lx];")
    k.line("barrier(CLK_LOCAL_MEM_FENCE);")
    k.line(f"{t} total = {literal(0, dtype)};")
    k.line("if (o < n_out) {")
    k.line("    for (int r = ly; r < n_red; r += ny) {")
    k.line(f"        total += exp(x[base + {k.address('xi', inner, 'r')}] - top);")
    k.line("    }")
    k.line("}")
    tree(k, [("total", "{a} + {b}")])
    k.line("total = partial0[lx];")
    k.line("if (o < n_out) {")
    k.line("    for (int r = ly; r < n_red; r += ny) {")
    k.line(f"        const {t} e = exp(x[base + {k.address('xi', inner, 'r')}] - top);")
    k.line(f"        out[out_base + {k.address('yi', out_inner, 'r')}] = e / total;")
    k.line("    }")
    k.line("}")
    return k.finish()


def cross_entropy_rows_kernel(
    dtype: Any,
    label_dtype: Any,
    group: int,
    logits: tuple[Any, Access, Access],
    labels: tuple[Any, Access],
    out: Any,
    rows: int,
    classes: int,
) -> tuple[KernelSource, list]:
    """out[p] = log(sum e^(x - max)) - (x[label] - max) for each position p.

    Both terms stay relative to the row max, so equal logits of 1e8 give
    exactly ln C. A label outside [0, classes) gives NaN.
    """
    k = KernelBuilder("cross_entropy_rows")
    t = k.note_dtype(dtype)
    k.integer("n_out", rows)
    k.integer("n_red", classes)
    k.buffer("out", dtype, out, writable=True)
    k.buffer("x", dtype, logits[0])
    outer = k.access("xo", logits[1])
    inner = k.access("xi", logits[2])
    k.buffer("labels", label_dtype, labels[0])
    label_access = k.access("lab", labels[1])
    k.helper(max_helper(t))
    prologue(k, group, t)
    k.line(f"const int base = o < n_out ? {k.address('xo', outer, 'o')} : 0;")
    k.line(f"{t} top = {literal(float('-inf'), dtype)};")
    k.line("if (o < n_out) {")
    k.line("    for (int r = ly; r < n_red; r += ny) {")
    k.line(f"        top = lg_max_{t}(top, x[base + {k.address('xi', inner, 'r')}]);")
    k.line("    }")
    k.line("}")
    tree(k, [("top", f"lg_max_{t}({{a}}, {{b}})")])
    k.line("top = partial0[lx];")
    k.line("barrier(CLK_LOCAL_MEM_FENCE);")
    k.line(f"{t} total = {literal(0, dtype)};")
    k.line("if (o < n_out) {")
    k.line("    for (int r = ly; r < n_red; r += ny) {")
    k.line(f"        total += exp(x[base + {k.address('xi', inner, 'r')}] - top);")
    k.line("    }")
    k.line("}")
    tree(k, [("total", "{a} + {b}")])
    k.line("if (ly == 0 && o < n_out) {")
    k.line(
        f"    const long label = (long)labels[{k.address('lab', label_access, 'o')}];"
    )
    k.line(f"    {t} loss = {literal(float('nan'), dtype)};")
    k.line("    if (label >= 0 && label < n_red) {")
    k.line(
        f"        const {t} picked = x[base + {k.address('xi', inner, '(int)label')}] - top;"
    )
    k.line("        loss = log(partial0[lx]) - picked;")
    k.line("    }")
    k.line("    out[o] = loss;")
    k.line("}")
    return k.finish()
