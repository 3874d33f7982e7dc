"""Batch normalization: per-feature statistics, the normalization and its gradient.

One statistics kernel reduces each feature over the batch axes (a
work-group per feature, as in :mod:`.reduce`) and writes five values per
feature to a scratch buffer: the normalizing mean mu, s = sqrt(sigma^2 +
eps), and, for the gradient, G = sum dy, D = sum dy (x - mu) and
S = sum (x - mu). In training mode mu and sigma^2 blend the batch statistics
with the previous ones by the momentum m, as :class:`BatchNorm` defines.
"""

from __future__ import annotations

from typing import Any

from ..views import Access
from .common import KernelBuilder, KernelSource, literal
from .reduce import prologue, tree

STATS = 5  # mu, s, G, D, S per feature


def stats_kernel(
    dtype: Any,
    group: int,
    training: bool,
    momentum: float,
    eps: float,
    x: tuple[Any, Access, Access],
    dy: tuple[Any, Access, Access] | None,
    mean: tuple[Any, Access],
    var: tuple[Any, Access],
    out: Any,
    features: int,
    count: int,
) -> tuple[KernelSource, list]:
    """Write (mu, s, G, D, S) for each feature to ``out``."""
    name = (
        "batch_norm_stats"
        + ("_train" if training else "_eval")
        + ("_grad" if dy else "")
    )
    k = KernelBuilder(name)
    t = k.note_dtype(dtype)
    m, zero = literal(momentum, dtype), literal(0, dtype)
    one = literal(1, dtype)
    k.integer("n_out", features)
    k.integer("n_red", count)
    k.buffer("out", dtype, out, writable=True)
    k.buffer("x", dtype, x[0])
    x_outer, x_inner = k.access("xo", x[1]), k.access("xi", x[2])
    if dy:
        k.buffer("dy", dtype, dy[0])
        dy_outer, dy_inner = k.access("go", dy[1]), k.access("gi", dy[2])
    k.buffer("mean", dtype, mean[0])
    mean_access = k.access("mean", mean[1])
    k.buffer("var", dtype, var[0])
    var_access = k.access("var", var[1])
    k.scalar("count", dtype, count)
    prologue(k, group, t, arrays=4 if dy else 1)
    k.line("const int c = o < n_out ? o : 0;")
    k.line(f"const int base = {k.address('xo', x_outer, 'c')};")
    if dy:
        k.line(f"const int dy_base = {k.address('go', dy_outer, 'c')};")
    k.line(f"const {t} prev_mean = mean[{k.address('mean', mean_access, 'c')}];")
    k.line(f"const {t} prev_var = var[{k.address('var', var_access, 'c')}];")
    xr = f"x[base + {k.address('xi', x_inner, 'r')}]"
    if training:
        k.line(f"{t} sum = {zero};")
        k.line("if (o < n_out) {")
        k.line(f"    for (int r = ly; r < n_red; r += ny) sum += {xr};")
        k.line("}")
        tree(k, [("sum", "{a} + {b}")])
        k.line(
            f"const {t} mu = ({one} - {m}) * (partial0[lx] / count) + {m} * prev_mean;"
        )
        k.line("barrier(CLK_LOCAL_MEM_FENCE);")
    else:
        k.line(f"const {t} mu = prev_mean;")
    sums = [("squares", "d * d")] if training else []
    if dy:
        dyr = f"dy[dy_base + {k.address('gi', dy_inner, 'r')}]"
        sums += [("g", "gv"), ("dd", "gv * d"), ("sd", "d")]
    for variable, _ in sums:
        k.line(f"{t} {variable} = {zero};")
    if sums:
        k.line("if (o < n_out) {")
        k.line("    for (int r = ly; r < n_red; r += ny) {")
        k.line(f"        const {t} d = {xr} - mu;")
        if dy:
            k.line(f"        const {t} gv = {dyr};")
        for variable, term in sums:
            k.line(f"        {variable} += {term};")
        k.line("    }")
        k.line("}")
        tree(k, [(variable, "{a} + {b}") for variable, _ in sums])
    index = 0
    if training:
        k.line(
            f"const {t} sigma2 = ({one} - {m}) * (partial0[lx] / count) + {m} * prev_var;"
        )
        index = 1
    else:
        k.line(f"const {t} sigma2 = prev_var;")
    k.line("if (ly == 0 && o < n_out) {")
    k.line(f"    out[o * {STATS}] = mu;")
    k.line(f"    out[o * {STATS} + 1] = sqrt(sigma2 + {literal(eps, dtype)});")
    if dy:
        for slot in range(3):
            k.line(f"    out[o * {STATS} + {2 + slot}] = partial{index + slot}[lx];")
    k.line("}")
    return k.finish()


def apply_kernel(
    dtype: Any,
    x: tuple[Any, Access],
    gamma: tuple[Any, Access],
    beta: tuple[Any, Access],
    stats: Any,
    out: tuple[Any, int],
    n: int,
    features: int,
    inner: int,
) -> tuple[KernelSource, list]:
    """y = gamma * (x - mu) / s + beta, element by element."""
    k = KernelBuilder("batch_norm_apply")
    t = k.note_dtype(dtype)
    k.integer("n", n)
    k.integer("features", features)
    k.integer("inner", inner)
    k.buffer("out", dtype, out[0], writable=True)
    k.integer("out_off", out[1])
    k.buffer("x", dtype, x[0])
    xa = k.access("x", x[1])
    k.buffer("gamma", dtype, gamma[0])
    ga = k.access("gamma", gamma[1])
    k.buffer("beta", dtype, beta[0])
    ba = k.access("beta", beta[1])
    k.buffer("stats", dtype, stats)
    k.line("const int i = get_global_id(0);")
    k.line("if (i >= n) return;")
    k.line("const int c = (i / inner) % features;")
    k.line(
        f"const {t} xhat = (x[{k.address('x', xa, 'i')}] - stats[c * {STATS}]) / "
        f"stats[c * {STATS} + 1];"
    )
    k.line(
        f"out[out_off + i] = gamma[{k.address('gamma', ga, 'c')}] * xhat + "
        f"beta[{k.address('beta', ba, 'c')}];"
    )
    return k.finish()


def grad_x_kernel(
    dtype: Any,
    training: bool,
    momentum: float,
    x: tuple[Any, Access],
    dy: tuple[Any, Access],
    gamma: tuple[Any, Access],
    stats: Any,
    out: tuple[Any, int],
    n: int,
    features: int,
    inner: int,
    count: int,
) -> tuple[KernelSource, list]:
    """dz/dx = gamma / s (dy - k G - k D / s^2 (d - k S)), k = (1 - m) / b.

    In inference mode dz/dx = dy gamma / s.
    """
    k = KernelBuilder("batch_norm_grad_x" + ("_train" if training else "_eval"))
    t = k.note_dtype(dtype)
    k.integer("n", n)
    k.integer("features", features)
    k.integer("inner", inner)
    k.buffer("out", dtype, out[0], writable=True)
    k.integer("out_off", out[1])
    k.buffer("x", dtype, x[0])
    xa = k.access("x", x[1])
    k.buffer("dy", dtype, dy[0])
    da = k.access("dy", dy[1])
    k.buffer("gamma", dtype, gamma[0])
    ga = k.access("gamma", gamma[1])
    k.buffer("stats", dtype, stats)
    k.scalar("count", dtype, count)
    k.line("const int i = get_global_id(0);")
    k.line("if (i >= n) return;")
    k.line("const int c = (i / inner) % features;")
    k.line(f"const __global {t}* st = stats + c * {STATS};")
    k.line(f"const {t} g = gamma[{k.address('gamma', ga, 'c')}];")
    k.line(f"const {t} gv = dy[{k.address('dy', da, 'i')}];")
    if training:
        m, one = literal(momentum, dtype), literal(1, dtype)
        k.line(f"const {t} kk = ({one} - {m}) / count;")
        k.line(f"const {t} d = x[{k.address('x', xa, 'i')}] - st[0];")
        k.line(f"const {t} s = st[1];")
        k.line(
            "out[out_off + i] = g / s * (gv - kk * st[2] - kk * st[3] / (s * s) * "
            "(d - kk * st[4]));"
        )
    else:
        k.line("out[out_off + i] = gv * g / st[1];")
    return k.finish()


def grad_feature_kernel(
    dtype: Any,
    wrt: str,
    training: bool,
    momentum: float,
    gamma: tuple[Any, Access],
    stats: Any,
    out: tuple[Any, int],
    features: int,
    count: int,
) -> tuple[KernelSource, list]:
    """Generate the gradient kernel of one per-feature operand (gamma, beta, mean, var)."""
    k = KernelBuilder(f"batch_norm_grad_{wrt}" + ("_train" if training else "_eval"))
    t = k.note_dtype(dtype)
    m, one, two = literal(momentum, dtype), literal(1, dtype), literal(2, dtype)
    k.integer("n", features)
    k.buffer("out", dtype, out[0], writable=True)
    k.integer("out_off", out[1])
    k.buffer("gamma", dtype, gamma[0])
    ga = k.access("gamma", gamma[1])
    k.buffer("stats", dtype, stats)
    k.scalar("count", dtype, count)
    k.line("const int c = get_global_id(0);")
    k.line("if (c >= n) return;")
    k.line(f"const __global {t}* st = stats + c * {STATS};")
    k.line(f"const {t} g = gamma[{k.address('gamma', ga, 'c')}];")
    k.line(f"const {t} s = st[1];")
    if wrt == "gamma":
        value = "st[3] / s"
    elif wrt == "beta":
        value = "st[2]"
    elif wrt == "mean" and training:
        value = f"g * {m} * (-st[2] / s + st[3] * ({one} - {m}) * st[4] / (count * (s * s * s)))"
    elif wrt == "mean":
        value = "-st[2] * g / s"
    elif training:
        value = f"-g * {m} * st[3] / ({two} * (s * s * s))"
    else:
        value = f"{literal(-0.5, dtype)} * g * st[3] / (s * s * s)"
    k.line(f"out[out_off + c] = {value};")
    return k.finish()
