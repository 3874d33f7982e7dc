"""Benchmark lightnet-graph against its peers on this machine, one process per peer.

    python benchmarks/run.py [--quick] [--json FILE] [--markdown FILE]

Measures, in one run: a training step (forward, backward, SGD update) of
a char-LSTM, a char-GRU and an MLP on every peer; the compile time of the
LSTM's forward and backward graphs as T grows; and float32 GEMM GFLOP/s.
Prints one table per benchmark with ratios to the fastest peer, and writes
them as JSON (--json) and as Markdown (--markdown; BENCHMARKS.md at the
repository root by default, except with --quick). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import report
import workloads
from peer import GEMM_PEERS, STEP_PEERS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEER_SCRIPT = HERE / "peer.py"

# The package each peer needs beyond lightnet-graph and NumPy.
PEER_PACKAGES = {
    "lightnet-opencl": "pyopencl",
    "torch-nn": "torch",
    "torch-cells": "torch",
    "tinygrad-cpu": "tinygrad",
    "tinygrad-cl": "tinygrad",
    "clblast": "pyclblast",
}
# tinygrad's first step builds every kernel with clang or the OpenCL
# compiler: 20 to 70 s even at the --quick sizes, more than --quick allows.
SLOW_FIRST_STEP = ("tinygrad-cpu", "tinygrad-cl")
VERSIONED = ("numpy", "torch", "tinygrad", "pyopencl", "pyclblast", "networkx")


def main() -> None:
    args = _parse_args()
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="lightnet-bench-"))
    runner = Runner(args, scratch)
    mode = "quick" if args.quick else "full"
    result = {
        "command": _command_line(),
        "mode": mode,
        "threads": args.threads,
        "machine": _machine(),
        "versions": _versions(),
        "steps": [],
        "compile": [],
        "gemm": [],
    }
    result["machine"]["load_average_start"] = list(os.getloadavg())

    if "step" in args.sections:
        for name, workload in workloads.workloads(args.quick).items():
            for peer in STEP_PEERS:
                if name == "mlp" and peer == "torch-cells":
                    continue  # the MLP has no cells: torch-nn is its PyTorch peer
                row = runner.step(name, peer)
                row["description"] = workload.describe()
                result["steps"].append(row)
                _progress(row)
    if "compile" in args.sections:
        for steps in workloads.COMPILE_LENGTHS[mode]:
            row = runner.child(["compile", "--steps", str(steps)], "lightnet-numpy")
            row.update(steps=steps)
            result["compile"].append(row)
            _progress(row)
    if "gemm" in args.sections:
        for size in workloads.GEMM_SIZES[mode]:
            for peer in GEMM_PEERS:
                row = runner.gemm(peer, size)
                result["gemm"].append(row)
                _progress(row)

    result["machine"]["load_average_end"] = list(os.getloadavg())
    result["seconds"] = time.perf_counter() - started
    report.add_ratios(result)
    print(report.text(result))
    if args.json:
        _write(Path(args.json), json.dumps(result, indent=2) + "\n")
    markdown = args.markdown
    if markdown is None and not args.quick:
        markdown = str(ROOT / "BENCHMARKS.md")
    if markdown:
        _write(Path(markdown), report.markdown(result))


class Runner:
    """Starts peer.py for one measurement and turns its outcome into a row."""

    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args = args
        self.scratch = scratch
        self.common = ["--quick"] if args.quick else []
        if args.device:
            self.common += ["--device", args.device]
        self.env = dict(os.environ)
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            self.env[variable] = str(args.threads)

    def step(self, workload: str, peer: str) -> dict:
        row = {"workload": workload, "peer": peer}
        skipped = self._skipped(peer)
        if skipped:
            return row | {"status": skipped}
        argv = [
            "step",
            workload,
            peer,
            "--warmup",
            str(self.args.warmup),
            "--repeat",
            str(self.args.repeat),
            "--threads",
            str(self.args.threads),
        ]
        env = dict(self.env)
        if peer.startswith("tinygrad-"):
            env["DEV"] = "CPU" if peer == "tinygrad-cpu" else "CL"
        if peer != "lightnet-opencl" or self.args.quick:
            return row | self.child(argv, peer, env)
        # Once with empty program caches (lightnet-graph's and PoCL's), for
        # the cold first step; again with the caches it filled, for the warm
        # first step and the step times. --quick runs once, with the caches
        # that the environment names, to stay within its time.
        caches = Path(tempfile.mkdtemp(prefix=f"{workload}-", dir=self.scratch))
        env["LIGHTNET_CACHE_DIR"] = str(caches / "lightnet")
        env["POCL_CACHE_DIR"] = str(caches / "pocl")
        cold = self.child(argv, peer, env)
        if cold["status"] != "ok":
            return row | cold
        warm = self.child(argv, peer, env)
        if warm["status"] != "ok":
            return row | warm
        return (
            row | warm | {"first_s": cold["first_s"], "first_warm_s": warm["first_s"]}
        )

    def gemm(self, peer: str, size: int) -> dict:
        row = {"size": size, "peer": peer}
        skipped = self._skipped(peer)
        if skipped:
            return row | {"status": skipped}
        argv = ["gemm", peer, "--size", str(size), "--repeat", str(self.args.repeat)]
        return row | self.child(argv, peer)

    def _skipped(self, peer: str) -> str | None:
        if peer not in self.args.peers:
            return "skipped: not in --peers"
        package = PEER_PACKAGES.get(peer)
        if package and importlib.util.find_spec(package) is None:
            return f"not installed: no module {package!r}"
        return None

    def child(self, argv: list[str], peer: str, env: dict | None = None) -> dict:
        command = [sys.executable, str(PEER_SCRIPT), *argv, *self.common]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                cwd=HERE,
                env=env or self.env,
                timeout=self.args.timeout,
            )
        except subprocess.TimeoutExpired:
            return {"status": f"timed out after {self.args.timeout} s"}
        lines = done.stdout.strip().splitlines()
        if lines and lines[-1].startswith("RESULT "):
            return json.loads(lines[-1].removeprefix("RESULT "))
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "crashed", "error": f"exit status {done.returncode}: {last}"}


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and few repeats, under 2 minutes; "
        "skips the tinygrad peers unless --peers names them",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--markdown",
        metavar="FILE",
        help="write the report as Markdown (default: BENCHMARKS.md at the "
        "repository root, none with --quick); '' writes none",
    )
    parser.add_argument(
        "--peers",
        help=f"comma-separated peers to run (default: all): "
        f"{', '.join(dict.fromkeys(STEP_PEERS + GEMM_PEERS))}",
    )
    parser.add_argument(
        "--sections",
        default="step,compile,gemm",
        help="comma-separated benchmarks to run (default: step,compile,gemm)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="BLAS, OpenMP and torch threads per peer (default: every core)",
    )
    parser.add_argument(
        "--device",
        help="OpenCL device for lightnet-graph and CLBlast, "
        "as PLATFORM:DEVICE or part of its name (default: the backend's)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        help="untimed steps after the first (default 3, 1 with --quick)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        help="timed steps or products per peer (default 10, 3 with --quick)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds before a peer's process is stopped (default 900)",
    )
    args = parser.parse_args()
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.repeat = args.repeat if args.repeat is not None else (3 if args.quick else 10)
    args.sections = set(args.sections.split(","))
    every = set(STEP_PEERS + GEMM_PEERS)
    if args.peers:
        args.peers = set(args.peers.split(","))
        unknown = args.peers - every
        if unknown:
            parser.error(
                f"unknown peers {sorted(unknown)}; choose from {sorted(every)}"
            )
    else:
        args.peers = every - (set(SLOW_FIRST_STEP) if args.quick else set())
    return args


def _command_line() -> str:
    script = os.path.relpath(__file__, ROOT)
    removed = [
        v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v not in os.environ
    ]
    prefix = f"env {' '.join('-u ' + v for v in removed)} " if removed else ""
    return prefix + shlex.join(["python", script, *sys.argv[1:]])


def _machine() -> dict:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = []
    try:
        from threadpoolctl import threadpool_info

        blas = [
            f"{i['internal_api']} {i['version']} ({i.get('architecture', '?')} kernels)"
            for i in threadpool_info()
            if i["user_api"] == "blas"
        ]
    except ImportError:
        blas = ["unknown (threadpoolctl is not installed)"]
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "numpy_blas": ", ".join(blas),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "unset"),
        "opencl": _opencl_devices(),
    }


def _opencl_devices() -> list[str]:
    try:
        import pyopencl as cl
    except ImportError:
        return []
    try:
        return [
            f"{p}:{d} {device.name.strip()} ({platform_.name.strip()} {platform_.version.strip()})"
            for p, platform_ in enumerate(cl.get_platforms())
            for d, device in enumerate(platform_.get_devices())
        ]
    except cl.Error as error:
        return [f"unavailable: {error}"]


def _versions() -> dict:
    versions = {"lightnet-graph": importlib.metadata.version("lightnet-graph")}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _progress(row: dict) -> None:
    what = " ".join(
        str(row[k]) for k in ("workload", "steps", "size", "peer") if k in row
    )
    print(f"  {what}: {row['status']}", file=sys.stderr, flush=True)


def _write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


if __name__ == "__main__":
    main()
