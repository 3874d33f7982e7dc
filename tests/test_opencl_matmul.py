"""Matrix products on OpenCL: every size, both layouts, and the variant per device.

One graph per operand layout holds a product for every (M, N, K) in
{1, 7, 64, 257, 1031}^3, so each layout costs one compile. The tiled
(GPU) variant also runs on PoCL, over the sizes up to 257. Fake device
profiles check that a GPU gets the local-memory tiled kernel and a CPU a
register-blocked one of at least 4 x 4, with sizes from the profile.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from lightnet_graph.backends.opencl.device import DeviceProfile
from lightnet_graph.backends.opencl.kernels.matmul import choose_variant
from lightnet_graph.backends.opencl.plan import build_schedule
from opencl_support import fake_profile, import_pyopencl, opencl_backend

import lightnet_graph as lg
from lightnet_graph.gradcheck import compare

import_pyopencl()

SIZES = (1, 7, 64, 257, 1031)
LAYOUTS = {
    "a @ b": (False, False),
    "a.T @ b": (True, False),
    "a @ b.T": (False, True),
    "a.T @ b.T": (True, True),
}


def _products(sizes: tuple[int, ...], transpose_a: bool, transpose_b: bool):
    """A graph computing one product per (M, N, K), and random operands for it."""
    graph = lg.Graph("products", dtype="float32")
    rng = np.random.default_rng(7)
    outputs, feeds, expected = {}, {}, {}
    for m, n, k in itertools.product(sizes, repeat=3):
        a_shape = (k, m) if transpose_a else (m, k)
        b_shape = (n, k) if transpose_b else (k, n)
        a = graph.input(f"a_{m}_{n}_{k}", a_shape)
        b = graph.input(f"b_{m}_{n}_{k}", b_shape)
        left = lg.transpose(a) if transpose_a else a
        right = lg.transpose(b) if transpose_b else b
        outputs[f"c_{m}_{n}_{k}"] = left @ right
        feeds[a.name] = rng.uniform(-1, 1, a_shape).astype(np.float32)
        feeds[b.name] = rng.uniform(-1, 1, b_shape).astype(np.float32)
        a64 = feeds[a.name].astype(np.float64)
        b64 = feeds[b.name].astype(np.float64)
        expected[f"c_{m}_{n}_{k}"] = (a64.T if transpose_a else a64) @ (
            b64.T if transpose_b else b64
        )
    return outputs, feeds, expected


def _check_products(variant: str, sizes: tuple[int, ...], layout: str) -> None:
    outputs, feeds, expected = _products(sizes, *LAYOUTS[layout])
    program = lg.compile(outputs, backend=opencl_backend(matmul=variant))
    values = program.run(feeds)
    for name, reference in expected.items():
        error, passed = compare(values[name], reference, 1e-4, 1e-6)
        assert passed, f"{variant} {layout} {name}: relative error {error:.3g}"
    for launch in program.schedule:
        assert launch.kernel.startswith(f"matmul_{variant}")
        local = launch.local_size
        assert local[0] * local[1] > 1, launch
        assert all(g % lo == 0 for g, lo in zip(launch.global_size, local, strict=True))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_blocked_matmul_every_size(layout: str):
    _check_products("blocked", SIZES, layout)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tiled_matmul_every_size_to_257(layout: str):
    _check_products("tiled", SIZES[:4], layout)


def test_tiled_matmul_1031():
    _check_products("tiled", (1031,), "a @ b.T")


@pytest.mark.parametrize(
    ("max_group", "local_mem", "tile"),
    [(1024, 48 * 1024, 32), (256, 48 * 1024, 16), (1024, 4 * 1024, 16), (64, 2048, 8)],
)
def test_gpu_profile_gets_tiled_variant(max_group: int, local_mem: int, tile: int):
    variant = choose_variant(fake_profile("gpu", max_group, local_mem), "float32")
    assert variant.kind == "tiled"
    assert variant.tile == tile
    assert variant.local == (tile, tile)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("max_group", "local_mem"),
    [(4096, 1 << 20), (1024, 32 * 1024), (64, 4096), (16, 1024)],
)
def test_cpu_profile_gets_register_blocked_variant(
    max_group: int, local_mem: int, dtype: str
):
    variant = choose_variant(fake_profile("cpu", max_group, local_mem), dtype)
    local_x, local_y = variant.local
    slices = (variant.block_m * local_y + variant.block_n * local_x) * variant.depth
    assert variant.kind == "blocked"
    assert variant.block_m >= 4
    assert variant.block_n >= 4
    assert variant.depth >= 1
    assert local_x * local_y <= max_group
    assert slices * np.dtype(dtype).itemsize <= local_mem


def _matmul_sources(profile: DeviceProfile) -> list[str]:
    graph = lg.Graph("variant", dtype="float32")
    x = graph.input("x", (33, 17))
    w = graph.input("w", (9, 17))
    outputs = {"y": x @ lg.transpose(w), "z": lg.transpose(x) @ x}
    compiled = lg.compile(outputs)
    schedule = build_schedule(compiled.graph, compiled.outputs, profile)
    return [launch.kernel.source for launch in schedule.launches]


def test_gpu_kernel_stages_tiles_in_local_memory():
    sources = _matmul_sources(fake_profile("gpu", 256, 32 * 1024))
    assert sources
    for source in sources:
        assert "__local float tile_a[16][17]" in source
        assert "reqd_work_group_size(16, 16, 1)" in source


def test_cpu_kernel_stages_slices_and_blocks_in_registers():
    sources = _matmul_sources(fake_profile("cpu", 4096, 1 << 20))
    staged = [source for source in sources if "matmul_blocked_kk" not in source]
    assert staged
    for source in staged:
        assert "__local float tile_a[4096]" in source
        assert "__local float tile_b[4096]" in source
        assert "float16 acc[8]" in source
        assert "vload16" in source


def test_cpu_kernel_streams_rows_along_k():
    sources = _matmul_sources(fake_profile("cpu", 4096, 1 << 20))
    streamed = [source for source in sources if "matmul_blocked_kk" in source]
    assert streamed
    for source in streamed:
        assert "__local" not in source
        assert "float4 acc00" in source
        assert "vload4" in source


# M, N and K cross the 64 x 64 tiles and 64-deep slices of the CPU variant
# with partial blocks, and K = 3 is shorter than one slice.
EDGE_SHAPES = ((70, 83, 129), (9, 130, 3))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_blocked_matmul_batch_addend_edges(layout: str, dtype: str):
    transpose_a, transpose_b = LAYOUTS[layout]
    graph = lg.Graph("batched", dtype=dtype)
    rng = np.random.default_rng(11)
    outputs, feeds, expected = {}, {}, {}
    for m, n, k in EDGE_SHAPES:
        a_shape = (3, k, m) if transpose_a else (3, m, k)
        b_shape = (n, k) if transpose_b else (k, n)
        a = graph.input(f"a_{m}_{n}_{k}", a_shape)
        b = graph.input(f"b_{m}_{n}_{k}", b_shape)
        x = graph.input(f"x_{m}_{n}_{k}", (3, m, n))
        for tensor in (a, b, x):
            feeds[tensor.name] = rng.uniform(-1, 1, tensor.shape).astype(dtype)
        left = lg.transpose(a, (0, 2, 1)) if transpose_a else a
        right = lg.transpose(b) if transpose_b else b
        # The product's only reader is the add, which becomes its addend.
        outputs[f"c_{m}_{n}_{k}"] = left @ right + x
        a64, b64 = feeds[a.name], feeds[b.name]
        expected[f"c_{m}_{n}_{k}"] = (
            a64.transpose(0, 2, 1) if transpose_a else a64
        ) @ (b64.T if transpose_b else b64) + feeds[x.name]
    program = lg.compile(outputs, backend=opencl_backend(matmul="blocked"))
    values = program.run(feeds)
    rtol, atol = (1e-4, 1e-6) if dtype == "float32" else (1e-10, 1e-9)
    for name, reference in expected.items():
        error, passed = compare(values[name], reference, rtol, atol)
        assert passed, f"{layout} {dtype} {name}: relative error {error:.3g}"
    for launch in program.schedule:
        assert launch.kernel.startswith("matmul_blocked"), launch
        assert any(node.startswith("add") for node in launch.nodes), launch
        assert launch.global_size[2] == 3, launch


def test_addend_flag_shares_matmul_kernel():
    graph = lg.Graph("shared", dtype="float32")
    a = graph.input("a", (5, 7))
    b = graph.input("b", (7, 6))
    c = graph.input("c", (7, 6))
    x = graph.input("x", (5, 6))
    rng = np.random.default_rng(3)
    feeds = {
        t.name: rng.uniform(-1, 1, t.shape).astype(np.float32) for t in (a, b, c, x)
    }
    outputs = {"plain": a @ b, "with_addend": a @ c + x}
    program = lg.compile(outputs, backend=opencl_backend(matmul="blocked"))
    products = [
        launch for launch in program.schedule if launch.kernel.startswith("matmul")
    ]
    assert len(products) == 2
    assert len({launch.kernel for launch in products}) == 1
    values = program.run(feeds)
    plain = feeds["a"] @ feeds["b"]
    with_addend = feeds["a"] @ feeds["c"] + feeds["x"]
    np.testing.assert_allclose(values["plain"], plain, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values["with_addend"], with_addend, rtol=1e-5, atol=1e-6)
