"""Square float32 matrix products C = A B: seconds per product, by peer.

- lightnet-opencl: the matmul kernel that the OpenCL backend generates for
  a one-op graph, timed on the device with OpenCL profiling events (host
  copies of A, B and C are not counted).
- numpy: np.matmul into a preallocated output, which calls the BLAS that
  NumPy links (threadpoolctl in the result names it and its kernel).
- clblast: CLBlast's SGEMM through pyclblast on the same OpenCL device,
  timed on the host until the queue is finished: CLBlast may launch
  helper kernels (padding, transposition) before the product, and the
  event it returns covers only its last kernel.
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def _operands(size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    return a, b


def lightnet_opencl(size: int, repeat: int, device: str | None) -> dict:
    from lightnet_graph.backends.opencl import OpenCLBackend

    import lightnet_graph as lg

    g = lg.Graph("gemm", dtype="float32")
    a = g.input("a", (size, size))
    b = g.input("b", (size, size))
    program = lg.compile(lg.matmul(a, b), backend=OpenCLBackend(device=device))
    x, y = _operands(size)
    program.run(a=x, b=y)
    profile = program.profile({"a": x, "b": y}, repeat=repeat)
    kernel = next(k for k in profile.kernels if "matmul" in k.name)
    return {
        "seconds": kernel.mean_s,
        "kernel": kernel.name,
        "device": program.device.name.strip(),
    }


def numpy_blas(size: int, repeat: int) -> dict:
    from threadpoolctl import threadpool_info

    x, y = _operands(size)
    out = np.empty((size, size), np.float32)
    np.matmul(x, y, out=out)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        np.matmul(x, y, out=out)
        times.append(time.perf_counter() - start)
    blas = [
        f"{info['internal_api']} {info['version']} {info.get('architecture', '')}".strip()
        for info in threadpool_info()
        if info["user_api"] == "blas"
    ]
    return {"seconds": statistics.median(times), "blas": ", ".join(blas)}


def clblast(size: int, repeat: int, device: str | None) -> dict:
    import pyclblast
    import pyopencl as cl
    from lightnet_graph.backends.opencl import select_device
    from pyopencl import array as cl_array

    chosen = select_device(device)
    context = cl.Context([chosen])
    queue = cl.CommandQueue(context)
    x, y = _operands(size)
    a = cl_array.to_device(queue, x)
    b = cl_array.to_device(queue, y)
    c = cl_array.zeros(queue, (size, size), np.float32)
    pyclblast.gemm(queue, size, size, size, a, b, c, a_ld=size, b_ld=size, c_ld=size)
    queue.finish()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        pyclblast.gemm(
            queue, size, size, size, a, b, c, a_ld=size, b_ld=size, c_ld=size
        )
        queue.finish()
        times.append(time.perf_counter() - start)
    if not np.allclose(c.get(), x @ y, rtol=1e-3, atol=1e-2):
        raise AssertionError("CLBlast's product differs from NumPy's")
    return {"seconds": statistics.median(times), "device": chosen.name.strip()}
