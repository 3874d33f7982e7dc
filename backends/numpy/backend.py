"""Lowering a graph to a generated NumPy module and running it."""

from __future__ import annotations

import linecache
import traceback
from collections.abc import Mapping

import numpy as np

from lightnet_graph.errors import InputValueError
from lightnet_graph.executable import BufferInfo, Executable, KernelInfo, MemoryPlan
from lightnet_graph.graph import Graph
from lightnet_graph.ops import kernels

from .codegen import GeneratedModule, generate
from .rewrite import assemble_unslice_sums, merge_product_sums


class NumpyBackend:
    """Generates Python source that calls NumPy, one statement per op."""

    name = "numpy"

    def lower(
        self, graph: Graph, outputs: Mapping[str, int], stages: Mapping[str, Graph]
    ) -> NumpyExecutable:
        # The executable's graph stays the optimized one, which other tools
        # (inspect, other backends) read, and module.graph is the rewritten
        # one that the source computes. compile() hands over its working
        # graph with a copy as the "optimized" stage, so the rewrites can
        # change the working graph and the executable can keep the copy.
        optimized = stages.get("optimized")
        if optimized is None:
            optimized, lowered = graph, graph.copy()
        else:
            lowered = graph
        lowered_outputs = dict(outputs)
        assemble_unslice_sums(lowered, lowered_outputs)
        merge_product_sums(lowered, lowered_outputs)
        module = generate(lowered, lowered_outputs)
        return NumpyExecutable(optimized, outputs, stages, module)


class NumpyExecutable(Executable):
    """Runs the generated module's ``run`` function on preallocated buffers."""

    backend_name = "numpy"
    _counter = 0

    def __init__(
        self,
        graph: Graph,
        outputs: Mapping[str, int],
        stages: Mapping[str, Graph],
        module: GeneratedModule,
    ) -> None:
        super().__init__(graph, outputs, stages)
        self.module = module
        NumpyExecutable._counter += 1
        self._filename = f"<lightnet-graph {graph.name} #{NumpyExecutable._counter}>"
        # Registering the source lets tracebacks and debuggers show its lines.
        lines = module.source.splitlines(keepends=True)
        linecache.cache[self._filename] = (
            len(module.source),
            None,
            lines,
            self._filename,
        )
        namespace: dict = {"np": np, "k": kernels}
        exec(compile(module.source, self._filename, "exec"), namespace)  # noqa: S102
        self._run = namespace["run"]
        self._buffers = namespace["allocate"]()

    def _execute(
        self, inputs: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        try:
            return self._run(
                inputs,
                self.parameters,
                self.states,
                self.module.constants,
                self._buffers,
            )
        except ValueError as error:
            raise InputValueError(f"{error}{self._where(error)}") from None

    def _where(self, error: BaseException) -> str:
        """Name the op whose generated line raised ``error``."""
        for frame in reversed(traceback.extract_tb(error.__traceback__)):
            if (
                frame.filename == self._filename
                and frame.lineno in self.module.line_nodes
            ):
                lowered = self.module.graph or self.graph
                data = lowered.nx.nodes[self.module.line_nodes[frame.lineno]]
                location = (
                    f", declared at {data['location']}" if data["location"] else ""
                )
                return f" (in {data['op'].name} {data['name']!r}{location})"
        return ""

    @property
    def source(self) -> str:
        return self.module.source

    @property
    def kernels(self) -> list[KernelInfo]:
        return [
            KernelInfo(
                name="run", source=self.module.source, nodes=self.module.op_names
            )
        ]

    def memory_plan(self) -> MemoryPlan:
        values = self.module.buffer_values
        buffers = tuple(
            BufferInfo(
                name,
                array.shape,
                array.dtype.name,
                array.nbytes,
                values.get(name, (name,)),
            )
            for name, array in self._buffers.items()
        )
        total = sum(b.nbytes for b in buffers)
        without_reuse = sum(b.nbytes * len(b.values) for b in buffers)
        return MemoryPlan(buffers, total, without_reuse)
