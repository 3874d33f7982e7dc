"""The subprocess side of the Oclgrind tests: run one workload on Oclgrind.

``python oclgrind_workloads.py SPEC RESULT`` reads a JSON workload from the
file SPEC, runs it on the Oclgrind device and writes a JSON result to the
file RESULT. The parent (``oclgrind_harness``) has already set the
environment that makes Oclgrind an OpenCL platform and turns its checks on.
Oclgrind writes its diagnostics to its own log, which the parent reads.

Workloads, by ``kind``:

- ``model``: a built-in model at the given sizes, one or more training
  steps, optionally with an optimizer compiled into the step.
- ``recipe``: a random graph, given as a pickled
  ``graph_recipe.GraphRecipe`` encoded in base64.
- ``planted``: hand-written kernels with one bug each (a write past the
  end of a buffer, a data race, a read of memory nothing wrote), to show
  that every check is on and that its diagnostic reaches the parent.

Model and recipe workloads run on NumPy too, and the result lists how far
each value read back from Oclgrind is from NumPy's, per tensor.
"""

from __future__ import annotations

import base64
import json
import pickle
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


def run_recipe(spec: dict) -> dict:
    """Run a random graph's outputs and gradients on Oclgrind and on NumPy."""
    from graph_recipe import build_graph, draw_feeds

    recipe = pickle.loads(base64.b64decode(spec["recipe"]))
    built = build_graph(recipe, "float32")
    feeds = draw_feeds(recipe, "float32")
    arguments = {
        "outputs": built.outputs,
        "loss": built.loss,
        "wrt": built.float_inputs,
    }
    reference = lg.compile(**arguments)
    program = compile_for_oclgrind(spec, **arguments)
    comparisons = Comparisons()
    comparisons.add("output", program.run(feeds), reference.run(feeds))
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


RUNNERS = {
    "model": run_model,
    "recipe": run_recipe,
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
