"""The programs whose generated source is pinned in tests/golden/.

Two training steps (loss and gradients), a small MLP and one LSTM step
(T = 1), are generated for the NumPy backend and, without any device, for
the OpenCL backend under two fixed, made-up device profiles: a GPU (tiled
matrix products) and a CPU (register-blocked ones). Real devices differ in
work-group size and local memory, which change the generated kernels, so
the pinned OpenCL source is planned for these profiles instead.

After an intended change to code generation, regenerate the files and
review the diff:

    python tests/golden_programs.py

``python tests/golden_programs.py --check`` lists the files that differ.
Generated comments name lines of this file, so editing it above the model
declarations changes the golden files too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from lightnet_graph.backends.opencl.device import DeviceProfile
from lightnet_graph.backends.opencl.listing import plan_listing

import lightnet_graph as lg
from lightnet_graph.inspect import kernels_cl, schedule_json

GOLDEN = Path(__file__).resolve().parent / "golden"

PROFILES = {
    "opencl-gpu": DeviceProfile(
        name="fixed GPU profile",
        kind="gpu",
        max_work_group_size=256,
        max_work_item_sizes=(256, 256, 64),
        local_mem_size=48 * 1024,
        local_mem_dedicated=True,
        max_mem_alloc_size=2**30,
        global_mem_size=2**32,
        fp64=True,
        platform="golden files",
    ),
    "opencl-cpu": DeviceProfile(
        name="fixed CPU profile",
        kind="cpu",
        max_work_group_size=4096,
        max_work_item_sizes=(4096, 4096, 4096),
        local_mem_size=256 * 1024,
        local_mem_dedicated=False,
        max_mem_alloc_size=2**30,
        global_mem_size=2**32,
        fp64=True,
        platform="golden files",
    ),
}


def small_mlp(backend: object = "numpy") -> lg.Executable:
    """x (4, 6) -> linear 5 -> relu -> linear 3 -> softmax cross-entropy."""
    g = lg.Graph("golden-mlp", seed=0)
    x = g.input("x", (4, 6))
    labels = g.input("labels", (4,), dtype="int64")
    w1 = g.parameter("fc1.weight", (5, 6), init=lg.init.xavier_uniform)
    b1 = g.parameter("fc1.bias", (5,))
    w2 = g.parameter("fc2.weight", (3, 5), init=lg.init.xavier_uniform)
    b2 = g.parameter("fc2.bias", (3,))
    hidden = lg.relu(lg.linear(x, w1, b1))
    loss = lg.softmax_cross_entropy(lg.linear(hidden, w2, b2), labels)
    return lg.compile(loss=loss, backend=backend)


def lstm_step(backend: object = "numpy") -> lg.Executable:
    """One LSTM step (T = 1) over x (1, 2, 4), hidden 3, and a squared-sum loss."""
    g = lg.Graph("golden-lstm-step", seed=0)
    xs = g.input("xs", (1, 2, 4))
    outputs, _ = lg.cells.lstm(xs, 3, name="lstm")
    loss = lg.sum(outputs * outputs)
    return lg.compile(loss=loss, backend=backend)


PROGRAMS: dict[str, Callable[..., lg.Executable]] = {
    "mlp": small_mlp,
    "lstm-step": lstm_step,
}


def generate(
    programs: dict[str, Callable[..., lg.Executable]] = PROGRAMS,
) -> dict[str, str]:
    """Return every golden file's text, keyed by its path under tests/golden/."""
    files = {}
    for name, build in programs.items():
        program = build()
        files[f"{name}/numpy/program.py"] = program.source
        for backend, profile in PROFILES.items():
            listing = plan_listing(program.graph, program.outputs, profile)
            files[f"{name}/{backend}/kernels.cl"] = kernels_cl(listing)
            files[f"{name}/{backend}/schedule.json"] = schedule_json(listing)
    return files


def differences(files: dict[str, str], directory: Path = GOLDEN) -> list[str]:
    """Return the golden files that are missing, changed or no longer generated."""
    found = []
    for name, text in sorted(files.items()):
        path = directory / name
        if not path.is_file():
            found.append(f"{name}: missing")
        elif path.read_text(encoding="utf-8") != text:
            found.append(f"{name}: differs from the generated text")
    existing = {
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file()
    }
    found += [f"{name}: no longer generated" for name in sorted(existing - set(files))]
    return found


def write(files: dict[str, str], directory: Path = GOLDEN) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate or check tests/golden/.")
    parser.add_argument(
        "--check",
        action="store_true",
        help="list the files that differ instead of writing them",
    )
    args = parser.parse_args(argv)
    files = generate()
    if args.check:
        found = differences(files)
        for line in found:
            print(line)
        return 1 if found else 0
    write(files)
    stale = [
        line for line in differences(files) if line.endswith("no longer generated")
    ]
    for line in stale:
        print(f"{line}; delete it")
    print(f"wrote {len(files)} files under {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
