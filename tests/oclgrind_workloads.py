"""The subprocess side of the Oclgrind tests: run one workload on Oclgrind.

``python oclgrind_workloads.py SPEC RESULT`` reads a JSON workload from the
file SPEC, runs it on the Oclgrind device and writes a JSON result to the
file RESULT. The parent (``oclgrind_harness``) has already set the
environment that makes Oclgrind an OpenCL platform and turns its checks on.
Oclgrind writes its diagnostics to its own log, which the parent reads.

Workloads, by ``kind``:

- ``model``: a built-in model at the given sizes, one or more training
  steps, optionally with an optimizer compiled into the step.
- ``graph``: a random graph drawn from a seed (see ``RandomGraph``).
- ``planted``: hand-written kernels with one bug each (a write past the
  end of a buffer, a data race, a read of memory nothing wrote), to show
  that every check is on and that its diagnostic reaches the parent.

Model and graph workloads run on NumPy too, and the result lists how far
each value read back from Oclgrind is from NumPy's, per tensor.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

import lightnet_graph as lg
from lightnet_graph import optim
from lightnet_graph.gradcheck import compare
from lightnet_graph.models import load_model

PLATFORM = "Oclgrind"
RTOL, ATOL = 1e-4, 1e-6  # float32


def oclgrind_platform() -> int:
    """Return the index of the Oclgrind platform among pyopencl's platforms."""
    import pyopencl as cl

    names = [platform.name for platform in cl.get_platforms()]
    if PLATFORM not in names:
        raise RuntimeError(
            f"no OpenCL platform named {PLATFORM!r}; the platforms are {names}"
        )
    return names.index(PLATFORM)


def compile_for_oclgrind(spec: dict, **arguments: Any) -> lg.Executable:
    """Compile for Oclgrind with the spec's matmul variant ("tiled" or "blocked")."""
    from lightnet_graph.backends.opencl import OpenCLBackend

    backend = OpenCLBackend(
        device=f"{oclgrind_platform()}:0", matmul=spec.get("matmul")
    )
    program = lg.compile(backend=backend, **arguments)
    platform = program.device.platform.name
    assert platform == PLATFORM, f"compiled for platform {platform!r}, not Oclgrind"
    return program


class Comparisons:
    """Relative errors of values read back from Oclgrind against NumPy's."""

    def __init__(self) -> None:
        self.entries: list[dict] = []

    def add(self, prefix: str, actual: dict, expected: dict) -> None:
        if actual.keys() != expected.keys():
            self.entries.append(
                {
                    "value": f"{prefix}: names",
                    "error": None,
                    "passed": False,
                    "detail": f"{sorted(actual)} != {sorted(expected)}",
                }
            )
            return
        for name, reference in expected.items():
            error, passed = compare(actual[name], reference, RTOL, ATOL)
            self.entries.append(
                {"value": f"{prefix} {name}", "error": error, "passed": passed}
            )


def run_model(spec: dict) -> dict:
    """Run training steps of a built-in model on Oclgrind and on NumPy."""
    model = load_model(spec["model"], dtype="float32", **spec["sizes"])

    arguments: dict[str, Any] = {"loss": model.loss}
    optimizer = spec.get("optimizer")
    if optimizer is not None:
        options = {k: v for k, v in optimizer.items() if k != "name"}
        arguments["optimizer"] = getattr(optim, optimizer["name"])(**options)
    reference = lg.compile(**arguments)
    program = compile_for_oclgrind(spec, **arguments)
    comparisons = Comparisons()
    rng = np.random.default_rng(0)
    for step in range(spec.get("steps", 1)):
        feeds = model.make_feeds(rng)
        comparisons.add(f"step {step}", program.run(feeds), reference.run(feeds))
    comparisons.add("parameter", program.get_parameters(), reference.get_parameters())
    comparisons.add("state", program.get_states(), reference.get_states())
    return summarize(program, comparisons)


def run_graph(spec: dict) -> dict:
    """Run a random graph's outputs and gradients on Oclgrind and on NumPy."""
    drawn = RandomGraph(spec["seed"])
    arguments = {"outputs": drawn.outputs, "loss": drawn.loss, "wrt": drawn.inputs}
    reference = lg.compile(**arguments)
    program = compile_for_oclgrind(spec, **arguments)
    comparisons = Comparisons()
    comparisons.add("output", program.run(drawn.feeds), reference.run(drawn.feeds))
    return summarize(program, comparisons)


def summarize(program: lg.Executable, comparisons: Comparisons) -> dict:
    """Return the JSON result: the platform, each kernel's nodes, the comparisons."""
    return {
        "platform": program.device.platform.name,
        "kernels": {info.name: list(info.nodes) for info in program.kernels},
        "comparisons": comparisons.entries,
    }


PLANTED = """
__kernel void write_past_end(__global float* out, const int n)
{
    const int i = get_global_id(0);
    if (i <= n) out[i] = 1.0f;
}

__kernel void write_race(__global float* out, const int n)
{
    out[0] = (float)get_global_id(0);
}

__kernel void read_uninitialized(__global float* out, const int n)
{
    const int i = get_global_id(0);
    if (i < n) out[i] = out[n + i] + 1.0f;
}
"""


def run_planted(spec: dict) -> dict:
    """Launch each planted kernel once, over 8 work-items, with n = 7."""
    import pyopencl as cl

    platform = cl.get_platforms()[oclgrind_platform()]
    context = cl.Context(platform.get_devices()[:1])
    queue = cl.CommandQueue(context)
    program = cl.Program(context, PLANTED).build()
    n = 7
    elements = {"write_past_end": n, "write_race": n, "read_uninitialized": 2 * n}
    for name, size in elements.items():
        # A new buffer that nothing has written, so each element is uninitialized.
        out = cl.Buffer(context, cl.mem_flags.READ_WRITE, size=size * 4)
        getattr(program, name)(queue, (8,), (8,), out, np.int32(n))
        queue.finish()
    return {
        "platform": platform.name,
        "kernels": {name: [] for name in elements},
        "comparisons": [],
    }


# -- random graphs ----------------------------------------------------------------

SIZES = (1, 2, 3, 5, 7)
STEP_KINDS = (
    "unary",
    "binary",
    "matmul",
    "linear",
    "reduce",
    "softmax",
    "cross_entropy",
    "transpose",
    "concat",
    "slice",
    "reshape",
)


class RandomGraph:
    """A small graph of the core ops drawn from a seed, with its feeds.

    Each of 3 to 6 steps applies one op to an earlier value and, where the
    op needs a second operand, to a new input of a shape that fits. The ops
    are elementwise ones with broadcasting, matrix products in every
    transposition, reductions along either axis, softmax, cross-entropy,
    concatenation, slices and reshapes. Values are 2-D, with sizes from
    ``SIZES``. Every value that
    no step reads is an output, and the loss weights each output element
    with a fixed random number, so that gradient elements differ.
    """

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.graph = lg.Graph(f"random-{seed}", dtype="float32")
        self.inputs: list[lg.Tensor] = []  # the float inputs
        self.feeds: dict[str, np.ndarray] = {}
        values = [self.new_input((self.size(), self.size()))]
        read: set[int] = set()
        for _ in range(int(self.rng.integers(3, 7))):
            index = int(self.rng.integers(len(values)))
            read.add(index)
            kind = str(self.rng.choice(STEP_KINDS))
            values.append(getattr(self, kind)(values[index]))
        self.outputs = {
            f"v{i}": value for i, value in enumerate(values) if i > 0 and i not in read
        }
        self.loss = None
        for value in self.outputs.values():
            weights = self.rng.standard_normal(value.shape).astype(np.float32)
            term = lg.sum(value * weights)
            self.loss = term if self.loss is None else self.loss + term

    def size(self) -> int:
        return int(self.rng.choice(SIZES))

    def new_input(
        self, shape: tuple[int, ...], low: float = -2.0, high: float = 2.0
    ) -> lg.Tensor:
        name = f"x{len(self.feeds)}"
        self.inputs.append(self.graph.input(name, shape))
        self.feeds[name] = self.rng.uniform(low, high, shape).astype(np.float32)
        return self.inputs[-1]

    def unary(self, x: lg.Tensor) -> lg.Tensor:
        functions = [lg.tanh, lg.sigmoid, lg.relu, lg.leaky_relu, lg.neg]
        return functions[int(self.rng.integers(len(functions)))](x)

    def binary(self, x: lg.Tensor) -> lg.Tensor:
        m, n = x.shape
        shapes = [(m, n), (1, n), (n,), (m, 1), ()]
        shape = shapes[int(self.rng.integers(len(shapes)))]
        functions = [lg.add, lg.sub, lg.mul, lg.div]
        function = functions[int(self.rng.integers(len(functions)))]
        if function is lg.div:
            # Divisors stay in [1, 2], away from zero.
            return function(x, self.new_input(shape, 1.0, 2.0))
        other = self.new_input(shape)
        return function(x, other) if self.rng.integers(2) else function(other, x)

    def matmul(self, x: lg.Tensor) -> lg.Tensor:
        m, n = x.shape
        k = self.size()
        if self.rng.integers(2):
            return lg.matmul(x, lg.transpose(self.new_input((k, n))))
        return lg.matmul(lg.transpose(x), self.new_input((m, k)))

    def linear(self, x: lg.Tensor) -> lg.Tensor:
        k = self.size()
        return lg.linear(x, self.new_input((k, x.shape[1])), self.new_input((k,)))

    def reduce(self, x: lg.Tensor) -> lg.Tensor:
        functions = [lg.sum, lg.mean, lg.max]
        function = functions[int(self.rng.integers(len(functions)))]
        if function is lg.max:
            # Fresh noise first, so that no two elements of a group tie.
            x = x + self.new_input(x.shape)
        return function(x, axis=int(self.rng.integers(2)), keepdims=True)

    def softmax(self, x: lg.Tensor) -> lg.Tensor:
        return lg.softmax(x, axis=int(self.rng.integers(2)))

    def cross_entropy(self, x: lg.Tensor) -> lg.Tensor:
        m, n = x.shape
        name = f"labels{len(self.feeds)}"
        labels = self.graph.input(name, (m,), dtype="int64")
        self.feeds[name] = self.rng.integers(0, n, m)
        loss = lg.softmax_cross_entropy(x, labels, "mean")
        return lg.reshape(loss, (1, 1))

    def transpose(self, x: lg.Tensor) -> lg.Tensor:
        return lg.transpose(x)

    def concat(self, x: lg.Tensor) -> lg.Tensor:
        m, n = x.shape
        axis = int(self.rng.integers(2))
        parts = [x, self.new_input((self.size(), n) if axis == 0 else (m, self.size()))]
        return lg.concat(parts if self.rng.integers(2) else parts[::-1], axis)

    def slice(self, x: lg.Tensor) -> lg.Tensor:
        m, n = x.shape
        start = int(self.rng.integers(m))
        stop = int(self.rng.integers(start + 1, m + 1))
        step = 2 if n > 2 and self.rng.integers(2) else 1
        return x[start:stop, ::step]

    def reshape(self, x: lg.Tensor) -> lg.Tensor:
        m, n = x.shape
        return lg.reshape(x, (n, m))


RUNNERS = {
    "model": run_model,
    "graph": run_graph,
    "planted": run_planted,
}


def main(argv: list[str]) -> int:
    spec_path, result_path = argv
    with open(spec_path) as file:
        spec = json.load(file)
    result = RUNNERS[spec["kind"]](spec)
    with open(result_path, "w") as file:
        json.dump(result, file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
