"""A writer killed with SIGKILL mid-save leaves the previous checkpoint loadable.

Each case runs checkpoint_writer.py in a child process, lets it save some
complete generations of a 4 MiB model, and kills it with SIGKILL at a known
phase of a save or after a delay. The checkpoint must then load, pass its
SHA-256 check, and hold exactly the values of one complete generation: the
last one saved before the kill, or the one being saved once it was renamed
into place. Leftover temporary files must be partial files that do not load.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from checkpoint_writer import build_program, generation_values

from lightnet_graph.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)

WRITER = Path(__file__).with_name("checkpoint_writer.py")
# How long the child may take to start, or to finish one save.
TIMEOUT_S = 20.0


class Writer:
    """The child process, with line-by-line reads of its output under a timeout."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WRITER), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self.stderr = ""
        self._pending = b""
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.process.stdout, selectors.EVENT_READ)

    def send(self, command: str) -> None:
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()

    def expect(self, line: str) -> None:
        """Read output lines until ``line``; fail if the child exits or stalls."""
        deadline = time.monotonic() + TIMEOUT_S
        while line not in self.lines:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                self.kill()
                pytest.fail(f"the writer did not print {line!r}: {self.describe()}")
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                self.kill()
                pytest.fail(f"the writer exited before {line!r}: {self.describe()}")
            self._take(chunk)

    def kill(self) -> None:
        """Send SIGKILL, wait for the exit, and read the rest of the output."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(TIMEOUT_S)
        self._take(self.process.stdout.read())
        self.stderr = self.process.stderr.read().decode(errors="replace")
        self._selector.close()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            stream.close()

    def describe(self) -> str:
        code = self.process.returncode
        return f"exit code {code}, output {self.lines}, error output {self.stderr!r}"

    def last(self, word: str) -> int | None:
        """Return the generation of the last ``word G`` line, or None."""
        found = [int(x.split()[1]) for x in self.lines if x.startswith(word + " ")]
        return found[-1] if found else None

    def _take(self, chunk: bytes) -> None:
        *complete, self._pending = (self._pending + chunk).split(b"\n")
        self.lines += [line.decode() for line in complete]


def assert_holds_generation(path: Path, generation: int) -> None:
    """Assert that ``path`` loads and contains exactly ``generation``'s values."""
    program = build_program()
    metadata = load_checkpoint(path, program)
    assert metadata == {"generation": generation}
    parameters, states = generation_values(generation)
    for name, value in parameters.items():
        assert np.array_equal(program.get_parameters()[name], value), name
    assert np.array_equal(program.get_states()["count"], states["count"])


def temporary_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".checkpoint-*.tmp"))


def assert_partial(leftover: Path) -> None:
    """Assert that a temporary file left by a kill mid-write does not load."""
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(leftover)


@dataclass(frozen=True)
class KillPoint:
    """Save generations 1 to ``complete``, then kill while saving the next one.

    ``phase`` is where the child stops in that save. ``expected`` is the
    generation the checkpoint must then contain, or 0 for no checkpoint.
    """

    id: str
    complete: int
    phase: str
    expected: int


KILL_POINTS = [
    KillPoint("during-first-write", 0, "write", 0),
    KillPoint("during-later-write", 2, "write", 2),
    KillPoint("after-fsync-before-rename", 1, "fsync", 1),
    KillPoint("just-after-rename", 1, "replace", 2),
]


@pytest.mark.parametrize("point", KILL_POINTS, ids=lambda point: point.id)
def test_kill_at_save_phase(tmp_path: Path, point: KillPoint) -> None:
    path = tmp_path / "model.npz"
    writer = Writer(path)
    writer.expect("ready")
    for generation in range(1, point.complete + 1):
        writer.send(f"save {generation}")
        writer.expect(f"saved {generation}")
    killed = point.complete + 1
    writer.send(f"save {killed} {point.phase}")
    writer.expect(f"paused {killed} {point.phase}")
    writer.kill()

    if point.expected:
        assert_holds_generation(path, point.expected)
    else:
        assert not path.exists()
        with pytest.raises(CheckpointError, match="not found"):
            load_checkpoint(path, build_program())
    leftovers = temporary_files(tmp_path)
    if point.phase == "replace":
        assert leftovers == []
    else:
        assert len(leftovers) == 1, leftovers
    if point.phase == "write":
        assert_partial(leftovers[0])


def test_kill_between_saves(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    writer = Writer(path)
    writer.expect("ready")
    for generation in (1, 2):
        writer.send(f"save {generation}")
        writer.expect(f"saved {generation}")
    writer.kill()
    assert_holds_generation(path, 2)
    assert temporary_files(tmp_path) == []


@pytest.mark.parametrize("delay_s", [0.0, 0.003, 0.01, 0.03, 0.1])
def test_kill_after_delay_in_save_loop(tmp_path: Path, delay_s: float) -> None:
    """Kill a writer that saves without pause; any phase may be hit."""
    path = tmp_path / "model.npz"
    writer = Writer(path)
    writer.expect("ready")
    writer.send("loop 1")
    writer.expect("saved 1")
    time.sleep(delay_s)
    writer.kill()

    saved = writer.last("saved")
    writing = writer.last("writing")
    metadata = load_checkpoint(path, build_program())
    generation = metadata["generation"]
    # A save renamed into place before its "saved" line was printed counts.
    assert saved <= generation <= writing, (saved, generation, writing)
    assert_holds_generation(path, generation)
    leftovers = temporary_files(tmp_path)
    assert len(leftovers) <= 1, leftovers
    for leftover in leftovers:
        # A kill mid-write leaves a partial file. A kill after fsync leaves a
        # complete file that was never renamed into place.
        try:
            header, _ = read_checkpoint(leftover)
        except CheckpointError:
            continue
        assert header["metadata"] == {"generation": writing}


def test_save_after_crash_replaces_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    writer = Writer(path)
    writer.expect("ready")
    writer.send("save 1")
    writer.expect("saved 1")
    writer.send("save 2 write")
    writer.expect("paused 2 write")
    writer.kill()

    program = build_program()
    parameters, states = generation_values(3)
    program.set_parameters(parameters)
    program.set_states(states)
    save_checkpoint(path, program, {"generation": 3})
    assert_holds_generation(path, 3)
