"""A child process that writes checkpoints until its parent kills it.

test_checkpoint_crash.py runs this file as ``python checkpoint_writer.py
PATH`` and drives it over stdin, one command a line:

``save G``
    Save generation G to PATH, then print ``saved G``.
``save G PHASE``
    Save generation G but stop at PHASE, print ``paused G PHASE`` and wait
    to be killed. PHASE is ``write`` (half of the bytes are in the
    temporary file), ``fsync`` (the temporary file is complete and synced,
    not yet renamed) or ``replace`` (just renamed over PATH).
``loop G``
    Save generations G, G + 1, ... without end, printing ``writing g``
    before and ``saved g`` after each.

The pauses wrap the file object, ``os.fsync`` and ``os.replace`` that
``save_checkpoint`` uses, so the parent kills at a known point.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

import lightnet_graph as lg
from lightnet_graph import checkpoint
from lightnet_graph.executable import Executable

# Two float64 parameters of 2 MiB each, so a write takes measurable time.
PARAMETER_SHAPES = {"w1": (512, 512), "w2": (256, 1024)}


def build_program() -> Executable:
    """Compile the model whose parameters and state the checkpoints hold."""
    graph = lg.Graph("checkpoint-crash", dtype="float64")
    total = graph.state("count", (1,))
    for name, shape in PARAMETER_SHAPES.items():
        total = total + lg.sum(graph.parameter(name, shape))
    return lg.compile({"total": total})


def generation_values(generation: int) -> tuple[dict, dict]:
    """Return the parameters and states that generation ``generation`` saves."""
    rng = np.random.default_rng(generation)
    parameters = {
        name: rng.standard_normal(shape) for name, shape in PARAMETER_SHAPES.items()
    }
    states = {"count": np.array([float(generation)])}
    return parameters, states


def _report(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _wait_to_be_killed(generation: int, phase: str) -> None:
    _report(f"paused {generation} {phase}")
    # The parent kills the process here. A line or the end of input instead
    # means the parent stopped driving it, so the child exits on its own.
    sys.stdin.readline()
    sys.exit(3)


class _Pauses:
    """Hooks that stop a save at one phase, wrapping what save_checkpoint calls."""

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes
        self.generation = 0
        self.phase = ""
        self._named_temporary_file = tempfile.NamedTemporaryFile
        self._fsync = os.fsync
        self._replace = os.replace
        tempfile.NamedTemporaryFile = self.named_temporary_file
        os.fsync = self.fsync
        os.replace = self.replace

    def named_temporary_file(self, *args: object, **kwargs: object):
        handle = self._named_temporary_file(*args, **kwargs)
        write = handle.write
        written = 0

        def paused_write(data: bytes) -> int:
            nonlocal written
            count = write(data)
            written += len(data)
            if self.phase == "write" and written >= self.total_bytes // 2:
                handle.flush()
                _wait_to_be_killed(self.generation, "write")
            return count

        handle.write = paused_write
        return handle

    def fsync(self, descriptor: int) -> None:
        self._fsync(descriptor)
        if self.phase == "fsync":
            _wait_to_be_killed(self.generation, "fsync")

    def replace(self, source: str, target: str) -> None:
        self._replace(source, target)
        if self.phase == "replace":
            _wait_to_be_killed(self.generation, "replace")


def save(program: Executable, path: str, generation: int) -> None:
    parameters, states = generation_values(generation)
    program.set_parameters(parameters)
    program.set_states(states)
    checkpoint.save_checkpoint(path, program, {"generation": generation})


def main(path: str) -> None:
    program = build_program()
    total_bytes = sum(v.nbytes for v in program.get_parameters().values())
    pauses = _Pauses(total_bytes)
    _report("ready")
    for line in sys.stdin:
        command, generation, *phase = line.split()
        generation = int(generation)
        if command == "save":
            pauses.generation = generation
            pauses.phase = phase[0] if phase else ""
            save(program, path, generation)
            _report(f"saved {generation}")
        elif command == "loop":
            while True:
                _report(f"writing {generation}")
                save(program, path, generation)
                _report(f"saved {generation}")
                generation += 1
        else:
            raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1])
