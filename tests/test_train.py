"""Training jobs: accuracy, exact resumption after a kill, and bad files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lightnet_graph.checkpoint import read_checkpoint
from lightnet_graph.cli import main

TRAIN = [sys.executable, "-m", "lightnet_graph.cli", "train"]


def test_mlp_digits_reaches_95_percent(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["train", "mlp-digits", "--no-progress"])
    output = capsys.readouterr().out
    assert status == 0, output
    last = output.strip().splitlines()
    accuracies = [float(line.rsplit(" ", 1)[1]) for line in last if "accuracy" in line]
    assert accuracies[-1] >= 0.95, output


def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path) -> None:
    steps = "4000"
    common = ["mlp-digits", "--no-progress", "--steps", steps, "--batch", "16",
              "--hidden", "32", "--eval-every", steps, "--checkpoint-every", "100"]
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(TRAIN + common + ["--checkpoint-dir", str(killed_dir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = killed_dir / "checkpoint.npz"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    header, _ = read_checkpoint(checkpoint)
    assert 0 < header["metadata"]["step"] < int(steps)

    resumed = subprocess.run(TRAIN + common + ["--checkpoint-dir", str(killed_dir), "--resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    straight_dir = tmp_path / "straight"
    straight = subprocess.run(TRAIN + common + ["--checkpoint-dir", str(straight_dir)],
                              capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr

    _, resumed_arrays = read_checkpoint(checkpoint)
    _, straight_arrays = read_checkpoint(straight_dir / "checkpoint.npz")
    assert resumed_arrays.keys() == straight_arrays.keys()
    for name in straight_arrays:
        assert np.array_equal(resumed_arrays[name], straight_arrays[name]), name


def test_resume_from_truncated_checkpoint_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04 truncated")
    result = subprocess.run(TRAIN + ["mlp-digits", "--no-progress", "--steps", "5",
                                     "--checkpoint-dir", str(tmp_path), "--resume"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "checkpoint.npz' is truncated or corrupt" in lines[0]
    assert (tmp_path / "checkpoint.npz").read_bytes() == b"PK\x03\x04 truncated"


def test_resume_from_other_model_names_difference(tmp_path: Path) -> None:
    first = subprocess.run(TRAIN + ["mlp-digits", "--no-progress", "--steps", "5", "--hidden", "8",
                                    "--checkpoint-dir", str(tmp_path)],
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "checkpoint.npz").read_bytes()
    second = subprocess.run(TRAIN + ["mlp-digits", "--no-progress", "--steps", "10", "--hidden",
                                     "9", "--checkpoint-dir", str(tmp_path), "--resume"],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    assert "belongs to another model" in second.stderr
    assert "'fc1.weight' is float32[8, 64] there but float32[9, 64] here" in second.stderr
    assert (tmp_path / "checkpoint.npz").read_bytes() == before


def test_unknown_job_lists_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "no-such-job"]) == 2
    error = capsys.readouterr().err
    assert "unknown job 'no-such-job'; built-in jobs are:" in error
    assert "mlp-digits" in error
