"""The profile stage: timed runs of a compiled program, per kernel or per op.

Times are measured; the FLOPs and bytes behind the GFLOP/s and GB/s
columns are estimates from :mod:`lightnet_graph.inspect_cost`.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import LightnetError
from .executable import Executable
from .graph import Graph
from .inspect_cost import group_bytes, group_flops, program_outputs
from .ops import kernels as numpy_kernels

NUMPY_TIMING = "wall-clock time of each generated NumPy statement, summed per op"
OPENCL_TIMING = "device time from OpenCL profiling events, per kernel"
ESTIMATE_NOTE = (
    "GFLOP/s and GB/s are estimates: FLOPs and bytes are estimated from the graph "
    "nodes each row covers (2*m*k*n per matrix product, a few per element "
    "otherwise; each value read or written once), not counted on the device."
)
_WRAP = 86


@dataclass(frozen=True)
class ProfileRow:
    """One kernel's (OpenCL) or one op's (NumPy) time and estimated work."""

    name: str
    launches: int  # per run
    total_s: float  # over all profiled runs
    mean_s: float  # per launch
    flops: int  # per run, estimated
    bytes: int  # per run, estimated

    def rates(self, runs: int) -> tuple[float, float]:
        """Return (GFLOP/s, GB/s) from the estimates; 0 when no time was measured."""
        if self.total_s <= 0:
            return 0.0, 0.0
        return (
            self.flops * runs / self.total_s / 1e9,
            self.bytes * runs / self.total_s / 1e9,
        )


@dataclass(frozen=True)
class ProfileReport:
    """Per-kernel or per-op times of ``runs`` runs, slowest first."""

    graph: str
    backend: str
    runs: int
    timing: str
    rows: tuple[ProfileRow, ...]
    total_s: float  # per run

    def text(self) -> str:
        unit = "op" if self.backend == "numpy" else "kernel"
        lines = [
            f"profile of graph {self.graph!r} on {self.backend}: {self.runs} runs "
            "after one warm-up run",
            f"timing: {self.timing}",
            "",
        ]
        width = max([len(unit)] + [len(row.name) for row in self.rows])
        count = "statements" if self.backend == "numpy" else "launches"
        lines.append(
            f"{unit:<{width}}  {count:>10}  total ms    mean us  GFLOP/s*     GB/s*"
        )
        for row in self.rows:
            gflops, gbps = row.rates(self.runs)
            lines.append(
                f"{row.name:<{width}}  {row.launches:10d}  {row.total_s * 1e3:8.3f}  "
                f"{row.mean_s * 1e6:9.1f}  {gflops:8.3g}  {gbps:8.3g}"
            )
        lines += [
            "",
            f"measured time per run, all rows: {self.total_s * 1e3:.3f} ms",
            *textwrap.wrap("* " + ESTIMATE_NOTE, width=_WRAP),
        ]
        return "\n".join(lines) + "\n"

    def json(self) -> dict[str, Any]:
        rows = []
        for row in self.rows:
            gflops, gbps = row.rates(self.runs)
            rows.append(
                {
                    "name": row.name,
                    "launches": row.launches,
                    "total_s": row.total_s,
                    "mean_s": row.mean_s,
                    "flops": row.flops,
                    "bytes": row.bytes,
                    "gflops_per_s": gflops,
                    "gb_per_s": gbps,
                }
            )
        return {
            "runs": self.runs,
            "timing": self.timing,
            "estimates": ESTIMATE_NOTE,
            "total_s": self.total_s,
            "rows": rows,
        }


def profile_program(
    program: Executable, feeds: Mapping[str, Any], repeat: int
) -> ProfileReport:
    """Run ``program`` once to warm up, then ``repeat`` times, timing its parts.

    On OpenCL each kernel is timed with profiling events. On NumPy each
    generated statement is timed with the wall clock and the times are
    summed per op. The OpenCL runs change states and parameters as any run
    does; the NumPy runs leave them unchanged.
    """
    if repeat < 1:
        raise ValueError(f"repeat={repeat} must be at least 1")
    if program.backend_name == "numpy":
        return _profile_numpy(program, feeds, repeat)
    if not hasattr(program, "profile"):
        raise LightnetError(
            f"the {program.backend_name} backend cannot be profiled: its programs "
            "have no profile() method; profile on numpy or opencl instead"
        )
    return _profile_events(program, feeds, repeat)


def _profile_events(
    program: Executable, feeds: Mapping[str, Any], repeat: int
) -> ProfileReport:
    program.run(feeds)
    measured = program.profile(feeds, repeat=repeat)
    graph = program.graph
    by_name = {data["name"]: node for node, data in graph.nx.nodes(data=True)}
    leaving = program_outputs(graph, program.outputs.values())
    flops: dict[str, int] = {}
    traffic: dict[str, int] = {}
    # NOTE: a node that two launches compute in turn (row losses, then their
    # sum) counts in the estimates of both.
    for launch in program.schedule:
        nodes = [by_name[name] for name in launch.nodes if name in by_name]
        flops[launch.kernel] = flops.get(launch.kernel, 0) + group_flops(graph, nodes)
        traffic[launch.kernel] = traffic.get(launch.kernel, 0) + group_bytes(
            graph, nodes, leaving
        )
    rows = tuple(
        ProfileRow(
            kernel.name,
            kernel.launches,
            kernel.total_s,
            kernel.mean_s,
            flops.get(kernel.name, 0),
            traffic.get(kernel.name, 0),
        )
        for kernel in measured.kernels
    )
    return ProfileReport(
        graph.name, program.backend_name, repeat, OPENCL_TIMING, rows, measured.total_s
    )


def _profile_numpy(
    program: Executable, feeds: Mapping[str, Any], repeat: int
) -> ProfileReport:
    module = program.module
    source, statements, prefix = _timed_source(module.source, module.line_nodes)
    times = [0.0] * len(statements)
    namespace: dict[str, Any] = {
        "np": np,
        "k": numpy_kernels,
        f"{prefix}clock": time.perf_counter,
        f"{prefix}times": times,
    }
    name = f"<lightnet-graph profile of {program.graph.name}>"
    exec(compile(source, name, "exec"), namespace)  # noqa: S102

    buffers = namespace["allocate"]()
    inputs = program.bind_inputs(feeds)
    arguments = (inputs, program.parameters, program.states, module.constants, buffers)
    namespace["run"](*arguments)
    times[:] = [0.0] * len(statements)
    for _ in range(repeat):
        namespace["run"](*arguments)

    rows = _rows_per_op(module.graph, module.outputs, statements, times, repeat)
    return ProfileReport(
        program.graph.name, "numpy", repeat, NUMPY_TIMING, rows, sum(times) / repeat
    )


def _timed_source(
    source: str, line_nodes: Mapping[int, int]
) -> tuple[str, list[tuple[int, int]], str]:
    """Wrap each op's statement in clock reads that add to a list of times.

    Returns the new source, the (line, node) of each timed statement and the
    prefix of the names it added, chosen to clash with no name in ``source``.
    Each statement keeps its line, so tracebacks point at the same lines.
    """
    prefix = "_lightnet_profile_"
    while prefix in source:
        prefix += "_"
    lines = source.splitlines()
    statements = sorted(line_nodes.items())
    for index, (lineno, _) in enumerate(statements):
        text = lines[lineno - 1]
        body = text.lstrip()
        indent = text[: len(text) - len(body)]
        lines[lineno - 1] = (
            f"{indent}{prefix}t0 = {prefix}clock(); {body}; "
            f"{prefix}times[{index}] += {prefix}clock() - {prefix}t0"
        )
    return "\n".join(lines), statements, prefix


def _rows_per_op(
    graph: Graph,
    outputs: Mapping[str, int],
    statements: list[tuple[int, int]],
    times: list[float],
    repeat: int,
) -> tuple[ProfileRow, ...]:
    leaving = program_outputs(graph, outputs.values())
    totals: dict[str, list[float]] = {}
    for (_, node), seconds in zip(statements, times, strict=True):
        op = graph.nx.nodes[node]["op"]
        entry = totals.setdefault(op.name, [0, 0.0, 0, 0])
        entry[0] += 1
        entry[1] += seconds
        entry[2] += group_flops(graph, [node])
        # A view (reshape, transpose, slice) moves no data in NumPy.
        entry[3] += group_bytes(graph, [node], leaving) if op.writes_out else 0
    rows = [
        ProfileRow(name, count, total, total / (count * repeat), flops, traffic)
        for name, (count, total, flops, traffic) in totals.items()
    ]
    return tuple(sorted(rows, key=lambda row: -row.total_s))
