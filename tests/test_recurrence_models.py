"""The built-in recurrent models: their shapes and their gradient checks."""

from __future__ import annotations

import numpy as np
import pytest

import lightnet_graph as lg
from lightnet_graph import cli
from lightnet_graph.models import MODELS, load_model

RECURRENT_MODELS = ["char-rnn", "skip-rnn", "char-gru", "char-lstm"]


@pytest.mark.parametrize("name", RECURRENT_MODELS)
def test_gradcheck_command_passes(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "gradcheck",
        name,
        "--dtype",
        "float64",
        "--hidden",
        "8",
        "--seq-len",
        "5",
        "--batch",
        "3",
    ]
    status = cli.main(argv)
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "passed" in printed.splitlines()[-1]


@pytest.mark.parametrize("name", RECURRENT_MODELS)
def test_model_loss_sums_step_means(name: str) -> None:
    model = load_model(name, dtype="float64", batch=3, hidden=6, seq_len=4)
    feeds = model.make_feeds(np.random.default_rng(0))
    assert feeds["tokens"].shape == (4, 3)
    np.testing.assert_array_equal(feeds["tokens"][1:], feeds["targets"][:-1])
    program = lg.compile({"loss": model.loss, "logits": model.outputs["logits"]})
    values = program.run(feeds)
    logits = values["logits"]
    assert logits.shape == (4, 3, 65)
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_p, feeds["targets"][..., None], -1)[..., 0]
    np.testing.assert_allclose(values["loss"], -picked.mean(axis=1).sum(), rtol=1e-12)


def test_char_lstm_defaults() -> None:
    model = MODELS["char-lstm"](dtype="float32")
    assert model.graph.inputs[0].shape == (64, 32)
    assert model.graph["lstm.weight_hh"].shape == (4 * 256, 256)
    assert model.graph["embedding"].shape == (65, 256)


def test_skip_rnn_sums_step_updates() -> None:
    # With weight_hh = 0, dh_t = tanh(W_ih x_t + b) ignores h_{t-1}, so the
    # plain RNN's h_t is dh_t and the skip RNN's (lambda = 1) is the sum of them.
    feeds = load_model("char-rnn", batch=2, hidden=3, seq_len=4).make_feeds(
        np.random.default_rng(1)
    )
    values = {}
    for name in ("char-rnn", "skip-rnn"):
        model = load_model(name, dtype="float64", batch=2, hidden=3, seq_len=4, seed=5)
        program = lg.compile(
            {"outputs": model.graph["rnn.outputs"], "h": model.graph["rnn.h"]}
        )
        program.set_parameters({"rnn.weight_hh": np.zeros((3, 3))}, strict=False)
        values[name] = program.run(feeds)
    np.testing.assert_allclose(
        values["skip-rnn"]["h"], values["char-rnn"]["outputs"].sum(0), rtol=1e-13
    )
