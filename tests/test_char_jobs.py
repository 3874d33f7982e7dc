"""Character-model training: PyTorch agreement, resumption, sampling, bad data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lightnet_graph import compile, optim
from lightnet_graph.checkpoint import read_checkpoint
from lightnet_graph.data import CharBatches, Vocabulary, default_corpus, split_text
from lightnet_graph.jobs import declare_char_model

TRAIN = [sys.executable, "-m", "lightnet_graph.cli", "train"]
TINY = ["--hidden", "16", "--batch", "4", "--seq-len", "8", "--no-progress"]


def _torch_char_lstm(torch, parameters, hidden):
    embedding = torch.nn.Embedding(*parameters["embedding"].shape).double()
    lstm = torch.nn.LSTM(hidden, hidden).double()
    readout = torch.nn.Linear(hidden, parameters["readout.bias"].shape[0]).double()
    with torch.no_grad():
        embedding.weight.copy_(torch.tensor(parameters["embedding"]))
        lstm.weight_ih_l0.copy_(torch.tensor(parameters["lstm.weight_ih"]))
        lstm.weight_hh_l0.copy_(torch.tensor(parameters["lstm.weight_hh"]))
        lstm.bias_ih_l0.copy_(torch.tensor(parameters["lstm.bias"]))
        lstm.bias_hh_l0.zero_()
        readout.weight.copy_(torch.tensor(parameters["readout.weight"]))
        readout.bias.copy_(torch.tensor(parameters["readout.bias"]))
    # One bias stands for PyTorch's two; the frozen zero bias_hh keeps their
    # sum equal to ours and out of the optimizer.
    lstm.bias_hh_l0.requires_grad_(False)
    return embedding, lstm, readout


@pytest.mark.oracle
@pytest.mark.parametrize("case", ["sgd-momentum", "adam-clipped"])
def test_char_lstm_training_matches_torch(case: str) -> None:
    torch = pytest.importorskip("torch")
    hidden, batch, seq_len = 16, 4, 8
    train_text, _ = split_text(default_corpus()[:20000])
    vocab = Vocabulary.from_text(train_text)
    batches = CharBatches(vocab.encode(train_text), batch, seq_len)
    _, loss, _ = declare_char_model("lstm", len(vocab), hidden, batch, seq_len, "float64", 0)
    ours = optim.SGD(0.5, momentum=0.9) if case == "sgd-momentum" else optim.Adam(2e-2, clip_norm=1.0)
    program = compile(loss=loss, optimizer=ours)

    embedding, lstm, readout = _torch_char_lstm(torch, program.get_parameters(), hidden)
    params = [p for m in (embedding, lstm, readout) for p in m.parameters() if p.requires_grad]
    if case == "sgd-momentum":
        theirs = torch.optim.SGD(params, lr=0.5, momentum=0.9)
    else:
        theirs = torch.optim.Adam(params, lr=2e-2)
    state = None
    for step in range(20):
        tokens, targets = batches.window(step)
        mine = float(program.run(tokens=tokens, targets=targets)["loss"])
        outputs, state = lstm(embedding(torch.tensor(tokens)), state)
        state = tuple(s.detach() for s in state)
        logits = readout(outputs)
        reference = torch.nn.functional.cross_entropy(
            logits.reshape(-1, len(vocab)), torch.tensor(targets).reshape(-1)
        )
        theirs.zero_grad()
        reference.backward()
        if case == "adam-clipped":
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        theirs.step()
        assert mine == pytest.approx(reference.item(), rel=1e-8, abs=0), f"step {step}"


def test_char_lstm_resumes_after_kill(tmp_path: Path) -> None:
    steps = "600"
    common = ["char-lstm", *TINY, "--steps", steps, "--eval-every", steps,
              "--checkpoint-every", "25"]
    killed = tmp_path / "killed"
    process = subprocess.Popen(TRAIN + common + ["--checkpoint-dir", str(killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoint.npz"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    resumed = subprocess.run(TRAIN + common + ["--checkpoint-dir", str(killed), "--resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    straight = tmp_path / "straight"
    result = subprocess.run(TRAIN + common + ["--checkpoint-dir", str(straight)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    _, resumed_arrays = read_checkpoint(checkpoint)
    _, straight_arrays = read_checkpoint(straight / "checkpoint.npz")
    assert resumed_arrays.keys() == straight_arrays.keys()
    assert "state/carry.c" in straight_arrays
    for name in straight_arrays:
        assert np.array_equal(resumed_arrays[name], straight_arrays[name]), name


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "is empty"), (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks binary")],
    ids=["empty", "binary"],
)
def test_bad_data_file_is_one_line(tmp_path: Path, content: bytes, problem: str) -> None:
    data = tmp_path / "corpus.txt"
    data.write_bytes(content)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "checkpoint.npz").write_bytes(b"earlier checkpoint")
    result = subprocess.run(TRAIN + ["char-lstm", *TINY, "--steps", "2", "--data", str(data),
                                     "--checkpoint-dir", str(checkpoints)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "corpus.txt" in lines[0]
    assert problem in lines[0]
    assert (checkpoints / "checkpoint.npz").read_bytes() == b"earlier checkpoint"


def test_train_then_sample_from_checkpoint(tmp_path: Path) -> None:
    trained = subprocess.run(TRAIN + ["char-gru", *TINY, "--steps", "5", "--eval-every", "5",
                                      "--checkpoint-dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert "step 0: loss" in trained.stdout
    assert "sample (temperature 0.8):" in trained.stdout
    sampled = subprocess.run(
        [sys.executable, "-m", "lightnet_graph.cli", "sample", str(tmp_path / "checkpoint.npz"),
         "--length", "40", "--temperature", "0.5", "--prime", "def "],
        capture_output=True, text=True, timeout=120,
    )
    assert sampled.returncode == 0, sampled.stderr
    text = sampled.stdout.rstrip("\n")
    assert text.startswith("def ")
    assert len(text) == 44


def test_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    image = tmp_path / "loss.png"
    result = subprocess.run(TRAIN + ["mlp-digits", "--no-progress", "--steps", "30",
                                     "--plot", str(image)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
