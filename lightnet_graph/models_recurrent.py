"""Built-in recurrent models: character language models over random text.

Each model reads token ids ``tokens`` (T, batch), embeds them with
:func:`lightnet_graph.gather` on an ``embedding`` parameter (vocab, hidden),
runs a recurrent layer, maps every step's output to vocabulary logits and
returns the next-token softmax cross-entropy: the mean over the batch at
each step, summed over the T steps. ``targets`` (T, batch) are the tokens
one position later.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from . import cells, init, ops
from .graph import Graph, Tensor, mark_user_code
from .models import FeedMaker, Model, register_model

# Error messages and generated code point at the lines below that declare
# each op, as they would for a user's own model file.
mark_user_code(os.path.abspath(__file__))

VOCAB = 65
DEFAULT_HIDDEN = 256
DEFAULT_BATCH = 32
DEFAULT_SEQ_LEN = 64

Layer = Callable[[Tensor, int], tuple[Tensor, list[tuple[Tensor, ...]]]]


def char_model(
    name: str,
    layer: Layer,
    dtype: Any = "float32",
    batch: int | None = None,
    hidden: int | None = None,
    seq_len: int | None = None,
    seed: int | None = None,
    vocab: int = VOCAB,
) -> Model:
    """Declare a character language model around ``layer(xs, hidden)``."""
    batch = DEFAULT_BATCH if batch is None else batch
    hidden = DEFAULT_HIDDEN if hidden is None else hidden
    seq_len = DEFAULT_SEQ_LEN if seq_len is None else seq_len
    g = Graph(name, dtype=dtype, seed=0 if seed is None else seed)
    tokens = g.input("tokens", (seq_len, batch), dtype="int64")
    targets = g.input("targets", (seq_len, batch), dtype="int64")
    # N(0, 1), the initialization of PyTorch's nn.Embedding.
    embedding = g.parameter("embedding", (vocab, hidden), init=init.normal(1.0))
    outputs, _ = layer(ops.gather(embedding, tokens), hidden)
    w = g.parameter("readout.weight", (vocab, hidden), init=init.xavier_uniform)
    b = g.parameter("readout.bias", (vocab,))
    logits = ops.linear(outputs, w, b)
    loss = cells.sequence_cross_entropy(logits, targets, "sum")
    return Model(g, loss, _token_feeds(vocab, seq_len, batch), {"logits": logits})


def _token_feeds(vocab: int, seq_len: int, batch: int) -> FeedMaker:
    """Uniformly random text: T + 1 tokens per sequence, split into input and target."""

    def make(rng: np.random.Generator) -> dict[str, np.ndarray]:
        text = rng.integers(0, vocab, (seq_len + 1, batch))
        return {"tokens": text[:-1], "targets": text[1:]}

    return make


@register_model("char-rnn")
def char_rnn(
    dtype: Any = "float32",
    batch: int | None = None,
    hidden: int | None = None,
    seq_len: int | None = None,
    seed: int | None = None,
) -> Model:
    """Declare a character model on a tanh RNN (lambda = 0)."""

    def layer(xs: Tensor, size: int) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
        return cells.rnn(xs, size, name="rnn", skip=0.0)

    return char_model("char-rnn", layer, dtype, batch, hidden, seq_len, seed)


@register_model("skip-rnn")
def skip_rnn(
    dtype: Any = "float32",
    batch: int | None = None,
    hidden: int | None = None,
    seq_len: int | None = None,
    seed: int | None = None,
) -> Model:
    """Declare a character model on a tanh RNN with skip links (lambda = 1)."""

    def layer(xs: Tensor, size: int) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
        return cells.rnn(xs, size, name="rnn", skip=1.0)

    return char_model("skip-rnn", layer, dtype, batch, hidden, seq_len, seed)


@register_model("char-gru")
def char_gru(
    dtype: Any = "float32",
    batch: int | None = None,
    hidden: int | None = None,
    seq_len: int | None = None,
    seed: int | None = None,
) -> Model:
    """Declare a character model on a GRU, reset gate before the recurrent product."""

    def layer(xs: Tensor, size: int) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
        return cells.gru(xs, size, name="gru")

    return char_model("char-gru", layer, dtype, batch, hidden, seq_len, seed)


@register_model("char-lstm")
def char_lstm(
    dtype: Any = "float32",
    batch: int | None = None,
    hidden: int | None = None,
    seq_len: int | None = None,
    seed: int | None = None,
) -> Model:
    """Declare a character model on an LSTM."""

    def layer(xs: Tensor, size: int) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
        return cells.lstm(xs, size, name="lstm")

    return char_model("char-lstm", layer, dtype, batch, hidden, seq_len, seed)
