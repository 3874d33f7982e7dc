"""Run one peer of one benchmark in this process and print its result as JSON.

run.py starts this script once per peer, so that each peer's peak
resident memory (VmHWM, see peak_rss_mib) is its own and no peer inherits
another's threads, allocations or caches. The last line of stdout is
``RESULT {json}``.

    python benchmarks/peer.py step lstm numpy-hand [--quick]
    python benchmarks/peer.py compile lightnet-numpy --steps 256
    python benchmarks/peer.py gemm numpy --size 1024
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import workloads

STEP_PEERS = (
    "lightnet-numpy",
    "lightnet-opencl",
    "torch-nn",
    "torch-cells",
    "numpy-hand",
    "tinygrad-cpu",
    "tinygrad-cl",
)
GEMM_PEERS = ("lightnet-opencl", "numpy", "clblast")


class NotInstalled(Exception):
    """The peer's package cannot be imported here."""


def step_builder(workload, peer: str, device: str | None) -> Callable[[], Callable]:
    """Return build() -> step(feeds) -> loss; build() is part of the first step's time."""
    recurrent = isinstance(workload, workloads.Recurrent)
    if peer.startswith("lightnet-"):
        return lambda: _lightnet_step(workload, peer.removeprefix("lightnet-"), device)
    if peer == "numpy-hand":
        import numpy_reference as ref

        return lambda: (ref.recurrent_step if recurrent else ref.perceptron_step)(
            workload
        )
    if peer.startswith("torch-"):
        torch_peers = _import("torch_peers", "torch")
        if not recurrent:
            if peer == "torch-cells":
                raise ValueError(
                    "torch-cells is a recurrent peer; the MLP uses torch-nn"
                )
            return lambda: torch_peers.perceptron_step(workload)
        return lambda: torch_peers.recurrent_step(workload, fused=peer == "torch-nn")
    if peer.startswith("tinygrad-"):
        tinygrad_peers = _import("tinygrad_peers", "tinygrad")
        build = (
            tinygrad_peers.recurrent_step
            if recurrent
            else tinygrad_peers.perceptron_step
        )
        return lambda: build(workload, workload.feeds())
    raise ValueError(f"unknown peer {peer!r}; use one of {', '.join(STEP_PEERS)}")


def _import(module: str, package: str):
    try:
        return __import__(module)
    except ImportError as error:
        if error.name is not None and error.name.split(".")[0] == package:
            raise NotInstalled(f"{package} is not installed: {error}") from None
        raise


def _lightnet_step(workload, backend_name: str, device: str | None) -> Callable:
    import lightnet_graph as lg

    backend: object = backend_name
    if backend_name == "opencl":
        try:
            import pyopencl  # noqa: F401
        except ImportError as error:
            raise NotInstalled(f"pyopencl is not installed: {error}") from None
        from lightnet_graph.backends.opencl import OpenCLBackend

        backend = OpenCLBackend(device=device)
    _, loss = workloads.lightnet_model(workload)
    program = lg.compile(
        loss=loss, optimizer=lg.optim.SGD(workloads.LEARNING_RATE), backend=backend
    )

    def step(feeds: dict) -> float:
        return float(program.run(feeds)["loss"])

    return step


def time_steps(build: Callable, feeds: dict, warmup: int, repeat: int) -> dict:
    start = time.perf_counter()
    step = build()
    first_loss = step(feeds)
    first_s = time.perf_counter() - start
    for _ in range(warmup):
        step(feeds)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        loss = step(feeds)
        times.append(time.perf_counter() - start)
    if not np.isfinite(loss):
        raise FloatingPointError(
            f"the loss is {loss} after {warmup + repeat + 1} steps"
        )
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "first_s": first_s,
        "first_loss": first_loss,
        "steps_timed": repeat,
    }


def compile_time(steps: int, quick: bool) -> dict:
    """Seconds to compile the LSTM's forward and backward graphs at T = steps."""
    import lightnet_graph as lg

    base = workloads.workloads(quick)["lstm"]
    workload = workloads.Recurrent("lstm", base.vocab, base.hidden, base.batch, steps)
    _, loss = workloads.lightnet_model(workload)
    start = time.perf_counter()
    lg.compile(loss=loss, backend="numpy")
    return {"seconds": time.perf_counter() - start}


def gemm_time(peer: str, size: int, repeat: int, device: str | None) -> dict:
    import gemm

    if peer == "numpy":
        result = gemm.numpy_blas(size, repeat)
    elif peer == "lightnet-opencl":
        _import("pyopencl", "pyopencl")
        result = gemm.lightnet_opencl(size, repeat, device)
    elif peer == "clblast":
        _import("pyclblast", "pyclblast")
        _import("pyopencl", "pyopencl")
        result = gemm.clblast(size, repeat, device)
    else:
        raise ValueError(
            f"unknown GEMM peer {peer!r}; use one of {', '.join(GEMM_PEERS)}"
        )
    result["gflops"] = 2.0 * size**3 / result["seconds"] / 1e9
    return result


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB.

    Linux keeps ru_maxrss across execve, so a child that run.py starts
    would report the parent's peak when it is larger; VmHWM in
    /proc/self/status starts afresh with the new program.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("step", "compile", "gemm"))
    parser.add_argument("names", nargs="*", help="step: WORKLOAD PEER; gemm: PEER")
    parser.add_argument("--quick", action="store_true", help="use the small sizes")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps after the first"
    )
    parser.add_argument(
        "--repeat", type=int, default=10, help="timed steps or products"
    )
    parser.add_argument("--steps", type=int, help="compile: the sequence length T")
    parser.add_argument(
        "--size", type=int, help="gemm: the side of the square matrices"
    )
    parser.add_argument(
        "--device", help="OpenCL device, as for OpenCLBackend(device=...)"
    )
    parser.add_argument(
        "--threads", type=int, help="torch.set_num_threads for torch peers"
    )
    args = parser.parse_args()

    try:
        if args.kind == "step":
            name, peer = args.names
            workload = workloads.workloads(args.quick)[name]
            if args.threads and peer.startswith("torch-"):
                _import("torch", "torch").set_num_threads(args.threads)
            build = step_builder(workload, peer, args.device)
            result = time_steps(build, workload.feeds(), args.warmup, args.repeat)
        elif args.kind == "compile":
            result = compile_time(args.steps, args.quick)
        else:
            (peer,) = args.names
            result = gemm_time(peer, args.size, args.repeat, args.device)
        result["status"] = "ok"
    except NotInstalled as error:
        result = {"status": "not installed", "error": str(error)}
    except Exception as error:  # noqa: BLE001 - every failure becomes a table row
        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    result["peak_rss_mib"] = peak_rss_mib()
    sys.stdout.flush()
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
